import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from napari_hypseg.core.errors import ConfigError
from napari_hypseg.core.kmeans import EuclideanKMeans, PoincareKMeans
from napari_hypseg.core.manifold import frechet_mean
from napari_hypseg.core.manifold import dist, expmap0, mobius_add


def _poincare_dist(x, y, curvature=1.0) -> np.ndarray:
    x, y = (torch.tensor(np.array(a), dtype=torch.float64) for a in (x, y))
    return dist(x, y, curvature).numpy()


def _blobs(curvature=1.0, n_per=300, seed=0, d=3, spread=0.08):
    """Points around centres spread over the ball (some near its boundary), well separated."""
    rng = np.random.default_rng(seed)
    tangent_centres = np.array([[2.5, 0, 0], [-2.5, 0, 0], [0, 3.0, 0], [0, -1.0, 2.0], [0.3, 0.2, -0.3]])[:, :d]
    centres = expmap0(torch.as_tensor(tangent_centres), curvature)
    points, truth = [], []
    for index, centre in enumerate(centres):
        noise = expmap0(torch.as_tensor(rng.normal(scale=spread, size=(n_per, d))), curvature)
        points.append(mobius_add(centre.expand(n_per, d), noise, curvature))
        truth.append(np.full(n_per, index))
    return torch.cat(points).numpy(), np.concatenate(truth), centres.numpy()


@pytest.mark.parametrize("curvature", [1.0, 2.5])
def test_recovers_well_separated_clusters(curvature):
    points, truth, centres = _blobs(curvature)
    model = PoincareKMeans(5, curvature=curvature, random_state=0)
    labels = model.fit_predict(points)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert np.array_equal(model.labels_, labels)
    # Each found centre sits at a true centre (the noise is symmetric about it).
    nearest = _poincare_dist(model.cluster_centers_[:, None], centres[None], curvature).min(1)
    assert nearest.max() < 0.05
    # inertia_ is the sum of squared Poincaré distances to the assigned centres.
    expected = (_poincare_dist(points, model.cluster_centers_[labels], curvature) ** 2).sum()
    assert model.inertia_ == pytest.approx(expected, rel=1e-6)
    assert 1 <= model.n_iter_ <= model.max_iter


def test_frechet_mean_of_symmetric_points_is_their_centre():
    rng = np.random.default_rng(1)
    v = expmap0(torch.as_tensor(rng.normal(scale=0.7, size=(6, 3))))
    symmetric = torch.cat([v, -v])
    assert np.allclose(frechet_mean(symmetric.numpy()), 0.0, atol=1e-12)
    # Möbius translation is an isometry: translating the symmetric set by p moves the mean to p.
    p = torch.tensor([0.55, -0.3, 0.2], dtype=torch.float64)
    moved = mobius_add(p.expand_as(symmetric), symmetric)
    assert np.allclose(frechet_mean(moved.numpy()), p.numpy(), atol=1e-10)
    c = 3.0
    moved_c = mobius_add((p / np.sqrt(c)).expand_as(symmetric), symmetric / np.sqrt(c), c)
    assert np.allclose(frechet_mean(moved_c.numpy(), curvature=c), p.numpy() / np.sqrt(c), atol=1e-10)


def test_frechet_mean_minimises_weighted_squared_distances():
    rng = np.random.default_rng(2)
    points = expmap0(torch.as_tensor(rng.normal(scale=1.5, size=(40, 3)))).numpy()
    weights = rng.uniform(0.1, 3.0, size=40)
    mean = frechet_mean(points, weights)

    def cost(m):
        return float((weights * _poincare_dist(points, np.broadcast_to(m, points.shape)) ** 2).sum())

    best = cost(mean)
    for _ in range(50):
        assert cost(mean + rng.normal(scale=1e-3, size=3)) > best
    # Not simply the Euclidean weighted average.
    assert cost(np.average(points, axis=0, weights=weights)) > best + 1e-6


def test_deterministic_by_random_state():
    points, _, _ = _blobs(n_per=200, seed=3, spread=0.5)
    a = PoincareKMeans(6, random_state=7).fit(points)
    b = PoincareKMeans(6, random_state=7).fit(points)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    assert np.array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_


def test_predict_is_nearest_centre_by_poincare_distance():
    points, _, _ = _blobs(n_per=200, seed=4, spread=0.6)
    model = PoincareKMeans(7, random_state=0, chunk_size=97).fit(points)
    rng = np.random.default_rng(5)
    unseen = expmap0(torch.as_tensor(rng.normal(scale=1.5, size=(500, 3)))).numpy().astype(np.float32)
    distances = _poincare_dist(unseen[:, None].astype(np.float64), model.cluster_centers_[None])
    assert np.array_equal(model.predict(unseen), distances.argmin(1))


def test_fits_a_sample_and_predicts_everything():
    points, truth, _ = _blobs(n_per=400)
    model = PoincareKMeans(5, max_fit_samples=300, random_state=0).fit(points)
    assert len(model.labels_) == 300 and len(model.sample_indices_) == 300
    assert np.all(np.diff(model.sample_indices_) > 0)
    read_only = points.astype(np.float32)
    read_only.flags.writeable = False  # as a memory-mapped latent file
    labels = model.predict(read_only)
    assert len(labels) == len(points)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert np.array_equal(labels[model.sample_indices_], model.labels_)


def _four_points_fifty_times():
    distinct = expmap0(torch.as_tensor(np.random.default_rng(6).normal(size=(4, 2)))).numpy()
    return distinct, np.repeat(distinct, 50, axis=0)


def test_as_many_clusters_as_distinct_points_leaves_no_cluster_without_points():
    distinct, points = _four_points_fifty_times()
    model = PoincareKMeans(4, random_state=0).fit(points)
    assert model.inertia_ == pytest.approx(0.0, abs=1e-12)
    assert np.array_equal(np.bincount(model.labels_, minlength=4), [50, 50, 50, 50])
    assert adjusted_rand_score(np.repeat(np.arange(4), 50), model.labels_) == 1.0
    np.testing.assert_allclose(model.cluster_centers_[model.predict(distinct)], distinct, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_clusters_than_distinct_points_gives_each_distinct_point_its_own_cluster(seed):
    """Six centres for four distinct points: two clusters must stay empty. What is guaranteed: each
    distinct point is one whole cluster, every centre (the surplus ones too) is one of the points, and
    predict labels the points as fit did."""
    distinct, points = _four_points_fifty_times()
    six = PoincareKMeans(6, random_state=seed).fit(points)
    assert six.inertia_ == pytest.approx(0.0, abs=1e-12)
    assert adjusted_rand_score(np.repeat(np.arange(4), 50), six.labels_) == 1.0
    assert len(np.unique(six.labels_)) == 4 and six.labels_.min() >= 0 and six.labels_.max() < 6
    nearest = np.abs(six.cluster_centers_[:, None] - distinct[None]).max(-1).min(1)
    assert six.cluster_centers_.shape == (6, 2) and np.all(nearest < 1e-9)
    np.testing.assert_array_equal(six.predict(points), six.labels_)


@pytest.mark.parametrize("kwargs", [
    {"n_clusters": 0}, {"n_clusters": 2.5}, {"curvature": 0.0}, {"curvature": -1.0}, {"curvature": float("nan")},
    {"n_init": 0}, {"max_iter": 0}, {"tol": -1.0}, {"max_fit_samples": 1}, {"chunk_size": 0},
    {"random_state": "seed"}, {"random_state": -3}, {"device": "no-such-device"},
])
def test_bad_parameters_are_config_errors_in_fit(kwargs):
    model = PoincareKMeans(**{"n_clusters": 3, **kwargs})   # stored as given, as scikit-learn's estimators
    assert model.get_params()[next(iter(kwargs))] is next(iter(kwargs.values()))
    with pytest.raises(ConfigError):
        model.fit(np.random.default_rng(0).uniform(-0.5, 0.5, size=(20, 2)))


def test_bad_inputs_are_config_errors():
    model = PoincareKMeans(3, random_state=0)
    with pytest.raises(ConfigError, match="not fitted"):
        model.predict(np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="2-D"):
        model.fit(np.zeros(10))
    with pytest.raises(ConfigError, match="NaN"):
        model.fit(np.array([[0.1, 0.1], [np.nan, 0.0], [0.2, 0.0], [0.0, 0.3]]))
    with pytest.raises(ConfigError, match="outside the Poincaré ball"):
        model.fit(np.array([[0.1, 0.1], [1.5, 0.0], [0.2, 0.0], [0.0, 0.3]]))
    with pytest.raises(ConfigError, match="outside the Poincaré ball"):
        PoincareKMeans(3, curvature=4.0).fit(np.array([[0.1, 0.1], [0.6, 0.0], [0.2, 0.0], [0.0, 0.3]]))
    with pytest.raises(ConfigError, match="cannot make 3 clusters from 2 points"):
        model.fit(np.zeros((2, 2)))
    model.fit(np.random.default_rng(0).uniform(-0.5, 0.5, size=(20, 2)))
    with pytest.raises(ConfigError, match="dimensions"):
        model.predict(np.zeros((4, 3)))
    with pytest.raises(ConfigError):
        frechet_mean(np.zeros((3, 2)), weights=[1.0, -1.0, 1.0])


def test_euclidean_kmeans_has_the_same_interface():
    rng = np.random.default_rng(8)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    truth = rng.integers(4, size=2000)
    points = centres[truth] + rng.normal(scale=0.5, size=(2000, 2))
    model = EuclideanKMeans(4, random_state=0, max_fit_samples=500, chunk_size=300)
    labels = model.fit_predict(points)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert len(model.labels_) == 500 and labels.dtype == np.int32
    unseen = rng.uniform(-2, 12, size=(300, 2))
    expected = np.linalg.norm(unseen[:, None] - model.cluster_centers_[None], axis=2).argmin(1)
    assert np.array_equal(model.predict(unseen), expected)
    again = EuclideanKMeans(4, random_state=0, max_fit_samples=500).fit(points)
    assert np.array_equal(again.cluster_centers_, model.cluster_centers_)
    with pytest.raises(ConfigError):
        EuclideanKMeans(0).fit(points)
    with pytest.raises(ConfigError, match="NaN"):
        model.predict(np.full((3, 2), np.nan))


class _IntoTheBall(PoincareKMeans):
    """PoincareKMeans on scikit-learn's generic test data, which lie outside the Poincaré ball (and are
    refused, test_bad_inputs_are_config_errors): each numeric row is shrunk into the ball first
    (x / (1 + |x|), dtype kept), so every estimator check runs on the real fit and predict."""

    def fit(self, X, y=None):
        return super().fit(self._into_the_ball(X), y)

    def predict(self, X):
        return super().predict(self._into_the_ball(X))

    @staticmethod
    def _into_the_ball(X):
        array = np.asarray(X)
        if array.ndim != 2 or array.dtype.kind not in "fiuO":
            return X                         # let PoincareKMeans refuse what it refuses
        try:
            array = array.astype(array.dtype if array.dtype.kind == "f" else np.float64)
        except (TypeError, ValueError):
            return X
        norms = np.linalg.norm(np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0), axis=1, keepdims=True)
        return array / (1 + norms)


@pytest.mark.parametrize("estimator", [
    EuclideanKMeans(n_clusters=2, n_init=1, random_state=0),
    _IntoTheBall(n_clusters=2, n_init=1, random_state=0),
], ids=["euclidean", "poincare"])
def test_scikit_learn_estimator_checks(estimator):
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    failed = sorted({f"{r['check_name']}: {r['exception']}" for r in results if r["status"] in ("failed", "xfail")})
    assert failed == []
    assert len(results) > 30     # the checks ran


def test_estimators_clone_and_say_when_not_fitted():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    rng = np.random.default_rng(3)
    points = rng.uniform(-0.4, 0.4, size=(200, 3))
    model = PoincareKMeans(3, curvature=2.0, random_state=4, n_init=2)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "cluster_centers_")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        copy.predict(points)
    assert np.array_equal(copy.fit_predict(points), clone(model).fit(points).predict(points))
    assert copy.set_params(n_clusters=4).fit(points).cluster_centers_.shape == (4, 3)
