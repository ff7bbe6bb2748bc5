import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from napari_hypseg.core.errors import ConfigError
from napari_hypseg.core.kmeans import EuclideanKMeans, NotFittedError
from napari_hypseg.core.mixture import GaussianMixtureClusters


def _two_clouds(n=4000, seed=0):
    """A tight cloud (spread 0.5) beside a wide one (spread 2), 4 apart: k-means puts the boundary
    halfway between the centres and gives the tight cloud the wide one's near edge; a Gaussian per
    cluster, with its own covariance, puts it where the densities meet."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    points = np.where(truth[:, None] == 0, rng.normal(0, 0.5, (n, 3)), rng.normal(0, 2.0, (n, 3)) + [4.0, 0, 0])
    return points, truth


def test_a_mixture_separates_clouds_of_unequal_spread_that_k_means_mixes():
    points, truth = _two_clouds()
    mixture = GaussianMixtureClusters(2, random_state=0).fit(points)
    assert adjusted_rand_score(truth, mixture.predict(points)) > 0.9
    assert adjusted_rand_score(truth, EuclideanKMeans(2, random_state=0).fit_predict(points)) < 0.7
    assert mixture.cluster_centers_.shape == (2, 3) and mixture.converged_
    assert np.array_equal(mixture.labels_, mixture.predict(points[mixture.sample_indices_]))


def test_fitting_on_a_sample_and_predicting_in_chunks_label_every_point_as_a_whole_fit_would():
    points, truth = _two_clouds(n=6000)
    sampled = GaussianMixtureClusters(2, max_fit_samples=2000, chunk_size=500, random_state=3).fit(points)
    assert len(sampled.sample_indices_) == 2000 and len(sampled.labels_) == 2000
    labels = sampled.predict(points)
    assert labels.dtype == np.int32 and labels.shape == (6000,)
    assert np.array_equal(labels, sampled.mixture_.predict(points))
    assert adjusted_rand_score(truth, labels) > 0.9


def test_a_seed_reproduces_the_clusters():
    points, _ = _two_clouds(n=3000, seed=1)
    first = GaussianMixtureClusters(3, random_state=7).fit(points)
    second = GaussianMixtureClusters(3, random_state=7).fit(points)
    np.testing.assert_array_equal(first.cluster_centers_, second.cluster_centers_)
    np.testing.assert_array_equal(first.predict(points), second.predict(points))


def test_bad_parameters_and_inputs_are_named():
    points, _ = _two_clouds(n=200)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixtureClusters(2).predict(points)
    with pytest.raises(ConfigError, match="reg_covar"):
        GaussianMixtureClusters(2, reg_covar=0).fit(points)
    with pytest.raises(ConfigError, match="cannot make 5 clusters from 3 points"):
        GaussianMixtureClusters(5).fit(points[:3])
    bad = points.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        GaussianMixtureClusters(2).fit(bad)
    fitted = GaussianMixtureClusters(2, random_state=0).fit(points)
    with pytest.raises(ConfigError, match="expecting 3 features"):
        fitted.predict(points[:, :2])


def test_labelling_in_float32_agrees_with_scikit_learn_on_many_components():
    """predict labels in float32 (the tomogram's every voxel); it must pick the component
    scikit-learn's float64 predict picks, but for rows within rounding of a tie."""
    rng = np.random.default_rng(4)
    centres = rng.normal(0, 3, (8, 6))
    points = centres[rng.integers(0, 8, 20000)] + rng.normal(0, 1, (20000, 6)) * rng.uniform(0.3, 2, 6)
    mixture = GaussianMixtureClusters(8, random_state=1).fit(points)
    labels = mixture.predict(points)
    assert len(np.unique(labels)) == 8
    assert np.count_nonzero(labels != mixture.mixture_.predict(points)) <= 2
