import numpy as np
import pytest

from napari_hypseg.core.baselines import BASELINES
from napari_hypseg.core.evaluation import LEVEL_K, mean_dice, score_levels
from napari_hypseg.core.synthetic import make_toy_volume


@pytest.fixture(scope="module")
def volume():
    return make_toy_volume(7)


def test_score_levels_uses_the_protocols_k(volume):
    asked = []

    def truth_at_k(k):
        asked.append(k)
        level = {k: level for level, k in LEVEL_K.items()}[k]
        return volume.truth[level] + 1

    scores = score_levels(truth_at_k, volume.truth)
    assert asked == [2, 4, 8]
    assert all(scores[level].mean_dice == pytest.approx(1.0) for level in LEVEL_K)
    one_cluster = score_levels(lambda k: np.ones(volume.image.shape, np.uint8), volume.truth)
    assert mean_dice([scores, one_cluster], 1) == pytest.approx((1.0 + one_cluster[1].mean_dice) / 2)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_gives_k_labels_and_beats_chance_at_level_1(volume, name):
    labels = BASELINES[name](volume.image, 2, 0)
    assert labels.shape == volume.image.shape and set(np.unique(labels)) == {1, 2}
    assert np.array_equal(labels, BASELINES[name](volume.image, 2, 0))            # seeded
    one_cluster = score_levels(lambda k: np.ones(volume.image.shape, np.uint8), volume.truth)[1].mean_dice
    assert score_levels(lambda k: BASELINES[name](volume.image, k, 0), volume.truth, {1: 2})[1].mean_dice > one_cluster
