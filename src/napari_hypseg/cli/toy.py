"""`hypseg toy`: write the synthetic hierarchical dataset (method.md §9) as TIFF files.

Files, per volume k = 0 .. N-1 (volume k is generated from seed S + k):
  toy_KKK_image.tif    the image, float32, ImageJ TIFF (Z, Y, X)
  toy_KKK_level1.tif   truth, uint8: 0 background, 1 cell
  toy_KKK_level2.tif   truth, uint8: 0 background, 1 cell, 2 vesicle, 3 mitochondrion
  toy_KKK_level3.tif   truth, uint8: level 2 plus 4 small sphere (in vesicles), 5 small cube
                       (in mitochondria); at level 2 they count as their parent (4 -> 2, 5 -> 3)

The recipe and its parameters are described in docs/dataset.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "toy",
        help="write synthetic volumes with three levels of truth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="folder to write into (created if missing)")
    parser.add_argument("--n", type=int, default=1, help="number of volumes (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first volume (default: 0)")
    parser.add_argument("--irregular", action="store_true",
                        help="deformed shapes with the same nesting (the harder variant)")
    parser.add_argument("--overwrite", action="store_true", help="replace dataset files already in OUTDIR")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..core.synthetic import write_toy_dataset

    written = write_toy_dataset(args.outdir, args.n, args.seed, irregular=args.irregular,
                                overwrite=args.overwrite)
    variant = "irregular" if args.irregular else "regular"
    print(f"wrote {len(written)} {variant} volume(s) (seeds {args.seed}..{args.seed + len(written) - 1}) "
          f"to {args.outdir}:")
    for files in written:
        print("  " + "  ".join(path.name for path in files.values()))
    return 0
