"""Speed of the core's hot paths on one machine: dense inference, hyperbolic k-means, training steps.

Targets: dense inference of a 50³ volume under 1 s on a CPU; hyperbolic k-means on 125,000 points
under 1 s. Weights are random here (speed does not depend on them).

    python benchmarks/speed.py [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import auto_precision, best_seconds, markdown_table, write_section  # noqa: E402

from napari_hypseg.core.config import get_preset  # noqa: E402
from napari_hypseg.core.inference import latent_field  # noqa: E402
from napari_hypseg.core.kmeans import PoincareKMeans  # noqa: E402
from napari_hypseg.core.model import HypsegVAE  # noqa: E402
from napari_hypseg.core.normalization import IntensityStats  # noqa: E402
from napari_hypseg.core.progress import run_to_completion  # noqa: E402
from napari_hypseg.core.synthetic import make_toy_volume  # noqa: E402
from napari_hypseg.core.training import train  # noqa: E402


def training_row(images, preset: str, precision: str, auto: str, device: str, steps: int) -> list[str]:
    """[label, s/step, patches/s] of `steps` training steps (the median step, after one untimed)."""
    config = get_preset(preset, steps=steps + 1, warmup_steps=0, checkpoint_every=steps + 1)
    times = []
    run_to_completion(train(images, config, device=device, precision=precision),
                      lambda event: times.append(time.perf_counter()))
    seconds = float(np.median(np.diff(times[1:])))   # events: start, step 1 (untimed), step 2, ...
    arithmetic = f"auto = {auto}" if precision == "auto" else precision
    return [f"training step, preset {preset}, batch {config.batch_size} triplets, {arithmetic}",
            f"{seconds:.3f} s/step", f"{3 * config.batch_size / seconds:.0f} patches/s"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--train-steps", type=int, default=6,
                        help="training steps timed per preset and precision, after one untimed (default: 6)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    config = get_preset(args.preset)
    image = make_toy_volume(0).image
    stats = IntensityStats.fit([image])
    model = HypsegVAE(config).eval()
    rows = []
    auto = auto_precision(args.device)
    for context in sorted({config.context, config.patch_size, 5}):
        for precision in ("auto", "float32") if auto != "float32" else ("float32",):
            seconds = best_seconds(lambda c=context, p=precision: run_to_completion(
                latent_field(model, image, stats, context=c, device=args.device, precision=p)))
            arithmetic = f"auto = {auto}" if precision == "auto" else precision
            rows.append([f"dense inference, 50³ volume, context {context}, {arithmetic}", f"{seconds:.3f} s",
                         f"{image.size / seconds / 1e6:.2f} M voxels/s"])

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(125_000, config.latent_dim))
    points = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0, 0.95, (125_000, 1))
    for k in (8, 16):
        kmeans = PoincareKMeans(k, random_state=0, device=args.device)
        seconds = best_seconds(lambda km=kmeans: km.fit(points).predict(points))
        rows.append([f"hyperbolic k-means fit + predict, 125,000 points, k = {k}, d = {config.latent_dim}",
                     f"{seconds:.3f} s", f"{kmeans.n_iter_} iterations"])

    images = [make_toy_volume(i).image for i in range(8)]
    for preset in ("paper", "fast"):
        for precision in ("float32", "auto") if auto != "float32" else ("float32",):
            rows.append(training_row(images, preset, precision, auto, args.device, args.train_steps))

    table = markdown_table(["operation", "time", "rate"], rows)
    print(table)
    if not args.no_write:
        body = (f"Preset `{args.preset}` (inference, k-means), device `{args.device}`, "
                f"{torch.get_num_threads()} threads, best of 3; training: the median of {args.train_steps} steps of the "
                "`paper` and `fast` presets on the 8 toy volumes after one untimed step (precision: that of "
                "the decoder's convolutions, `hypseg train --precision`).\n\n" + table + "\n")
        write_section(f"speed_{args.device.split(':')[0]}", f"Speed ({args.device})", body, script=__file__,
                      argv=argv, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
