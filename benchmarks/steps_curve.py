"""Dice against training steps: does longer training help, and does training on the volumes you
segment ("transductive", the one-volume workflow of the Train widget) help?

One model per mode is trained once and continued (resumed) from milestone to milestone, so the rows
of a mode are one training run scored at several points. Inductive: trained on toy volumes 0-7;
transductive: trained on the test volumes themselves. Scored on unseen toy test volumes (seeds
5000+) with the evaluation protocol of core/evaluation.py, beside the best classical baseline.

    python benchmarks/steps_curve.py                         # 300, 1000 steps; 5 test volumes; both modes
    python benchmarks/steps_curve.py --steps 300 1000 3000 10000 --device cuda
    python benchmarks/steps_curve.py --steps 300 1000 3000 10000 --inductive-steps 300 1000 3000 --jobs 2

With --jobs 2 the two modes train at once, each in its own process with one torch thread. Each mode
has its own section of docs/benchmarks.md, rewritten after every milestone: a run stopped early keeps
the rows it finished, and the section says which milestones those are. Step 1 is the untrained
control (one training step).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import markdown_table, write_section  # noqa: E402

from napari_hypseg.core.baselines import BASELINES  # noqa: E402
from napari_hypseg.core.config import DEFAULT_PRESET, get_preset  # noqa: E402
from napari_hypseg.core.evaluation import (  # noqa: E402
    LEVEL_K,
    TOY_TEST_SEED,
    TOY_TRAIN_VOLUMES,
    mean_dice,
    score_levels,
)
from napari_hypseg.core.progress import run_to_completion  # noqa: E402
from napari_hypseg.core.segmentation import segment  # noqa: E402
from napari_hypseg.core.synthetic import make_toy_volume  # noqa: E402
from napari_hypseg.core.training import train  # noqa: E402


def mean_dice_per_level(scores) -> list[float]:
    return [mean_dice(scores, level) for level in LEVEL_K]


def curve(mode: str, milestones: list[int], args: argparse.Namespace, argv: list[str],
          threads: int | None = None) -> list[list]:
    """One training of `mode`, continued from milestone to milestone and scored at each (table rows);
    its section of the report is rewritten after every milestone unless --no-write."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    tests = [make_toy_volume(TOY_TEST_SEED + i) for i in range(args.n_test)]
    volumes = [t.image for t in tests] if mode == "transductive" else \
        [make_toy_volume(i).image for i in range(TOY_TRAIN_VOLUMES)]
    baseline = np.max([mean_dice_per_level([score_levels(lambda k, t=t: fn(t.image, k, 0), t.truth) for t in tests])
                       for fn in BASELINES.values()], axis=0)
    rows = [["best classical baseline (per level)", "—", *[f"{b:.3f}" for b in baseline], "—"]]
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / f"{mode}.pt"
        resume, seconds = None, 0.0
        for done, steps in enumerate(milestones, start=1):
            config = get_preset(DEFAULT_PRESET, seed=args.seed, steps=steps)
            started = time.perf_counter()
            trained = run_to_completion(train(volumes, config, checkpoint_path=checkpoint, resume=resume,
                                              device=args.device))
            seconds += time.perf_counter() - started
            resume = checkpoint
            scores = [score_levels(run_to_completion(segment(trained, t.image, device=args.device)).labels_at_k,
                                   t.truth) for t in tests]
            dice = mean_dice_per_level(scores)
            rows.append([mode, steps, *[f"{d:.3f}" for d in dice], f"{seconds:.0f}"])
            print(f"{mode:<13} {steps:>6} steps  " + "  ".join(f"L{level} {d:.3f}" for level, d in zip(LEVEL_K, dice))
                  + f"  ({seconds:.0f} s of training)", flush=True)
            if not args.no_write:
                write_report(mode, rows, milestones[:done], milestones, args, argv)
    return rows


def write_report(mode, rows, finished, milestones, args, argv) -> None:
    table = markdown_table(["training", "steps", *[f"L{level} (k={k})" for level, k in LEVEL_K.items()],
                            "training s (cumulative)"], rows)
    trained_on = "the test volumes themselves" if mode == "transductive" else f"toy volumes 0-{TOY_TRAIN_VOLUMES - 1}"
    progress = "" if finished == milestones else \
        (f" Milestones finished: {', '.join(map(str, finished))} of {', '.join(map(str, milestones))} (the run "
         "stopped, or is still running, before the others).")
    body = (f"Default preset `{DEFAULT_PRESET}`, training seed {args.seed}, one training continued from milestone "
            f"to milestone (step 1 is the untrained control); mean Dice over {args.n_test} unseen regular toy "
            f"volumes (seeds {TOY_TEST_SEED}+), {mode}: trained on {trained_on}.{progress}\n\n{table}\n")
    device = args.device.split(":")[0]
    write_section(f"steps_curve_{device}_{mode}", f"Dice against training steps, {mode} ({args.device})", body,
                  script=__file__, argv=argv, device=args.device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--n-test", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=["inductive", "transductive"],
                        choices=["inductive", "transductive"])
    parser.add_argument("--inductive-steps", type=int, nargs="+",
                        help="milestones of the inductive mode when they differ from --steps")
    parser.add_argument("--jobs", type=int, default=1, help="modes trained at once, one process each")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    plans = [(mode, sorted(args.inductive_steps if mode == "inductive" and args.inductive_steps else args.steps))
             for mode in args.modes]
    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(args.jobs, len(plans)), mp_context=context) as pool:
            futures = [pool.submit(curve, mode, steps, args, argv, 1) for mode, steps in plans]
            curves = [future.result() for future in futures]
    else:
        curves = [curve(mode, steps, args, argv) for mode, steps in plans]
    for rows in curves:
        print("\n" + markdown_table(["training", "steps", *[f"L{level}" for level in LEVEL_K], "training s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
