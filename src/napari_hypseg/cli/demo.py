"""`hypseg demo`: the whole method on built-in data, headless, in a few minutes on a CPU.

Synthetic training volumes -> train -> segment several unseen test volumes once finely each -> cut
the hierarchy at k = 2 / 4 / 8 -> mean Dice per level against the truth, beside the best of the
classical baselines (core/baselines.py) on the same volumes -> label files, a model file and a PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="train, segment and score on built-in synthetic data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="folder for the model, labels, scores and PNG (default: demo-output); "
                             "files of an earlier demo there are replaced")
    parser.add_argument("--preset", default="fast", help="training preset (default: fast)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--n-train", type=int, default=4, help="synthetic training volumes (default: 4)")
    parser.add_argument("--n-test", type=int, default=3,
                        help="unseen test volumes segmented and scored (default: 3; at least 1)")
    parser.add_argument("--n-fine", type=int, default=16, help="fine clusters before the hierarchy cut")
    parser.add_argument("--irregular", action="store_true", help="use the irregular-shape variant")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training and clustering")
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core.baselines import BASELINES
    from ..core.config import get_preset
    from ..core.device import resolve_device
    from ..core.errors import ConfigError
    from ..core.evaluation import LEVEL_K, mean_dice, score_levels
    from ..core.progress import run_to_completion
    from ..core.segmentation import segment
    from ..core.synthetic import LEVEL_CLASSES, make_toy_volume
    from ..core.training import train
    from ..core.validation import integer, writable_folder
    from ..core.volume_io import write_labels
    from ._progress import ProgressLine

    # Every argument and the output folder are checked before the folder is made or any work starts.
    if args.n_test < 1:
        raise ConfigError(f"--n-test must be at least 1, got {args.n_test}")
    integer("--n-train", args.n_train, minimum=1)
    integer("--n-fine", args.n_fine, minimum=max(LEVEL_K.values()))
    integer("--seed", args.seed, minimum=0)
    config = get_preset(args.preset, steps=args.steps, seed=args.seed)
    resolve_device(args.device)
    out: Path = writable_folder(args.out, what="demo output", create=True)
    variant = "irregular" if args.irregular else "regular"
    print(f"[demo] generating {args.n_train} training volumes and {args.n_test} unseen test volumes ({variant} shapes)")
    train_images = [make_toy_volume(args.seed + i, irregular=args.irregular).image for i in range(args.n_train)]
    tests = [make_toy_volume(args.seed + 10_000 + i, irregular=args.irregular) for i in range(args.n_test)]

    print(f"[demo] training the '{args.preset}' preset for {config.steps} steps")
    line = ProgressLine()
    trained = run_to_completion(
        train(train_images, config, checkpoint_path=out / "model.pt", device=args.device), line)
    line.close()
    print(f"[demo] model written to {trained.checkpoint_path}")

    ours, predictions = [], {}
    for index, test in enumerate(tests):
        print(f"[demo] segmenting test volume {index + 1}/{len(tests)} into {args.n_fine} fine clusters")
        segmentation = run_to_completion(
            segment(trained, test.image, n_fine=args.n_fine, device=args.device, seed=args.seed), line)
        line.close()
        ours.append(score_levels(segmentation.labels_at_k, test.truth))
        if index == 0:
            predictions = {level: segmentation.labels_at_k(k) for level, k in LEVEL_K.items()}
    print("[demo] scoring the classical baselines on the same volumes")
    baselines = {name: [score_levels(lambda k, image=t.image: fn(image, k, args.seed), t.truth) for t in tests]
                 for name, fn in BASELINES.items()}

    print(f"\nmean Dice over {len(tests)} unseen test volumes")
    print(f"{'level':<7}{'k':>3}{'napari-hypseg':>15}{'best baseline':>15}   (which)")
    summary = {}
    for level, k in LEVEL_K.items():
        best = max(baselines, key=lambda name: mean_dice(baselines[name], level))
        summary[level] = {"k": k, "napari_hypseg": mean_dice(ours, level),
                          "best_baseline": mean_dice(baselines[best], level),
                          "best_baseline_name": best,
                          "per_class_dice": {LEVEL_CLASSES[level][c]: float(np.mean([s[level].per_class_dice[c]
                                                                                     for s in ours]))
                                             for c in range(len(LEVEL_CLASSES[level]))}}
        print(f"{level:<7}{k:>3}{summary[level]['napari_hypseg']:>15.3f}{summary[level]['best_baseline']:>15.3f}   ({best})")
    for level, k in LEVEL_K.items():
        write_labels(out / f"labels_level{level}_k{k}.tif", predictions[level], overwrite=True)
    (out / "scores.json").write_text(json.dumps(summary, indent=2))
    png = _write_slice_png(out / "segmentation.png", tests[0].image, tests[0].truth[3], predictions)
    print(f"[demo] {png.name}: the middle slice of test volume 1, its truth and every level")
    print(f"\n[demo] labels and PNG of test volume 1, and scores.json, written to {out.resolve()}")
    return 0


def _write_slice_png(path: Path, image, truth, predictions: dict) -> Path:
    """The middle z-slice of the image, its finest truth and the prediction at each level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = image.shape[0] // 2
    panels = [("image", image[z], "gray"), ("truth (level 3)", truth[z], "tab10")]
    from ..core.evaluation import LEVEL_K

    panels += [(f"level {level} (k={LEVEL_K[level]})", labels[z], "tab10")
               for level, labels in predictions.items()]
    figure, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for axis, (title, data, cmap) in zip(axes, panels):
        axis.imshow(data, cmap=cmap, interpolation="nearest")
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
