"""`hypseg demo`: the whole method on built-in data, headless, in a few minutes on a CPU.

Synthetic training volumes -> train -> segment an unseen test volume once finely -> cut the hierarchy
at k = 2 / 4 / 8 -> Dice per level against the truth -> label files, a model file and a PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PAPER_DICE = {1: 0.952, 2: 0.541, 3: 0.216}
LEVEL_K = {1: 2, 2: 4, 3: 8}


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
    parser.add_argument("--n-fine", type=int, default=16, help="fine clusters before the hierarchy cut")
    parser.add_argument("--irregular", action="store_true", help="use the irregular-shape variant")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training and clustering")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..core.config import get_preset
    from ..core.metrics import score_segmentation
    from ..core.progress import run_to_completion
    from ..core.segmentation import segment
    from ..core.synthetic import LEVEL_CLASSES, make_toy_volume
    from ..core.training import train
    from ..core.volume_io import write_labels
    from ._progress import ProgressLine

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = get_preset(args.preset, steps=args.steps, seed=args.seed)
    print(f"[demo] generating {args.n_train} training volumes and 1 test volume "
          f"({'irregular' if args.irregular else 'regular'} shapes)")
    train_images = [make_toy_volume(args.seed + i, irregular=args.irregular).image for i in range(args.n_train)]
    test = make_toy_volume(args.seed + 10_000, irregular=args.irregular)

    print(f"[demo] training the '{args.preset}' preset for {config.steps} steps")
    line = ProgressLine()
    trained = run_to_completion(
        train(train_images, config, checkpoint_path=out / "model.pt", device=args.device), line)
    line.close()
    print(f"[demo] model written to {trained.checkpoint_path}")

    print(f"[demo] segmenting the test volume into {args.n_fine} fine clusters")
    segmentation = run_to_completion(
        segment(trained, test.image, n_fine=args.n_fine, device=args.device, seed=args.seed), line)
    line.close()

    scores = {}
    predictions = {}
    print(f"\n{'level':<7}{'k':>3}{'Dice':>8}{'paper':>8}   per-class Dice")
    for level, k in LEVEL_K.items():
        labels = segmentation.labels_at_k(k)
        predictions[level] = labels
        score = score_segmentation(labels, test.truth[level])
        scores[level] = score.to_dict()
        per_class = ", ".join(f"{LEVEL_CLASSES[level][c]} {d:.2f}" for c, d in score.per_class_dice.items())
        print(f"{level:<7}{k:>3}{score.mean_dice:>8.3f}{PAPER_DICE[level]:>8.3f}   {per_class}")
        write_labels(out / f"labels_level{level}_k{k}.tif", labels, overwrite=True)
    (out / "scores.json").write_text(json.dumps(scores, indent=2))
    png = _write_slice_png(out / "segmentation.png", test.image, test.truth[3], predictions)
    print(f"\n[demo] labels, scores.json and {png.name} written to {out.resolve()}")
    return 0


def _write_slice_png(path: Path, image, truth, predictions: dict) -> Path:
    """The middle z-slice of the image, its finest truth and the prediction at each level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = image.shape[0] // 2
    panels = [("image", image[z], "gray"), ("truth (level 3)", truth[z], "tab10")]
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
