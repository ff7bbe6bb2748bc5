"""One command for a GPU: training throughput of both presets, a longer training's Dice on the toy set,
and end-to-end `hypseg segment` at tomogram scale. Sized to finish within 10 minutes on one H100/H200.

    python benchmarks/gpu.py --device cuda --report      # on the GPU machine; writes docs/benchmarks.md
    python benchmarks/gpu.py --smoke                      # a tiny run of every part, on the CPU (a minute)

Parts, each with its own time budget (seconds in brackets are the defaults):
1. training throughput, `fast` and `paper` presets, batch of the preset, on a 128³ synthetic volume: steps/s
   and patches/s over a fixed wall-clock budget after two warm-up steps [45 s each];
2. a longer training of the `fast` preset on 8 toy volumes (budget [150 s] or --long-steps steps), then mean
   Dice at k = 2 / 4 / 8 over 10 unseen toy volumes (the paper's levels 1-3, Hungarian-matched);
3. `hypseg segment VOLUME --k 2 4 8` in its own process on synthetic tomogram-like volumes of 512x512x256 and
   1024x1024x300 (X x Y x Z; benchmarks/scale.py makes them): wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_description, markdown_table, write_section  # noqa: E402
from scale import parse_size, timed, tomogram_like  # noqa: E402

from napari_hypseg.core.config import get_preset  # noqa: E402
from napari_hypseg.core.evaluation import LEVEL_K  # noqa: E402
from napari_hypseg.core.metrics import score_segmentation  # noqa: E402
from napari_hypseg.core.progress import run_to_completion  # noqa: E402
from napari_hypseg.core.segmentation import segment  # noqa: E402
from napari_hypseg.core.synthetic import ToyConfig, make_toy_volume  # noqa: E402
from napari_hypseg.core.training import train  # noqa: E402


def budgeted_training(volumes, config, device: str, budget_s: float, warmup_steps: int = 2):
    """Train until `budget_s` seconds after `warmup_steps` steps (or config.steps); (steps/s, model)."""
    stop = threading.Event()
    marks: dict[str, float] = {}

    def on_progress(event) -> None:
        if event.step == warmup_steps and "start" not in marks:
            marks["start"], marks["start_step"] = time.perf_counter(), event.step
        if "start" in marks:
            marks["end"], marks["end_step"] = time.perf_counter(), event.step
            if marks["end"] - marks["start"] >= budget_s:
                stop.set()

    trained = run_to_completion(train(volumes, config, device=device, stop=stop), on_progress)
    steps = marks.get("end_step", 0) - marks.get("start_step", 0)
    seconds = marks.get("end", 0.0) - marks.get("start", 0.0)
    return (steps / seconds if steps > 0 and seconds > 0 else float("nan")), trained


def throughput(device: str, side: int, budget_s: float, smoke: bool) -> list[list]:
    volume = make_toy_volume(0, ToyConfig(shape=side)).image
    rows = []
    for preset in ("fast", "paper"):
        overrides = dict(steps=10_000, checkpoint_every=10_000)
        if smoke:
            overrides.update(batch_size=4, encoder_channels=(4, 8), hidden=8, n_samples=1)
        config = get_preset(preset, **overrides)
        rate, _ = budgeted_training([volume], config, device, budget_s)
        rows.append([f"training, preset `{preset}`, batch {config.batch_size}", f"{rate:.2f} steps/s",
                     f"{rate * 3 * config.batch_size:.0f} patches/s"])
    return rows


def long_training_dice(device: str, budget_s: float, steps: int, n_train: int, n_test: int,
                       smoke: bool) -> list[list]:
    toy = ToyConfig()
    train_volumes = [make_toy_volume(seed, toy).image for seed in range(n_train)]
    overrides = dict(steps=steps, checkpoint_every=max(steps, 1))
    if smoke:
        overrides.update(batch_size=4, encoder_channels=(4, 8), hidden=8, n_samples=1)
    config = get_preset("fast", **overrides)
    started = time.perf_counter()
    _, trained = budgeted_training(train_volumes, config, device, budget_s, warmup_steps=0)
    train_s = time.perf_counter() - started
    dice = {level: [] for level in LEVEL_K}
    for seed in range(1000, 1000 + n_test):
        toy_volume = make_toy_volume(seed, toy)
        segmentation = run_to_completion(segment(trained, toy_volume.image, n_fine=16, device=device, seed=0))
        for level, k in LEVEL_K.items():
            dice[level].append(score_segmentation(segmentation.labels_at_k(k), toy_volume.truth[level]).mean_dice)
    return [[f"`fast` preset trained {trained.step} steps ({train_s:.0f} s) on {n_train} toy volumes; mean Dice "
             f"over {n_test} unseen", *(f"{np.mean(dice[level]):.3f}" for level in LEVEL_K)]]


def end_to_end(device: str, sizes: list[str], workdir: Path, model: Path) -> list[list]:
    rows = []
    hypseg = [sys.executable, "-m", "napari_hypseg.cli.main"]
    for size in sizes:
        volume = workdir / f"tomogram_{size}.mrc"
        if not volume.exists():
            tomogram_like(volume, parse_size(size))
        command = [*hypseg, "segment", str(volume), "--model", str(model), "--out", str(workdir / f"labels_{size}.mrc"),
                   "--k", "2", "4", "8", "--device", device, "--overwrite"]
        result = timed(command, workdir / f"segment_{size}.log")
        rows.append([f"`hypseg segment` {size} (X x Y x Z), read to 3 label files", f"{result['seconds']:.1f} s",
                     f"peak RSS {result['rss_gib']:.2f} GiB"])
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that every part runs")
    parser.add_argument("--train-budget", type=float, default=45.0, help="seconds of timed training per preset")
    parser.add_argument("--long-budget", type=float, default=150.0, help="seconds of the longer training")
    parser.add_argument("--long-steps", type=int, default=20_000, help="at most this many steps of it")
    parser.add_argument("--sizes", nargs="+", default=["512x512x256", "1024x1024x300"])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--report", action="store_true", help="write the table to docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.train_budget, args.long_budget, args.long_steps = "cpu", 2.0, 5.0, 6
        args.sizes = ["48x40x32"]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hypseg-gpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    rows = throughput(args.device, 50 if args.smoke else 128, args.train_budget, args.smoke)
    print(markdown_table(["part", "result", ""], rows), flush=True)
    dice_rows = long_training_dice(args.device, args.long_budget, args.long_steps, 2 if args.smoke else 8,
                                   1 if args.smoke else 10, args.smoke)
    print(markdown_table(["longer training", "L1 (k=2)", "L2 (k=4)", "L3 (k=8)"], dice_rows), flush=True)
    # The end-to-end runs use a model of the fast preset (trained briefly: speed does not depend on training).
    model = workdir / "model.pt"
    config = get_preset("fast", steps=2, **(dict(encoder_channels=(4, 8), hidden=8) if args.smoke else {}))
    run_to_completion(train([make_toy_volume(0).image], config, checkpoint_path=model, device=args.device))
    rows += end_to_end(args.device, args.sizes, workdir, model)
    total = time.perf_counter() - began
    body = (f"Device `{args.device}`{' (smoke run: tiny sizes, numbers mean nothing)' if args.smoke else ''}; "
            f"whole run {total / 60:.1f} min. Target for 512x512x256 end to end on one H100/H200-class GPU: "
            "under 60 s.\n\n" + markdown_table(["measurement", "result", ""], rows) + "\n\n"
            + markdown_table(["longer training", "L1 (k=2)", "L2 (k=4)", "L3 (k=8)"], dice_rows))
    print(body)
    print(f"machine: {machine_description(args.device)}")
    if args.report and not args.smoke:
        write_section(f"gpu_{args.device.split(':')[0]}", f"GPU ({args.device})", body, script=__file__, argv=argv,
                      device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
