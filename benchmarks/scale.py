"""End-to-end `hypseg segment` on synthetic tomogram-like volumes: wall time and peak resident memory.

Each volume is a memory-mapped MRC (float32) written slab by slab: noise, a large cell membrane,
vesicles (thin dark shells) and dense particles, roughly what a binned cryo-electron tomogram shows.
A small model is trained once (`hypseg train --roi` on a 64³ corner, `fast` preset). The timed command
is the one a user runs, in its own process under /usr/bin/time -v:

    hypseg segment VOLUME --model MODEL --out labels.mrc --k 2 4 8 --device DEVICE

    python benchmarks/scale.py [--sizes 512x512x256 1024x1024x300] [--workdir DIR] [--report]

Sizes are X x Y x Z (the way tomogram sizes are quoted); volumes are (Z, Y, X) on disk.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import markdown_table, write_section  # noqa: E402

SLAB = 16


def parse_size(text: str) -> tuple[int, int, int]:
    x, y, z = (int(v) for v in text.lower().split("x"))
    return z, y, x


def tomogram_like(path: Path, shape: tuple[int, int, int], seed: int = 0) -> Path:
    """Write a (Z, Y, X) float32 MRC of membranes, vesicles and particles in noise, slab by slab."""
    import mrcfile

    rng = np.random.default_rng(seed)
    z, y, x = shape
    volume_voxels = z * y * x
    # (centre z, y, x, outer radius, shell thickness or 0 for a filled ball, value)
    objects = [(z / 2, y / 2, x / 2, 0.45 * min(y, x), 3.0, -2.0)]                       # the cell membrane
    for _ in range(int(300 * volume_voxels / (512 * 512 * 256))):                      # vesicles
        objects.append((*(rng.uniform(0, n) for n in shape), rng.uniform(8, 30), 2.0, -2.5))
    for _ in range(int(2000 * volume_voxels / (512 * 512 * 256))):                     # particles
        objects.append((*(rng.uniform(0, n) for n in shape), rng.uniform(3, 6), 0.0, -1.5))
    objects = np.array(objects)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        for start in range(0, z, SLAB):
            stop = min(z, start + SLAB)
            slab = rng.normal(0.0, 1.0, size=(stop - start, y, x)).astype(np.float32)
            near = objects[(objects[:, 0] + objects[:, 3] >= start) & (objects[:, 0] - objects[:, 3] < stop)]
            for cz, cy, cx, radius, shell, value in near:
                lo = [max(int(c - radius), b) for c, b in zip((cz, cy, cx), (start, 0, 0))]
                hi = [min(int(c + radius) + 1, b) for c, b in zip((cz, cy, cx), (stop, y, x))]
                if any(h <= l for l, h in zip(lo, hi)):
                    continue
                gz, gy, gx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
                distance = np.sqrt((gz - cz) ** 2 + (gy - cy) ** 2 + (gx - cx) ** 2)
                inside = (distance <= radius) & ((distance >= radius - shell) if shell else True)
                view = slab[lo[0] - start:hi[0] - start, lo[1]:hi[1], lo[2]:hi[2]]
                view[inside] += value
            mrc.data[start:stop] = slab
        mrc.voxel_size = 10.0
    return path


STAGES = {"inference": " infer ", "smoothing": "smoothing the latent field",
          "image features": "measuring the image features", "clustering": "fitting"}
"""Stage -> the text of its first progress line (the CLI prints one whenever the stage or its message changes)."""


def timed(command: list[str], log: Path) -> dict[str, float]:
    """Run `command` under /usr/bin/time -v; wall seconds, peak RSS (GiB) of the process, and the
    seconds from each stage's first progress line (STAGES) to the next stage's ("tree and writes": from
    the last labelling line to the end). Without /usr/bin/time, the peak is resource.getrusage's over
    this script's children so far."""
    import resource

    gnu_time = Path("/usr/bin/time").exists()
    started = time.perf_counter()
    first_seen, last_labelling = {}, None
    with log.open("w") as out:
        process = subprocess.Popen(["/usr/bin/time", "-v", *command] if gnu_time else command,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            now = time.perf_counter() - started
            out.write(f"[{now:8.1f} s] {line}")
            for stage, text in STAGES.items():
                if text in line and stage not in first_seen:
                    first_seen[stage] = now
            if "labelling voxels" in line:
                last_labelling = now
        result = process.wait()
    seconds = time.perf_counter() - started
    text = log.read_text()
    if result != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result}); see {log}")
    if gnu_time:
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    else:
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    marks = sorted((t, stage) for stage, t in first_seen.items()) + [(last_labelling or seconds, "tree and writes")]
    stages = {stage: marks[i + 1][0] - t for i, (t, stage) in enumerate(marks[:-1])}
    stages["tree and writes"] = seconds - marks[-1][0]
    return {"seconds": seconds, "rss_gib": rss_kb / 2**20, "stages": stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["512x512x256"], help="X x Y x Z (default: 512x512x256)")
    parser.add_argument("--k", nargs="+", default=["2", "4", "8"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--strides", type=int, nargs="+", default=[1],
                        help="`hypseg segment --inference-stride` values to time (default: 1)")
    parser.add_argument("--workdir", type=Path, default=None, help="where volumes go (default: a temporary folder)")
    parser.add_argument("--report", action="store_true", help="write the table to docs/benchmarks.md")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hypseg-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    hypseg = [sys.executable, "-m", "napari_hypseg.cli.main"]
    rows = []
    model = workdir / "model.pt"
    for size in args.sizes:
        shape = parse_size(size)
        volume = workdir / f"tomogram_{size}.mrc"
        if not volume.exists():
            started = time.perf_counter()
            tomogram_like(volume, shape)
            print(f"{volume} written in {time.perf_counter() - started:.0f} s", flush=True)
        if not model.exists():
            subprocess.run([*hypseg, "train", str(volume), "--out", str(model), "--steps", str(args.train_steps),
                            "--roi", "0:64,0:64,0:64", "--device", args.device], check=True)
        out = workdir / f"labels_{size}.mrc"
        gib = np.prod(shape) * 4 / 2**30
        for stride in args.strides:
            command = [*hypseg, "segment", str(volume), "--model", str(model), "--out", str(out), "--k", *args.k,
                       "--device", args.device, "--inference-stride", str(stride), "--overwrite"]
            result = timed(command, workdir / f"segment_{size}_stride{stride}.log")
            stages = result["stages"]
            print(f"{size}, stride {stride}: {result['seconds']:.0f} s, peak RSS {result['rss_gib']:.2f} GiB; "
                  + ", ".join(f"{stage} {s:.0f} s" for stage, s in stages.items()), flush=True)
            rows.append([f"{size} ({gib:.2f} GiB float32, MRC memory-mapped)", str(stride),
                         f"{result['seconds'] / 60:.1f} min", f"{np.prod(shape) / result['seconds'] / 1e3:.0f} k",
                         f"{result['rss_gib']:.2f} GiB",
                         *[f"{stages[stage] / 60:.1f}" if stage in stages else "—"
                           for stage in [*STAGES, "tree and writes"]]])
    body = (f"`hypseg segment VOLUME --model MODEL --out labels.mrc --k {' '.join(args.k)} --device {args.device} "
            "--inference-stride S` "
            "in its own process (read, inference, smoothing, clustering, three label files written), timed with "
            "`/usr/bin/time -v`; synthetic tomogram-like volumes (noise, a cell membrane, vesicles, particles), "
            f"a `fast`-preset model trained {args.train_steps} steps. Peak RSS is the process's maximum resident "
            "set: its own memory and the memory-mapped pages (input, latent field) it holds at that moment; passes "
            "over the maps hand their pages back slab by slab. Targets on this CPU: under 4 min for 512x512x256, "
            "under 20 min for 1024x1024x300; peak RSS under 4 GB. Stage minutes run from a stage's first progress "
            "line to the next stage's (the CLI prints one whenever the stage or its message changes, and every 5 s); "
            "start-up and reading the volume count only in the end-to-end time.\n\n"
            + markdown_table(["volume (X x Y x Z)", "stride", "end to end", "voxels/s", "peak RSS",
                              *[f"{stage} (min)" for stage in STAGES], "tree and writes (min)"], rows))
    print(body)
    if args.report:
        write_section(f"scale_{args.device}", f"End-to-end segmentation at tomogram scale ({args.device})", body,
                      script=__file__, argv=argv, device=args.device)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
