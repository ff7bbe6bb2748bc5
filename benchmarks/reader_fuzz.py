"""The long reader fuzzing run: `pytest -m slow tests/test_reader_fuzz.py`, 10,000 hypothesis examples per
reader (MRC, TIFF, NIfTI; random bytes and mutated valid files mixed), with each reader's count of
passing and failing examples and its time taken from hypothesis' statistics.

    python benchmarks/reader_fuzz.py                   # 10,000 examples per reader
    python benchmarks/reader_fuzz.py --examples 200    # a quick look
    python benchmarks/reader_fuzz.py --report          # also write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import markdown_table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STATISTICS = re.compile(
    r"test_each_reader_at_length\[(?P<reader>\w+)\]:\s*"
    r"- during generate phase \((?P<seconds>[\d.]+) seconds\):.*?"
    r"(?P<passing>\d+) passing(?: examples)?, (?P<failing>\d+) failing(?: examples)?, (?:and )?"
    r"(?P<invalid>\d+) invalid", re.S)


def run_fuzzing(examples: int) -> tuple[int, str, float]:
    """Run the slow fuzz tests in a child pytest: (exit status, its output, seconds)."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "slow", "-p", "no:cacheprovider",
               "--hypothesis-show-statistics", "tests/test_reader_fuzz.py"]
    env = {**os.environ, "HYPSEG_FUZZ_EXAMPLES": str(examples)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000, help="examples per reader (default: 10000)")
    parser.add_argument("--report", action="store_true", help="write the result to docs/benchmarks.md")
    args = parser.parse_args(argv)

    status, output, seconds = run_fuzzing(args.examples)
    rows = [[m["reader"], int(m["passing"]), int(m["failing"]), int(m["invalid"]), f"{float(m['seconds']):.0f}"]
            for m in STATISTICS.finditer(output)]
    if status != 0 or len(rows) != 3:
        print(output)
        print(f"the fuzzing run failed (pytest exit status {status}); nothing recorded", file=sys.stderr)
        return 1
    table = markdown_table(["reader", "passing examples", "failing", "invalid (rejected draws)",
                            "generate phase (s)"], rows)
    print(table)
    print(f"{seconds:.0f} s in all")
    if args.report:
        body = (
            "`tests/test_reader_fuzz.py` feeds `read_volume` random bytes and valid MRC, TIFF (ImageJ and "
            "zlib-compressed) and NIfTI (`.nii`, `.nii.gz`) files with up to 8 header bytes overwritten and "
            "maybe cut short, with a 10 s limit per file and a 512 MiB limit on the growth of peak memory: "
            "every example must give a Volume or a VolumeError. With the suite, 150 random-bytes and 250 "
            "mutated-header examples run (all readers together). Against the reader as it was before the "
            "header and stream checks, the mutated-header test failed within its 250 examples (TIFF files "
            "raising errors other than VolumeError).\n\n"
            f"The slow run (`pytest -m slow tests/test_reader_fuzz.py`, {args.examples:,} examples per "
            f"reader, random bytes and mutated files mixed, hypothesis derandomised) took {seconds:.0f} s in "
            "all:\n\n" + table + "\n\n"
            "Failing = examples that raised anything but VolumeError, took longer than 10 s or grew the peak "
            "memory by more than 512 MiB.")
        write_section("reader_fuzz", "Reader fuzzing", body, script=__file__, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
