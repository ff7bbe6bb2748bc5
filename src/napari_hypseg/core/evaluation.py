"""The evaluation protocol, in one place: which k scores which level of the truth, and how a
segmentation method is scored over the levels (method.md §8). The demo, the benchmarks and the
tests all use it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .metrics import Score, score_segmentation

LEVEL_K: dict[int, int] = {1: 2, 2: 4, 3: 8}
"""Truth level -> number of clusters it is scored with (the paper's k = 2 / 4 / 8)."""


def score_levels(labels_at_k: Callable[[int], np.ndarray], truth: Mapping[int, np.ndarray],
                 level_k: Mapping[int, int] = LEVEL_K) -> dict[int, Score]:
    """Score a method at every level: `labels_at_k(k)` gives its (Z, Y, X) labels with k clusters,
    `truth[level]` the truth; Hungarian-matched Dice, unmatched classes count 0."""
    return {level: score_segmentation(labels_at_k(k), truth[level]) for level, k in level_k.items()}
