"""Scoring: Hungarian-matched Dice/IoU with unmatched classes counted as 0, and the adjusted Rand index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from napari_hypseg.core.errors import VolumeError
from napari_hypseg.core.metrics import score_segmentation


def volume(values) -> np.ndarray:
    """A list of labels as a (1, 1, N) volume."""
    return np.asarray(values).reshape(1, 1, -1)


def test_a_perfect_prediction_scores_one():
    truth = np.random.default_rng(0).integers(0, 4, size=(6, 7, 8)).astype(np.uint8)
    score = score_segmentation(truth, truth)
    assert score.mean_dice == 1.0 and score.mean_iou == 1.0 and score.ari == 1.0
    assert score.per_class_dice == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    assert score.matching == {0: 0, 1: 1, 2: 2, 3: 3}


def test_cluster_ids_are_arbitrary():
    truth = np.random.default_rng(1).integers(0, 4, size=(5, 5, 5))
    pred = np.array([7, 3, 1, 12], dtype=np.uint16)[truth]
    score = score_segmentation(pred, truth)
    assert score.mean_dice == 1.0 and score.ari == 1.0
    assert score.matching == {0: 7, 1: 3, 2: 1, 3: 12}


def test_a_partial_overlap_gives_its_hand_computed_value():
    truth = volume([0] * 5 + [1] * 5)
    pred = volume([1] * 4 + [2] * 6)
    # cluster 1 ∩ class 0 = 4 voxels: Dice 2·4/(4+5) = 8/9;  cluster 2 ∩ class 1 = 5: Dice 2·5/(6+5) = 10/11
    score = score_segmentation(pred, truth)
    assert score.matching == {0: 1, 1: 2}
    assert score.per_class_dice == pytest.approx({0: 8 / 9, 1: 10 / 11})
    assert score.mean_dice == pytest.approx((8 / 9 + 10 / 11) / 2)
    assert score.mean_iou == pytest.approx((4 / 5 + 5 / 6) / 2)
    # pairs: together in both 6 + 10 = 16; in pred 6 + 15 = 21; in truth 10 + 10 = 20; of 45 pairs:
    # ARI = (16 − 21·20/45) / ((21 + 20)/2 − 21·20/45) = 40/67
    assert score.ari == pytest.approx(40 / 67)


def test_one_cluster_against_two_classes_counts_the_unmatched_class_as_zero():
    truth = volume([0] * 50 + [1] * 50)
    score = score_segmentation(np.ones_like(truth), truth)
    assert score.mean_dice == pytest.approx((2 * 0.5 / (1 + 0.5) + 0) / 2)  # 1/3, not the flattering 2/3
    assert sorted(score.per_class_dice.values()) == pytest.approx([0.0, 2 / 3])
    assert len(score.matching) == 1
    assert score.mean_iou == pytest.approx(0.25)
    assert score.ari == 0.0


def test_fewer_clusters_than_classes_leaves_the_worst_matched_classes_at_zero():
    truth = volume([0] * 6 + [1] * 3 + [2] * 1)
    pred = volume([1] * 6 + [2] * 4)
    score = score_segmentation(pred, truth)
    assert score.matching == {0: 1, 1: 2}
    assert score.per_class_dice == pytest.approx({0: 1.0, 1: 6 / 7, 2: 0.0})
    assert score.mean_dice == pytest.approx((1 + 6 / 7 + 0) / 3)


def test_a_class_split_over_two_clusters_scores_its_best_part():
    truth = volume([0] * 4 + [1] * 4)
    pred = volume([1, 1, 1, 1, 2, 2, 3, 3])
    score = score_segmentation(pred, truth)
    assert score.per_class_dice == pytest.approx({0: 1.0, 1: 2 * 2 / (2 + 4)})
    assert set(score.matching.values()) <= {1, 2, 3} and score.matching[0] == 1


def test_ari_of_simple_cases():
    truth = volume([0, 0, 1, 1])
    assert score_segmentation(volume([5, 5, 9, 9]), truth).ari == 1.0
    assert score_segmentation(volume([0, 1, 0, 1]), truth).ari == pytest.approx(-0.5)
    # everything in one cluster against everything in one class: identical partitions
    assert score_segmentation(volume([3, 3, 3]), volume([0, 0, 0])).ari == 1.0


def test_ari_agrees_with_scikit_learn():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(2, 60))
        truth = rng.integers(0, int(rng.integers(1, 6)), size=n)
        pred = rng.integers(-2, int(rng.integers(-1, 5)), size=n)
        assert score_segmentation(volume(pred), volume(truth)).ari == pytest.approx(
            adjusted_rand_score(truth, pred), abs=1e-12)


def test_huge_or_negative_ids_score_like_small_ones():
    truth = np.random.default_rng(3).integers(0, 3, size=(4, 5, 6))
    small = score_segmentation(truth + 1, truth)
    odd_ids = np.array([-7, 2**40, 12], dtype=np.int64)[truth]
    odd = score_segmentation(odd_ids, truth)
    assert odd.mean_dice == small.mean_dice == 1.0 and odd.ari == small.ari
    assert odd.matching == {0: -7, 1: 2**40, 2: 12}


def test_integral_floats_are_accepted_and_fractional_ones_refused():
    truth = volume([0, 0, 1, 1])
    assert score_segmentation(truth.astype(np.float32), truth).mean_dice == 1.0
    with pytest.raises(VolumeError, match="non-integer"):
        score_segmentation(volume([0.5, 0, 1, 1]), truth)


def test_a_shape_mismatch_is_a_clear_error():
    with pytest.raises(VolumeError, match=r"shape \(2, 3, 4\).*shape \(2, 3, 5\)"):
        score_segmentation(np.zeros((2, 3, 4), np.uint8), np.zeros((2, 3, 5), np.uint8))


def test_to_dict_is_json_ready():
    score = score_segmentation(volume([1, 1, 2, 2]), volume([0, 0, 1, 1]))
    loaded = json.loads(json.dumps(score.to_dict()))
    assert loaded == {"mean_dice": 1.0, "per_class_dice": {"0": 1.0, "1": 1.0}, "mean_iou": 1.0,
                      "ari": 1.0, "matching": {"0": 1, "1": 2}}


def test_a_large_volume_scores_like_its_parts():
    """The contingency-table path on a 128³ volume equals a direct per-class computation."""
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, size=(128, 128, 128)).astype(np.uint8)
    pred = np.where(rng.random(truth.shape) < 0.9, truth + 1, 4).astype(np.uint16)
    score = score_segmentation(pred, truth)
    for truth_class, cluster in score.matching.items():
        a, b = truth == truth_class, pred == cluster
        assert score.per_class_dice[truth_class] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert score.matching == {0: 1, 1: 2, 2: 3}
