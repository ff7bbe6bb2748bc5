"""`hypseg evaluate`: score a label volume against a truth volume (method.md §8).

Clusters are matched one-to-one to truth classes by the Hungarian algorithm on Dice. The mean Dice
runs over every truth class, background included; a class left without a cluster counts 0.
Also reported: the Dice of each class, the mean IoU on the same matching, and the adjusted Rand index.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a segmentation against a truth (Dice, IoU, ARI)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pred", type=Path, metavar="PRED", help="predicted labels (.tif .mrc .nii.gz ...)")
    parser.add_argument("truth", type=Path, metavar="TRUTH", help="truth labels of the same volume")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def class_names(class_ids) -> dict[int, str] | None:
    """Names of the synthetic dataset's classes when the truth's ids are among them (ids 0..5)."""
    from ..core.synthetic import LEVEL_CLASSES

    names = LEVEL_CLASSES[3]
    if all(0 <= c < len(names) for c in class_ids):
        return {int(c): names[c] for c in class_ids}
    return None


def run(args: argparse.Namespace) -> int:
    from ..core.metrics import score_segmentation
    from ..core.volume_io import read_volume

    pred = read_volume(args.pred).data
    truth = read_volume(args.truth).data
    score = score_segmentation(pred, truth, names=(str(args.pred), str(args.truth)))
    names = class_names(score.per_class_dice)
    if args.json:
        print(json.dumps({"pred": str(args.pred), "truth": str(args.truth), **score.to_dict(),
                          "class_names": names}))
        return 0
    print(f"mean Dice  {score.mean_dice:.4f}  (over {len(score.per_class_dice)} truth classes, "
          "unmatched classes count 0)")
    print(f"mean IoU   {score.mean_iou:.4f}")
    print(f"ARI        {score.ari:.4f}")
    print("per class:")
    for class_id, dice in score.per_class_dice.items():
        label = f"{class_id} {names[class_id]}" if names else str(class_id)
        cluster = score.matching.get(class_id)
        matched = f"cluster {cluster}" if cluster is not None else "no cluster"
        print(f"  {label:<18} Dice {dice:.4f}   <- {matched}")
    return 0
