"""What scales how beyond one process: training with torchrun, segmenting many volumes with dask.

Training: `hypseg train` on the toy volumes as one process, as one process drawing two parts of each
batch (`shards=2`, the arithmetic of two ranks), and as two torchrun processes (gloo on the CPU,
each drawing --batch-size triplets); throughput is the patches/s of the last progress line (start-up
excluded), wall time includes start-up. Segmenting: `hypseg segment --out-dir` of several toy volumes
in this process and with `--scheduler local --workers 2`.

    python benchmarks/distributed.py [--steps 10] [--batch-size 4] [--volumes 6] [--side 48]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import markdown_table, write_section  # noqa: E402

CLI = [sys.executable, "-m", "napari_hypseg.cli"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "napari_hypseg.cli"]


def timed(command: list[str]) -> tuple[float, str]:
    """Wall seconds of a command and its stderr; a failure stops the benchmark with its output."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stderr


def patches_per_second(stderr: str) -> float:
    return float(re.findall(r"(\d+(?:\.\d+)?) patches/s", stderr)[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4, help="triplets per process and step")
    parser.add_argument("--volumes", type=int, default=6, help="volumes to segment")
    parser.add_argument("--side", type=int, default=48, help="side of each volume to segment")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    import tifffile

    from napari_hypseg.core.synthetic import make_toy_volume

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        volumes = []
        for seed in range(args.volumes):
            path = folder / f"toy{seed}.tif"
            tifffile.imwrite(path, make_toy_volume(seed).image[:args.side, :args.side, :args.side])
            volumes.append(str(path))
        train = ["train", *volumes[:2], "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                 "--device", "cpu", "--seed", "0"]
        training_rows = []
        for label, command, patches in [
            ("1 process", CLI, 3 * args.batch_size),
            ("2 torchrun processes (gloo)", TORCHRUN, 6 * args.batch_size),
        ]:
            model = folder / f"model{len(training_rows)}.pt"
            seconds, stderr = timed([*command, *train, "--out", str(model)])
            training_rows.append([label, patches, patches_per_second(stderr), seconds])
        model = folder / "model0.pt"

        segment = ["segment", *volumes, "--model", str(model), "--k", "4", "--device", "cpu"]
        segment_rows = []
        for label, extra in [("this process", []), ("local dask cluster, 2 workers", ["--scheduler", "local",
                                                                                       "--workers", "2"])]:
            seconds, _ = timed([*CLI, *segment, "--out-dir", str(folder / f"labels{len(segment_rows)}"), *extra])
            segment_rows.append([label, args.volumes, seconds, args.volumes / seconds])

    training = markdown_table(["training", "patches per step", "patches/s", "wall s (with start-up)"],
                              training_rows)
    segmenting = markdown_table(["segmenting", "volumes", "wall s (with start-up)", "volumes/s"], segment_rows)
    print(training + "\n\n" + segmenting)
    if not args.no_write:
        body = (f"Training: {args.steps} steps of the `fast` preset on 2 toy volumes, --batch-size "
                f"{args.batch_size} per process, one torch thread per process. Segmenting: {args.volumes} toy "
                f"volumes of {args.side}³, `--k 4`.\n\n{training}\n\n{segmenting}\n")
        write_section("distributed", "Many processes (torchrun, dask.distributed)", body, script=__file__, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
