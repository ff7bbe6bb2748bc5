"""Entry point of `hypseg`: builds the subcommand parsers and turns user errors into one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import HypsegError

# Each subcommand module defines `add_parser(subparsers)` and `run(args) -> int`.
SUBCOMMANDS = ("toy", "evaluate", "train", "segment", "demo", "objects")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hypseg",
        description="Unsupervised hierarchical 3D segmentation with hyperbolic representations.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"napari-hypseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f".{name}", __package__)
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except HypsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
