"""The evaluation protocol, in one place: which k scores which level of the truth, and how a
segmentation method is scored over the levels (method.md §8). The demo, the benchmarks and the
tests all use it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .metrics import Score, score_segmentation

LEVEL_K: dict[int, int] = {1: 2, 2: 4, 3: 8}
"""Truth level -> number of clusters it is scored with (the paper's k = 2 / 4 / 8)."""

TOY_TRAIN_VOLUMES = 8
"""Benchmarks train on the synthetic volumes of seeds 0 .. TOY_TRAIN_VOLUMES - 1."""
TOY_VALIDATION_SEED = 2000
"""Settings are chosen on the synthetic volumes of seeds TOY_VALIDATION_SEED and up (docs/tuning.md)."""
TOY_TEST_SEED = 5000
"""Benchmarks report on the synthetic volumes of seeds TOY_TEST_SEED and up, which no setting was
ever tuned on."""


def score_levels(labels_at_k: Callable[[int], np.ndarray], truth: Mapping[int, np.ndarray],
                 level_k: Mapping[int, int] = LEVEL_K) -> dict[int, Score]:
    """Score a method at every level: `labels_at_k(k)` gives its (Z, Y, X) labels with k clusters,
    `truth[level]` the truth; Hungarian-matched Dice, unmatched classes count 0."""
    return {level: score_segmentation(labels_at_k(k), truth[level]) for level, k in level_k.items()}


def mean_dice(scores: Sequence[Mapping[int, Score]], level: int) -> float:
    """The mean over volumes of one level's mean Dice; `scores` are score_levels results, one per volume."""
    return float(np.mean([score[level].mean_dice for score in scores]))
