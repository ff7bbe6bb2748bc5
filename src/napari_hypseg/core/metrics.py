"""Scoring an unsupervised segmentation against a truth (method.md §8).

Cluster ids are arbitrary, so predicted clusters are matched one-to-one to truth classes by the
Hungarian algorithm on their Dice. The mean Dice runs over *every* truth class, background
included: a class left without a cluster (fewer clusters than classes) scores 0. The paper's
released scorer averaged over the matched pairs only, which flatters a prediction that uses fewer
clusters than there are classes; this one does not.

Everything derives from one contingency table of (cluster, class) voxel counts built with a single
``np.bincount``, so a 256³ volume scores in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .errors import VolumeError


@dataclass
class Score:
    """Scores of one prediction; dictionaries are keyed by truth class id."""

    mean_dice: float
    """Mean over all truth classes of the matched cluster's Dice (0 for unmatched classes)."""
    per_class_dice: dict[int, float]
    mean_iou: float
    """Like mean_dice, with intersection over union, on the same matching."""
    ari: float
    """Adjusted Rand index of the two partitions (needs no matching)."""
    matching: dict[int, int]
    """Truth class -> predicted cluster id, for the matched classes only."""

    def to_dict(self) -> dict[str, Any]:
        """Plain Python numbers, ready for ``json.dumps``."""
        return {
            "mean_dice": self.mean_dice,
            "per_class_dice": dict(self.per_class_dice),
            "mean_iou": self.mean_iou,
            "ari": self.ari,
            "matching": dict(self.matching),
        }


def score_segmentation(pred, truth, *, names: tuple[str, str] = ("the prediction", "the truth")) -> Score:
    """Hungarian-matched Dice and IoU (unmatched truth classes count 0) and the adjusted Rand index.

    `names` (of the prediction and the truth, e.g. their files) are what a shape mismatch's message cites."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise VolumeError(f"{names[0]} has shape {pred.shape} but {names[1]} has shape {truth.shape}; "
                          "score a segmentation made on the very volume the truth labels")
    if pred.size == 0:
        raise VolumeError("the prediction and the truth hold no voxels")
    cluster_ids, pred_index = _compact(pred, "prediction")
    class_ids, truth_index = _compact(truth, "truth")
    table = contingency_table(pred_index, truth_index, len(cluster_ids), len(class_ids))

    overlap = table.astype(np.float64)
    cluster_sizes = overlap.sum(axis=1, keepdims=True)
    class_sizes = overlap.sum(axis=0, keepdims=True)
    dice = 2 * overlap / (cluster_sizes + class_sizes)
    iou = overlap / (cluster_sizes + class_sizes - overlap)
    rows, cols = linear_sum_assignment(-dice)

    per_class_dice = {int(c): 0.0 for c in class_ids}
    per_class_iou = dict(per_class_dice)
    matching = {}
    for row, col in zip(rows, cols):
        truth_class = int(class_ids[col])
        per_class_dice[truth_class] = float(dice[row, col])
        per_class_iou[truth_class] = float(iou[row, col])
        matching[truth_class] = int(cluster_ids[row])
    return Score(
        mean_dice=float(np.mean(list(per_class_dice.values()))),
        per_class_dice=per_class_dice,
        mean_iou=float(np.mean(list(per_class_iou.values()))),
        ari=adjusted_rand_index(table),
        matching=dict(sorted(matching.items())),
    )


def contingency_table(pred_index: np.ndarray, truth_index: np.ndarray, n_clusters: int, n_classes: int) -> np.ndarray:
    """Voxel counts of every (cluster, class) pair, from compact indices, in one bincount."""
    wide = np.int64 if n_clusters * n_classes > np.iinfo(np.int32).max else np.int32
    combined = pred_index.ravel().astype(wide) * n_classes + truth_index.ravel()
    return np.bincount(combined, minlength=n_clusters * n_classes).reshape(n_clusters, n_classes)


def adjusted_rand_index(table: np.ndarray) -> float:
    """Adjusted Rand index from a contingency table, with exact integer pair counts.

    The same formula as ``sklearn.metrics.adjusted_rand_score`` (via its pair confusion matrix),
    without its own pass over the voxels; identical partitions, even trivial ones, score 1.
    """
    table = table.astype(np.int64)
    n = int(table.sum())
    sum_squares = int((table.astype(object) ** 2).sum())
    pred_sizes = table.sum(axis=1).astype(object)
    truth_sizes = table.sum(axis=0).astype(object)
    true_positive = sum_squares - n
    false_positive = int((pred_sizes ** 2).sum()) - sum_squares   # same cluster, different class
    false_negative = int((truth_sizes ** 2).sum()) - sum_squares  # same class, different cluster
    true_negative = n * n - false_positive - false_negative - sum_squares
    if false_positive == 0 and false_negative == 0:
        return 1.0
    numerator = 2 * (true_positive * true_negative - false_negative * false_positive)
    denominator = ((true_positive + false_negative) * (false_negative + true_negative)
                   + (true_positive + false_positive) * (false_positive + true_negative))
    return float(numerator / denominator)


_LOOKUP_LIMIT = 1 << 24


def _compact(labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The distinct label ids and each voxel's index into them.

    Small non-negative integer ids (every label volume in practice) go through a lookup table,
    linear in the voxel count; anything else falls back to ``np.unique``.
    """
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise VolumeError(f"the {name} holds non-integer values; labels must be integer ids (is it an image?)")
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise VolumeError(f"the {name} has data type {labels.dtype}; labels must be integer ids")
    low, high = int(labels.min()), int(labels.max())
    if low >= 0 and high < _LOOKUP_LIMIT:
        present = np.bincount(labels.ravel(), minlength=high + 1) > 0
        ids = np.flatnonzero(present)
        lookup = (np.cumsum(present) - 1).astype(np.int32)
        return ids, lookup[labels]
    ids, index = np.unique(labels, return_inverse=True)
    return ids, index.reshape(labels.shape).astype(np.int32)
