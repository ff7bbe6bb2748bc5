import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.sparse.csgraph import connected_components

from napari_hypseg.core.errors import ConfigError
from napari_hypseg.core.hierarchy import LINKAGES, ClusterHierarchy, lca_points, lca_radius
from napari_hypseg.core.manifold import frechet_mean
from napari_hypseg.core.manifold import expmap0, mobius_add


def _ball_points(n, d=3, seed=0, scale=1.2, curvature=1.0):
    rng = np.random.default_rng(seed)
    return expmap0(torch.as_tensor(rng.normal(scale=scale, size=(n, d))), curvature).numpy()


def _is_coarsening(fine_lookup, coarse_lookup) -> bool:
    """Every group of the finer cut lies inside one group of the coarser cut."""
    return all(len(np.unique(coarse_lookup[1:][fine_lookup[1:] == g])) == 1 for g in np.unique(fine_lookup[1:]))


CASES = [(geometry, linkage) for geometry, linkages in LINKAGES.items() for linkage in linkages]


@pytest.mark.parametrize("geometry,linkage", CASES)
def test_cuts_nest_for_every_k_and_radius(geometry, linkage):
    centroids = _ball_points(14, seed=1)
    weights = np.random.default_rng(2).integers(0, 500, size=14)   # one cluster may be empty
    tree = ClusterHierarchy.from_centroids(centroids, geometry=geometry, weights=weights, linkage=linkage)
    n = tree.n_fine
    lookups = {k: tree.lookup_at_k(k) for k in range(1, n + 1)}
    for k, lookup in lookups.items():
        assert lookup[0] == 0 and lookup.dtype == np.int32
        assert sorted(np.unique(lookup[1:])) == list(range(1, k + 1))
        if k > 1:
            assert _is_coarsening(lookup, lookups[k - 1])
    assert np.all(lookups[1][1:] == 1)
    assert len(np.unique(lookups[n][1:])) == n
    low, high = tree.radius_range
    radii = np.concatenate([np.linspace(low - 0.1, high + 0.1, 60), tree.merge_radii])
    cuts = [tree.lookup_at_radius(r) for r in radii]
    for lookup in cuts:           # every radius cut is one of the k-cuts ...
        assert any(np.array_equal(lookup, other) for other in lookups.values())
    order = np.argsort([len(np.unique(c[1:])) for c in cuts])
    for a, b in zip(order[:-1], order[1:]):   # ... so any two of them nest
        assert _is_coarsening(cuts[b], cuts[a])
    # The radius extremes give one cluster and every fine cluster.
    coarse_end, fine_end = (low, high + 1e-9) if geometry == "hyperbolic" else (high, low - 1e-9)
    assert len(np.unique(tree.lookup_at_radius(coarse_end)[1:])) == 1
    assert len(np.unique(tree.lookup_at_radius(fine_end)[1:])) == n


def test_hyperbolic_radius_slider_from_centre_to_boundary():
    tree = ClusterHierarchy.from_centroids(_ball_points(10, seed=3))
    assert len(np.unique(tree.lookup_at_radius(0.0)[1:])) == 1
    assert len(np.unique(tree.lookup_at_radius(1.0)[1:])) == 10
    ks = [tree.k_at_radius(r) for r in np.linspace(0, 1, 50)]
    assert ks == sorted(ks)     # a larger radius is finer
    assert np.all(np.diff(tree.merge_radii) > 0)
    parents = tree.parent_of
    assert parents[0] == 0 and parents[2 * 10 - 1] == 0 and np.all(parents[1:2 * 10 - 1] > 10)


def test_identity_and_ids_ordered_by_weight():
    centroids = _ball_points(6, seed=4)
    tree = ClusterHierarchy.from_centroids(centroids)
    assert np.array_equal(tree.lookup_at_k(6), np.arange(7))      # equal weights: ties by fine id
    weights = np.array([1, 50, 3, 40, 2, 9])
    weighted = ClusterHierarchy.from_centroids(centroids, weights=weights)
    assert np.array_equal(weighted.lookup_at_k(6)[1:], np.argsort(np.argsort(-weights)) + 1)


@pytest.mark.parametrize("curvature", [1.0, 0.3])
def test_lca_is_the_geodesic_point_nearest_the_origin(curvature):
    x = _ball_points(40, seed=5, scale=1.5, curvature=curvature)
    y = _ball_points(40, seed=6, scale=1.5, curvature=curvature)
    lca = lca_points(x, y, curvature=curvature)
    # Brute force: walk the geodesic x -> y, gamma(t) = x (+) tanh(t artanh(sqrt(c)|w|)) w / (sqrt(c)|w|).
    sqrt_c = np.sqrt(curvature)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w = mobius_add(-xt, yt, curvature)
    w_norm = w.norm(dim=-1, keepdim=True)
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None, None]
    steps = torch.tanh(t * torch.atanh(sqrt_c * w_norm)) * w / (sqrt_c * w_norm)
    path = mobius_add(xt.expand_as(steps), steps, curvature)             # (T, 40, d)
    norms = path.norm(dim=-1)
    nearest = path[norms.argmin(0), torch.arange(40)].numpy()
    assert np.allclose(np.linalg.norm(lca, axis=1), norms.min(0).values.numpy(), atol=1e-7)
    assert np.allclose(lca, nearest, atol=1e-3)
    assert np.allclose(lca_radius(x, y, curvature=curvature), lca_radius(y, x, curvature=curvature), atol=1e-12)


def test_lca_special_cases():
    inner, outer = np.array([0.2, 0.1, 0.0]), np.array([0.6, 0.3, 0.0])   # same ray: the inner point
    assert np.allclose(lca_points(inner, outer), inner) and np.allclose(lca_points(outer, inner), inner)
    assert lca_radius(np.array([0.5, 0.0]), np.array([-0.7, 0.0])) == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(lca_points(outer, outer), outer)
    assert lca_radius(np.zeros(3), outer) == pytest.approx(0.0, abs=1e-12)


def test_single_linkage_radius_cut_is_connected_components_of_deep_lcas():
    centroids = _ball_points(12, seed=7)
    tree = ClusterHierarchy.from_centroids(centroids, linkage="single")
    depth = lca_radius(centroids[:, None], centroids[None])
    for r in tree.merge_radii + 1e-9:
        n_groups, groups = connected_components(depth >= r, directed=False)
        lookup = tree.lookup_at_radius(r)
        assert len(np.unique(lookup[1:])) == n_groups
        assert all(len(np.unique(groups[lookup[1:] == g])) == 1 for g in range(1, n_groups + 1))


@pytest.mark.parametrize("method", ["single", "average", "ward"])
def test_euclidean_heights_match_scipy(method):
    points = np.random.default_rng(8).normal(size=(15, 3))
    tree = ClusterHierarchy.from_centroids(points, geometry="euclidean", linkage=method)
    assert np.allclose(np.sort(tree.heights), np.sort(scipy_linkage(points, method=method)[:, 2]))


def test_coarse_centroids_and_parents():
    centroids = _ball_points(8, seed=9)
    weights = np.arange(1, 9, dtype=float)
    tree = ClusterHierarchy.from_centroids(centroids, weights=weights)
    all_fine = tree.lookup_at_k(8)
    assert np.allclose(tree.coarse_centroids(all_fine)[all_fine[1:] - 1], centroids, atol=1e-12)
    one = tree.coarse_centroids(tree.lookup_at_k(1))
    assert np.allclose(one[0], frechet_mean(centroids, weights), atol=1e-12)
    lookup = tree.lookup_at_k(4)
    parents = tree.coarser_parents(lookup)
    coarser = tree.lookup_at_k(3)
    for fine in range(1, 9):
        assert parents[lookup[fine]] == coarser[fine]
    assert np.array_equal(tree.coarser_parents(tree.lookup_at_k(1)), [0, 0])
    euclidean = ClusterHierarchy.from_centroids(centroids, geometry="euclidean", weights=weights)
    assert np.allclose(euclidean.coarse_centroids(euclidean.lookup_at_k(1))[0],
                       np.average(centroids, axis=0, weights=weights))


def test_coarse_centroids_are_computed_once_per_tree_node():
    """A slider visits cuts in any order; every cut's groups are tree nodes, so after all n cuts no
    more than 2n - 1 centroids were computed, each equal to the direct weighted Fréchet mean of its
    members, and changing a returned array changes nothing later."""
    centroids = _ball_points(8, seed=4)
    weights = np.arange(8, 0, -1, dtype=float)
    tree = ClusterHierarchy.from_centroids(centroids, weights=weights, linkage="centroid")
    for k in (5, 2, 8, 1, 7, 3, 6, 4, 5, 2):
        lookup = tree.lookup_at_k(k)
        got = tree.coarse_centroids(lookup)
        for coarse in range(1, k + 1):
            members = np.flatnonzero(lookup[1:] == coarse)
            assert np.allclose(got[coarse - 1], frechet_mean(centroids[members], weights[members]), atol=1e-12)
        got[:] = 0.0
    assert len(tree._group_centroids) == 2 * 8 - 1
    assert np.allclose(tree.coarse_centroids(tree.lookup_at_k(1))[0], frechet_mean(centroids, weights), atol=1e-12)


def test_one_fine_cluster():
    tree = ClusterHierarchy.from_centroids(np.array([[0.1, 0.2]]))
    assert tree.n_fine == 1 and np.array_equal(tree.lookup_at_k(1), [0, 1])
    assert np.array_equal(tree.lookup_at_radius(0.5), [0, 1])


def test_bad_arguments_are_config_errors():
    centroids = _ball_points(5)
    with pytest.raises(ConfigError, match="geometry"):
        ClusterHierarchy.from_centroids(centroids, geometry="spherical")
    with pytest.raises(ConfigError, match="linkage"):
        ClusterHierarchy.from_centroids(centroids, linkage="median")
    with pytest.raises(ConfigError, match="outside the Poincaré ball"):
        ClusterHierarchy.from_centroids(centroids * 3)
    with pytest.raises(ConfigError, match="weights"):
        ClusterHierarchy.from_centroids(centroids, weights=[1, 2])
    tree = ClusterHierarchy.from_centroids(centroids)
    for k in (0, 6, 2.5):
        with pytest.raises(ConfigError, match="k must be"):
            tree.lookup_at_k(k)
    with pytest.raises(ConfigError, match="radius"):
        tree.lookup_at_radius(float("nan"))
    with pytest.raises(ConfigError, match="not a cut"):
        tree.coarse_centroids(np.array([0, 1, 2, 1, 2, 1]))


@pytest.mark.parametrize("geometry,linkage", CASES)
def test_coarse_merges_follow_the_coarser_descriptors(geometry, linkage):
    """Below k groups the tree compares groups by the coarser descriptors: four clusters that are
    two far-apart pairs by their centroids, but the other two pairs by their surroundings, pair up
    by their surroundings at k = 2 -- and every cut still nests."""
    a, b, c = 0.5, 0.05, 0.0
    centroids = np.array([[-a, b, c], [-a, -b, c], [a, b, c], [a, -b, c]])
    surroundings = np.array([[b, -a, c], [b, a, c], [-b, -a, c], [-b, a, c]])
    plain = ClusterHierarchy.from_centroids(centroids, geometry=geometry, linkage=linkage)
    staged = ClusterHierarchy.from_centroids(centroids, geometry=geometry, linkage=linkage,
                                             coarser=[(4, surroundings)])
    assert plain.lookup_at_k(2)[1:].tolist() in ([1, 1, 2, 2], [2, 2, 1, 1])
    assert staged.lookup_at_k(2)[1:].tolist() in ([1, 2, 1, 2], [2, 1, 2, 1])
    for k in range(2, 5):
        assert _is_coarsening(staged.lookup_at_k(k), staged.lookup_at_k(k - 1))
    assert staged.coarser and staged.coarser[0][0] == 4


@pytest.mark.parametrize("linkage", ["ward", "centroid", "average", "single"])
def test_a_euclidean_stage_in_a_hyperbolic_tree(linkage):
    """A stage may compare groups by Euclidean features of any width (latents joined with image
    features): the merges follow those features, heights stay depths in the ball, cuts nest."""
    a, b, c = 0.5, 0.05, 0.0
    centroids = np.array([[-a, b, c], [-a, -b, c], [a, b, c], [a, -b, c]])
    features = np.array([[0.0, 0.0, 0.0, 0.0, 9.0], [10.0, 0.0, 0.0, 0.0, 0.0],
                         [0.1, 0.0, 0.0, 0.0, 9.0], [10.0, 0.2, 0.0, 0.0, 0.0]])
    tree = ClusterHierarchy.from_centroids(centroids, linkage=linkage, coarser=[(4, features, "euclidean")])
    assert tree.lookup_at_k(2)[1:].tolist() in ([1, 2, 1, 2], [2, 1, 2, 1])
    for k in range(2, 5):
        assert _is_coarsening(tree.lookup_at_k(k), tree.lookup_at_k(k - 1))
    assert np.all((tree.heights >= 0) & (tree.heights < 1)) and np.all(np.diff(tree.heights) <= 0)
    assert tree.coarser[0][2] == "euclidean"
    # the radius cuts are cuts of the same tree
    for radius in np.linspace(0, 1, 11):
        assert tree.lookup_at_radius(radius).tolist() in [tree.lookup_at_k(k).tolist() for k in range(1, 5)]


def test_coarser_descriptors_are_checked():
    centroids = _ball_points(5)
    with pytest.raises(ConfigError, match="one row per fine cluster"):
        ClusterHierarchy.from_centroids(centroids, coarser=[(3, centroids[:4])])
    with pytest.raises(ConfigError, match="outside the Poincaré ball"):
        ClusterHierarchy.from_centroids(centroids, coarser=[(3, centroids * 10)])
    with pytest.raises(ConfigError, match="geometry must be one of"):
        ClusterHierarchy.from_centroids(centroids, coarser=[(3, centroids, "spherical")])
    with pytest.raises(ConfigError, match="decreasing k"):
        ClusterHierarchy.from_centroids(centroids, coarser=[(2, centroids), (3, centroids)])


@pytest.mark.parametrize("geometry", ["euclidean", "hyperbolic"])
def test_ward_top_keeps_the_ward_top_and_merges_within_it(geometry):
    """Two big clusters close together and a small far pair: average linkage keeps the big ones
    together at k = 2 and the pair apart; Ward (cheap to merge a small group into a big one) splits the
    big ones and puts the pair with one of them. With ward_top = 2 the top two groups are Ward's."""
    centroids = np.array([[0.5, 0, 0], [0.5, 0.1, 0], [-0.5, 0, 0], [-0.5, 0.01, 0]])
    weights = [1000, 1000, 1, 1]
    average = ClusterHierarchy.from_centroids(centroids, geometry=geometry, weights=weights, linkage="average")
    ward = ClusterHierarchy.from_centroids(centroids, geometry=geometry, weights=weights, linkage="ward")
    switched = ClusterHierarchy.from_centroids(centroids, geometry=geometry, weights=weights, linkage="average",
                                               ward_top=2)
    average_cut = average.lookup_at_k(2)[1:].tolist()
    assert average_cut[0] == average_cut[1] != average_cut[2] == average_cut[3]
    ward_cut = ward.lookup_at_k(2)[1:].tolist()
    assert ward_cut[0] != ward_cut[1] and ward_cut[2] == ward_cut[3]
    assert switched.lookup_at_k(2).tolist() == ward.lookup_at_k(2).tolist()
    assert switched.ward_top == 2
    for k in range(2, 5):
        assert _is_coarsening(switched.lookup_at_k(k), switched.lookup_at_k(k - 1))
    heights = switched.heights
    assert np.all(np.diff(heights) <= 0) if geometry == "hyperbolic" else np.all(np.diff(heights) >= 0)
    for radius in np.linspace(0, 1, 11):
        assert switched.lookup_at_radius(radius).tolist() in [switched.lookup_at_k(k).tolist() for k in range(1, 5)]
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="ward_top"):
            ClusterHierarchy.from_centroids(centroids, ward_top=bad)


def test_ward_top_merges_by_linkage_only_within_the_ward_groups():
    """Below its top groups the tree is `linkage`'s, restricted to each Ward group: every cut is a
    refinement of Ward's top cut, and within one Ward group the merges follow `linkage`."""
    centroids = _ball_points(12, seed=4)
    weights = np.random.default_rng(5).integers(1, 800, size=12)
    ward = ClusterHierarchy.from_centroids(centroids, weights=weights, linkage="ward")
    tree = ClusterHierarchy.from_centroids(centroids, weights=weights, linkage="centroid", ward_top=3)
    top = ward.lookup_at_k(3)
    assert tree.lookup_at_k(3).tolist() == top.tolist()
    for k in range(3, 13):
        assert _is_coarsening(tree.lookup_at_k(k), top)
        assert _is_coarsening(tree.lookup_at_k(k), tree.lookup_at_k(k - 1))
    assert tree.lookup_at_k(2).tolist() == ward.lookup_at_k(2).tolist()
