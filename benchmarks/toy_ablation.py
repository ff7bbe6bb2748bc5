"""The ablation of method.md §10 on our own synthetic generator, beside non-deep baselines.

Separate training and test volumes; every method is scored with the paper's protocol (Hungarian-matched
Dice including background, unmatched classes count 0) at k = 2 / 4 / 8 clusters for levels 1 / 2 / 3.
Our models cluster each test volume once finely and cut the hierarchy at k; the baselines cluster
directly into k groups (as does one extra row of our full model, the paper's protocol). Prints a table and writes it to docs/benchmarks.md.

    python benchmarks/toy_ablation.py                 # CPU budget: one training seed, about 10 minutes on 2 cores
    python benchmarks/toy_ablation.py --train-seeds 0 1 2   # mean ± spread over three trainings of every model
    python benchmarks/toy_ablation.py --n-test 20 --train-seeds 0 1 2   # the paper's 20 test volumes: under an hour
    python benchmarks/toy_ablation.py --device cuda --steps 4000 --n-test 20 --key toy_ablation_gpu

Models trained with different seeds differ by a few hundredths of Dice on these volumes, which is as
much as some rows differ from each other; compare rows over several `--train-seeds`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import markdown_table, write_section  # noqa: E402
from napari_hypseg.core.baselines import BASELINES  # noqa: E402

from napari_hypseg.core.config import get_preset  # noqa: E402
from napari_hypseg.core.evaluation import LEVEL_K, score_levels  # noqa: E402
from napari_hypseg.core.progress import run_to_completion  # noqa: E402
from napari_hypseg.core.latent_fields import clustering_field  # noqa: E402
from napari_hypseg.core.segmentation import kmeans_for, segment  # noqa: E402
from napari_hypseg.core.synthetic import LEVEL_CLASSES, make_toy_volume  # noqa: E402
from napari_hypseg.core.training import train  # noqa: E402

PAPER = {"Hyperbolic + gyroplane + triplet (paper)": (0.952, 0.541, 0.216)}

ABLATIONS = {
    "Euclidean VAE": dict(geometry="euclidean", triplet=False),
    "Euclidean VAE + triplet": dict(geometry="euclidean", triplet=True),
    "Hyperbolic VAE": dict(geometry="hyperbolic", gyroplane=False, triplet=False),
    "Hyperbolic + gyroplane": dict(geometry="hyperbolic", gyroplane=True, triplet=False),
    "Hyperbolic + triplet": dict(geometry="hyperbolic", gyroplane=False, triplet=True),
    "Hyperbolic + gyroplane + triplet (ours)": dict(geometry="hyperbolic", gyroplane=True, triplet=True),
    # Control: the full model after 5 steps, nearly its random initial filters -- what training adds.
    "Hyperbolic + gyroplane + triplet, 5 training steps (control)": dict(geometry="hyperbolic", gyroplane=True,
                                                                          triplet=True, steps=5),
}


def timed_stages(work):
    """Drive a progress generator, returning its result and the seconds spent in each stage."""
    seconds: dict[str, float] = {}
    stage, started = None, time.perf_counter()

    def on_progress(event):
        nonlocal stage, started
        if event.stage != stage:
            now = time.perf_counter()
            if stage is not None:
                seconds[stage] = seconds.get(stage, 0.0) + now - started
            stage, started = event.stage, now

    result = run_to_completion(work, on_progress)
    if stage is not None:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started
    return result, seconds


def direct_kmeans_labels(trained, image, device: str, seed: int):
    """The paper's protocol: a fresh k-means of the (smoothed) latent field for each k, no tree."""
    latents = run_to_completion(clustering_field(trained, image, device=device))
    points = latents.reshape(-1, latents.shape[-1])

    def labels_at_k(k: int) -> np.ndarray:
        kmeans = kmeans_for(trained.config, k, seed=seed, device=device)
        return (kmeans.fit(points).predict(points) + 1).reshape(image.shape)

    return labels_at_k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model (default: preset)")
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=5)
    parser.add_argument("--n-fine", type=int, default=16)
    parser.add_argument("--irregular", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the clustering")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=None,
                        help="train every model once per seed and report the mean ± standard deviation "
                             "over them (default: --seed)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these rows (substring match)")
    parser.add_argument("--key", default=None, help="section key in docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    variant = "irregular" if args.irregular else "regular"
    train_images = [make_toy_volume(args.seed + i, irregular=args.irregular).image for i in range(args.n_train)]
    tests = [make_toy_volume(args.seed + 1000 + i, irregular=args.irregular) for i in range(args.n_test)]
    selected = lambda name: args.only is None or any(s.lower() in name.lower() for s in args.only)  # noqa: E731

    rows, per_class_rows = [], []

    def record(name, scores_per_run, extra):
        """scores_per_run: one list of per-volume scores per training run (one run for the baselines)."""
        means = np.array([[np.mean([s[level].mean_dice for s in run]) for level in LEVEL_K] for run in scores_per_run])
        cells = [f"{m:.3f}" if len(means) == 1 else f"{m:.3f} ± {d:.3f}"
                 for m, d in zip(means.mean(0), means.std(0))]
        rows.append([name, *cells, *extra])
        per_class = [float(np.mean([s[3].per_class_dice[c] for run in scores_per_run for s in run]))
                     for c in range(len(LEVEL_CLASSES[3]))]
        per_class_rows.append([name, *per_class])
        print(f"{name:<42} L1 {cells[0]}  L2 {cells[1]}  L3 {cells[2]}  " + "  ".join(str(e) for e in extra),
              flush=True)

    for name, fn in BASELINES.items():
        if not selected(name):
            continue
        started = time.perf_counter()
        scores = [score_levels(lambda k, t=t: fn(t.image, k, args.seed), t.truth) for t in tests]
        seconds = (time.perf_counter() - started) / len(tests)
        record(name, [scores], ["—", "—", f"{seconds:.2f} (all k)"])

    train_seeds = args.train_seeds or [args.seed]
    for name, overrides in ABLATIONS.items():
        if not selected(name):
            continue
        scores, direct, patches_per_s, infer_s, cluster_s = [], [], [], [], []
        for train_seed in train_seeds:
            config = get_preset(args.preset, **{"steps": args.steps, "seed": train_seed, **overrides})
            trained, train_seconds = timed_stages(train(train_images, config, device=args.device))
            patches_per_s.append(3 * config.batch_size * config.steps / train_seconds["train"])
            run = []
            for t in tests:
                segmentation, seconds = timed_stages(
                    segment(trained, t.image, n_fine=args.n_fine, device=args.device, seed=args.seed))
                infer_s.append(seconds.get("infer", 0.0))
                cluster_s.append(seconds.get("cluster", 0.0))
                run.append(score_levels(segmentation.labels_at_k, t.truth))
            scores.append(run)
            if "(ours)" in name:
                direct.append([score_levels(direct_kmeans_labels(trained, t.image, args.device, args.seed), t.truth)
                               for t in tests])
        record(name, scores, [f"{np.mean(patches_per_s):.0f}", f"{np.mean(infer_s):.2f}", f"{np.mean(cluster_s):.2f}"])
        if direct:
            record(name.replace("(ours)", "(ours), fresh k-means per level, no tree"), direct, ["—", "—", "—"])

    for name, dice in PAPER.items():
        rows.append([name, *dice, "—", "—", "—"])

    header = ["method", "L1 (k=2)", "L2 (k=4)", "L3 (k=8)", "train patches/s", "infer s/vol", "cluster s/vol"]
    table = markdown_table(header, rows)
    per_class = markdown_table(["method (level 3, k=8)", *LEVEL_CLASSES[3]], per_class_rows)
    print("\n" + table + "\n\n" + per_class)
    if not args.no_write:
        steps = get_preset(args.preset, steps=args.steps).steps
        runs = (f"trained once per seed {', '.join(map(str, train_seeds))}; each cell is the mean ± standard "
                f"deviation over those trainings of the mean Dice over test volumes" if len(train_seeds) > 1
                else f"trained once (seed {train_seeds[0]}); mean Dice over test volumes")
        body = (f"Synthetic {variant} volumes (50³): {args.n_train} for training, {args.n_test} unseen for "
                f"testing; preset `{args.preset}`, {steps} training steps per model, {args.n_fine} fine "
                f"clusters cut at k; device `{args.device}`. Every model is {runs} "
                f"(background included, unmatched classes count 0); the baselines are deterministic. "
                f"Training patches/s counts parent, positive and negative patches.\n\n{table}\n\n"
                f"Per-class Dice at level 3 (mean over all runs and test volumes):\n\n{per_class}\n")
        key = args.key or f"toy_ablation_{variant}_{args.device.split(':')[0]}"
        write_section(key, f"Toy ablation ({variant}, {args.device})", body, script=__file__, argv=argv,
                      device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
