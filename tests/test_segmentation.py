import threading

import numpy as np
import pytest
import torch

from napari_hypseg.core.checkpoint import TrainedModel
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import ConfigError, VolumeError
from napari_hypseg.core.hierarchy import ClusterHierarchy
from napari_hypseg.core.manifold import dist
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.segmentation import Segmentation, segment
from napari_hypseg.core.synthetic import make_toy_volume


def _trained(image, **overrides) -> TrainedModel:
    """A fresh `fast` model, without boundary refinement unless asked: these tests are about the fine
    clusters as clustering finds them (tests/test_refinement.py covers what refinement moves)."""
    config = get_preset("fast", encoder_channels=(4, 8), hidden=8, **{"boundary_refinement": 0.0, **overrides})
    return TrainedModel(model=HypsegVAE(config), config=config, stats=IntensityStats.fit(image), step=0,
                        device=torch.device("cpu"))


@pytest.fixture(scope="module")
def image():
    return make_toy_volume(0).image[10:30, 12:30, 14:30].copy()     # 20 x 18 x 16, part of the cell


@pytest.fixture(scope="module")
def result(image):
    events = []
    segmentation = run_to_completion(segment(_trained(image, image_features=0.0), image, n_fine=6, device="cpu", seed=1),
                                     events.append)
    return segmentation, events


def test_segment_end_to_end(image, result):
    segmentation, events = result
    assert isinstance(segmentation, Segmentation)
    labels = segmentation.fine_labels
    assert labels.shape == image.shape and labels.dtype == np.uint16
    assert labels.min() >= 1 and labels.max() <= 6
    assert np.array_equal(segmentation.fine_counts, np.bincount(labels.ravel(), minlength=7))
    assert segmentation.fine_counts[0] == 0
    # Fine ids are numbered by size (in the fit sample, here every voxel).
    assert np.all(np.diff(segmentation.fine_counts[1:]) <= 0)
    assert segmentation.hierarchy.n_fine == 6 and segmentation.centroids.shape == (6, 3)
    stages = [event.stage for event in events]
    assert stages[0] == "infer" and stages[-1] == "cluster" and stages == sorted(stages, key=["infer", "cluster"].index)
    assert events[-1].step == events[-1].total
    # The minutes between inference and the fit on a tomogram are announced, not silent.
    assert any(event.message.startswith("smoothing the latent field") for event in events)
    # Labelling every voxel reports its rate and time left, as inference does; the last says none left.
    labelling = [event for event in events if event.message == "labelling voxels" and event.metrics]
    assert labelling and labelling[-1].metrics["eta_s"] == 0.0 and labelling[-1].metrics["voxels_per_s"] > 0


def test_the_joint_space_stage_reports_time_left(image):
    events = []
    run_to_completion(segment(_trained(image, image_features=0.5), image, n_fine=4, device="cpu"), events.append)
    measuring = [event for event in events if event.message == "measuring the image features"]
    assert measuring and all("eta_s" in event.metrics for event in measuring)
    assert measuring[-1].metrics["eta_s"] == 0.0


def test_every_voxel_has_its_nearest_fine_centroid(result):
    segmentation, _ = result
    points = torch.as_tensor(segmentation.sample_points, dtype=torch.float64)
    assert len(points) == 5000       # SAMPLE_POINTS of the 5760 voxels
    assert np.all(points.norm(dim=1).numpy() < 1.0)
    centroids = torch.as_tensor(segmentation.centroids)
    nearest = dist(points[:, None], centroids[None]).argmin(1).numpy() + 1
    assert np.mean(nearest == segmentation.sample_labels) > 0.999    # float32 latents: ties may flip


def test_levels_are_lookups_of_the_fine_labels(result):
    segmentation, _ = result
    hierarchy = segmentation.hierarchy
    for k in range(1, 7):
        labels = segmentation.labels_at_k(k)
        assert labels.dtype == np.uint8
        assert np.array_equal(labels, hierarchy.lookup_at_k(k)[segmentation.fine_labels])
        assert set(np.unique(labels)) <= set(range(1, k + 1))
    for radius in np.linspace(0, 1, 7):
        assert np.array_equal(segmentation.labels_at_radius(radius),
                              hierarchy.lookup_at_radius(radius)[segmentation.fine_labels])


def test_features_table(image, result):
    segmentation, _ = result
    lookup = segmentation.hierarchy.lookup_at_k(3)
    table = segmentation.features(lookup, image, spacing=(2.0, 0.5, 1.5))
    assert set(table) == {"label", "parent", "voxel_count", "physical_volume", "mean_intensity", "centroid_radius"}
    assert all(len(column) == 3 for column in table.values())
    coarse = segmentation.labels_at_k(3)
    assert np.array_equal(table["label"], [1, 2, 3])
    assert np.array_equal(table["voxel_count"], [np.sum(coarse == c) for c in (1, 2, 3)])
    assert np.allclose(table["physical_volume"], table["voxel_count"] * 1.5)
    for c in (1, 2, 3):
        if table["voxel_count"][c - 1]:
            assert table["mean_intensity"][c - 1] == pytest.approx(float(image[coarse == c].mean()), rel=1e-5)
    coarser = segmentation.labels_at_k(2)
    for c in (1, 2, 3):
        assert set(np.unique(coarser[coarse == c])) <= {table["parent"][c - 1]}
    assert np.all((table["centroid_radius"] >= 0) & (table["centroid_radius"] < 1))
    assert np.array_equal(segmentation.features(segmentation.hierarchy.lookup_at_k(1), image)["parent"], [0])
    with pytest.raises(VolumeError, match="shape"):
        segmentation.features(lookup, image[:-1])


def test_other_linkages_reuse_the_fine_clusters(image, result):
    segmentation, _ = result
    config = get_preset("fast")
    assert (segmentation.hierarchy.linkage, segmentation.hierarchy.ward_top) == (config.linkage, config.ward_top)
    centroid = segmentation.with_linkage("centroid")
    assert centroid.hierarchy.linkage == "centroid" and centroid.fine_labels is segmentation.fine_labels
    table = centroid.features(centroid.hierarchy.lookup_at_k(2), image)
    assert table["voxel_count"].sum() == image.size
    with pytest.raises(ConfigError, match="linkage"):
        run_to_completion(segment(_trained(image), image, n_fine=6, device="cpu", linkage="median"))


def test_deterministic_and_stoppable(image, result, tmp_path):
    segmentation, _ = result
    trained = _trained(image, image_features=0.0)
    out = tmp_path / "latents.npy"
    again = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, latents_out=out))
    assert np.array_equal(again.fine_labels, segmentation.fine_labels)
    assert np.load(out).shape == (*image.shape, 3)
    stop = threading.Event()
    stop.set()
    assert run_to_completion(segment(trained, image, n_fine=6, device="cpu", stop=stop)) is None


def test_euclidean_model_clusters_in_euclidean_space(image, tmp_path):
    field = tmp_path / "latents.npy"
    segmentation = run_to_completion(segment(_trained(image, geometry="euclidean", image_features=0.0), image, n_fine=5, device="cpu",
                                             latents_out=field))
    assert segmentation.geometry == "euclidean" and segmentation.hierarchy.geometry == "euclidean"
    assert segmentation.fine_labels.max() <= 5
    assert len(np.unique(segmentation.labels_at_k(2))) <= 2
    # every voxel carries the fine id of its nearest centroid by Euclidean distance in the kept field
    points = np.load(field).reshape(-1, segmentation.centroids.shape[1]).astype(np.float64)
    distances = ((points[:, None] - segmentation.centroids[None]) ** 2).sum(-1)
    nearest = distances.argmin(1) + 1
    ambiguous = np.sort(distances, axis=1)[:, :2] @ [-1, 1] < 1e-9       # exact ties may go either way
    assert np.array_equal(nearest[~ambiguous], segmentation.fine_labels.reshape(-1)[~ambiguous])


def test_bad_arguments(image):
    trained = _trained(image)
    for n_fine in (0, 2.5, 5000):
        with pytest.raises(ConfigError, match="n_fine"):
            run_to_completion(segment(trained, image, n_fine=n_fine, device="cpu"))
    with pytest.raises(VolumeError, match="smaller than the model's context"):
        run_to_completion(segment(trained, image[:3], device="cpu"))


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_latent_smoothing(geometry, tmp_path):
    from napari_hypseg.core.latent_fields import smooth_latent_field

    rng = np.random.default_rng(0)
    noisy = (rng.uniform(-0.3, 0.3, size=(12, 10, 8, 3))).astype(np.float32)
    assert np.array_equal(smooth_latent_field(noisy.copy(), 0.0, geometry=geometry), noisy)
    smoothed = smooth_latent_field(noisy.copy(), 1.0, geometry=geometry)
    assert smoothed.shape == noisy.shape and not np.allclose(smoothed, noisy)
    assert smoothed.std(axis=(0, 1, 2)).max() < 0.5 * noisy.std(axis=(0, 1, 2)).min()   # noise averaged out
    if geometry == "hyperbolic":
        assert np.linalg.norm(smoothed, axis=-1).max() < 1.0
    constant = np.broadcast_to(np.float32([0.2, -0.4, 0.1]), noisy.shape).copy()
    np.testing.assert_allclose(smooth_latent_field(constant.copy(), 1.5, geometry=geometry), constant, atol=1e-6)
    # In place on a memory-mapped field, slab by slab, with the same result as in RAM.
    mapped = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=noisy.shape)
    mapped[:] = noisy
    smooth_latent_field(mapped, 1.0, geometry=geometry, slab_voxels=100)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), smoothed, atol=1e-6)


def test_segment_smoothing_parameter(image):
    trained = _trained(image)
    assert trained.config.latent_smoothing > 0          # on by default
    off = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, latent_smoothing=0))
    on = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1))
    assert not np.array_equal(off.fine_labels, on.fine_labels)
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ConfigError, match="latent_smoothing"):
            run_to_completion(segment(trained, image, device="cpu", latent_smoothing=bad))
    with pytest.raises(ConfigError, match="latent_smoothing"):
        get_preset("fast", latent_smoothing=-0.5)


def test_regional_descriptors_average_each_clusters_surroundings():
    """Two clusters interleaved in the left half and one filling the right half: with no smoothing a
    cluster's descriptor is its own mean latent; with wide smoothing the two interleaved clusters
    share theirs, and it differs from the right half's."""
    from napari_hypseg.core.latent_fields import regional_descriptors

    labels = np.ones((8, 8, 16), dtype=np.uint16)
    labels[:, :, :8] = 1 + (np.indices((8, 8, 8)).sum(0) % 2)
    labels[:, :, 8:] = 3
    latents = np.zeros((8, 8, 16, 2), dtype=np.float32)
    latents[labels == 1] = (0.3, 0.0)
    latents[labels == 2] = (-0.3, 0.0)
    latents[labels == 3] = (0.0, 0.5)
    for geometry in ("euclidean", "hyperbolic"):
        counts = np.bincount(labels.reshape(-1), minlength=4)
        local, wide = regional_descriptors(latents, labels, counts, [0.0, 3.0], geometry=geometry)
        np.testing.assert_allclose(local, [(0.3, 0.0), (-0.3, 0.0), (0.0, 0.5)], atol=1e-6)
        assert np.linalg.norm(wide[0] - wide[1]) < 0.1 * np.linalg.norm(local[0] - local[1])
        assert np.linalg.norm(wide[0] - wide[2]) > 0.2


def test_neighbour_descriptors_say_which_clusters_surround_each_one():
    """A "cell" (1) with an "organelle" (2) inside it, beside a "background" (3) with a speck (4) in it:
    each descriptor row is a distribution over neighbours (squares sum to 1), and an enclosed cluster's
    lies nearer its encloser's than the other side's, although its own voxels are unlike both."""
    from napari_hypseg.core.hierarchy import ClusterHierarchy
    from napari_hypseg.core.latent_fields import neighbour_descriptors

    labels = np.full((16, 16, 32), 3, dtype=np.uint16)
    labels[:, :, :16] = 1
    labels[5:11, 5:11, 4:10] = 2
    labels[6:10, 6:10, 22:26] = 4
    counts = np.bincount(labels.reshape(-1), minlength=5)
    descriptors = neighbour_descriptors(labels, counts, 3.0)
    assert descriptors.shape == (4, 4)
    np.testing.assert_allclose((descriptors ** 2).sum(1), 1.0, atol=1e-5)
    distance = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=-1)
    assert distance[1, 0] < distance[1, 2] and distance[3, 2] < distance[3, 0]
    own = np.eye(4)       # the clusters' own latents: all equally unlike
    tree = ClusterHierarchy.from_centroids(own, geometry="euclidean", weights=counts[1:],
                                           coarser=[(4, descriptors, "euclidean")])
    assert tree.lookup_at_k(2)[1:].tolist() in ([1, 1, 2, 2], [2, 2, 1, 1])
    np.testing.assert_allclose(neighbour_descriptors(labels, counts, 0.0), np.eye(4), atol=1e-6)
    # a large volume's shares come from a coarser grid, close to the exact ones; a cluster that grid
    # would miss (a single voxel off it) makes them exact again
    coarse = neighbour_descriptors(labels, counts, 6.0, subsample_above=0)
    assert np.abs(coarse - neighbour_descriptors(labels, counts, 6.0)).max() < 0.05
    labels[1, 1, 1] = 5
    counts = np.bincount(labels.reshape(-1), minlength=6)
    np.testing.assert_allclose(neighbour_descriptors(labels, counts, 6.0, subsample_above=0),
                               neighbour_descriptors(labels, counts, 6.0), atol=1e-6)


def test_hierarchy_scales_reach_the_tree(image):
    trained = _trained(image, image_features=0.0)
    staged = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)],
                                       hierarchy_neighbours=()))
    plain = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=(),
                                      hierarchy_neighbours=()))
    np.testing.assert_array_equal(staged.fine_labels, plain.fine_labels)   # the same fine clusters ...
    assert [k for k, *_ in staged.hierarchy.coarser] == [3] and plain.hierarchy.coarser == []
    assert staged.with_linkage("centroid").hierarchy.coarser[0][0] == 3   # ... kept under another linkage
    with pytest.raises(ConfigError, match="hierarchy_scales"):
        run_to_completion(segment(trained, image, n_fine=6, device="cpu", hierarchy_scales=[(2, 1.0), (3, 1.0)]))


def test_hierarchy_neighbours_decide_the_top_of_the_tree(image):
    """The neighbourhood stage joins the latent stages in order of k, replaces one at the same k, and
    changes only the merges, never the fine clusters."""
    trained = _trained(image, image_features=0.0)
    both = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1,
                                     hierarchy_scales=[(4, 2.0), (3, 4.0)], hierarchy_neighbours=[(3, 4.0)]))
    latent = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1,
                                       hierarchy_scales=[(4, 2.0), (3, 4.0)], hierarchy_neighbours=()))
    np.testing.assert_array_equal(both.fine_labels, latent.fine_labels)
    assert [(k, geometry) for k, _, geometry in both.hierarchy.coarser] == [(4, "hyperbolic"), (3, "euclidean")]
    descriptors = both.hierarchy.coarser[1][1]
    assert descriptors.shape == (6, 6) and np.allclose((descriptors ** 2).sum(1), 1.0, atol=1e-4)
    assert trained.config.hierarchy_neighbours == ((6, 6.0),)     # the preset's, used when not overridden ...
    default = run_to_completion(segment(trained, image, n_fine=8, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)]))
    assert [(k, geometry) for k, _, geometry in default.hierarchy.coarser] == [(6, "euclidean"), (3, "hyperbolic")]
    fewer = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)]))
    assert [k for k, *_ in fewer.hierarchy.coarser] == [3]        # ... and dropped where k >= n_fine
    with pytest.raises(ConfigError, match="hierarchy_neighbours"):
        run_to_completion(segment(trained, image, n_fine=6, device="cpu", hierarchy_neighbours=[(2, -1.0)]))


def test_image_features_shape_the_fine_clusters_and_the_first_merges(image):
    """With image features on (the fast preset) and k-means, every voxel lies in the fine cluster whose
    centre is nearest in the joint (latents + features) space, the tree starts there, and its coarser
    stage, its heights and the centroids stay in the ball."""
    from napari_hypseg.core.latent_fields import clustering_field

    trained = _trained(image)
    assert trained.config.image_features == 0.5
    joint = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)],
                                      fine_clustering="kmeans"))
    alone = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)],
                                      image_features=0))
    assert [(k, geometry) for k, _, geometry in joint.hierarchy.coarser] == [(6, "euclidean"), (3, "hyperbolic")]
    assert [(k, geometry) for k, _, geometry in alone.hierarchy.coarser] == [(3, "hyperbolic")]
    assert not np.array_equal(joint.fine_labels, alone.fine_labels)
    again = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)],
                                      fine_clustering="kmeans"))
    assert np.array_equal(again.fine_labels, joint.fine_labels)
    assert np.array_equal(again.hierarchy.merges, joint.hierarchy.merges)
    features = _joint_rows(run_to_completion(clustering_field(trained, image)), image, 0.5,
                           latent_scaling=trained.config.latent_scaling)
    centres = joint.hierarchy.coarser[0][1]
    nearest = ((features[:, None] - centres[None]) ** 2).sum(-1).argmin(1) + 1
    assert np.mean(nearest == joint.fine_labels.ravel()) > 0.999
    assert np.all(np.linalg.norm(joint.centroids, axis=1) < 1.0) and np.all(np.abs(joint.sample_points) < 1.0)
    assert np.all((joint.hierarchy.heights >= 0) & (joint.hierarchy.heights < 1.0))
    with pytest.raises(ConfigError, match="image_features must be a number >= 0"):
        run_to_completion(segment(trained, image, n_fine=6, device="cpu", image_features=-1.0))


def test_a_gaussian_mixture_finds_the_fine_clusters_of_the_joint_space(image):
    """The fast preset's fine clusters are the components of a Gaussian mixture fitted on the joint
    features (the same partition as the estimator on its own gives), reproducible for a seed, unlike
    k-means' partition; the tree still starts in the joint space and ends in the ball."""
    from sklearn.metrics import adjusted_rand_score

    from napari_hypseg.core.latent_fields import clustering_field
    from napari_hypseg.core.mixture import GaussianMixtureClusters

    trained = _trained(image)
    assert trained.config.fine_clustering == "gaussian_mixture"
    mixture = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)]))
    kmeans = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)],
                                       fine_clustering="kmeans"))
    again = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, hierarchy_scales=[(3, 4.0)]))
    assert np.array_equal(again.fine_labels, mixture.fine_labels)
    assert np.array_equal(again.hierarchy.merges, mixture.hierarchy.merges)
    assert adjusted_rand_score(mixture.fine_labels.ravel(), kmeans.fine_labels.ravel()) < 0.99
    features = _joint_rows(run_to_completion(clustering_field(trained, image)), image, 0.5,
                           latent_scaling=trained.config.latent_scaling)
    alone = GaussianMixtureClusters(6, random_state=1).fit_predict(features)
    assert adjusted_rand_score(alone, mixture.fine_labels.ravel()) > 0.999
    assert [(k, geometry) for k, _, geometry in mixture.hierarchy.coarser] == [(6, "euclidean"), (3, "hyperbolic")]
    assert np.all((mixture.hierarchy.heights >= 0) & (mixture.hierarchy.heights < 1.0))
    with pytest.raises(ConfigError, match="fine_clustering must be one of"):
        run_to_completion(segment(trained, image, n_fine=6, device="cpu", fine_clustering="spectral"))


def _joint_rows(latents, image, weight, sample_rows=(), **kwargs):
    """Every row of a JointFeatures stream (and the sample its first pass gathered)."""
    from napari_hypseg.core.latent_fields import JointFeatures

    stream = JointFeatures(latents, image, weight, **kwargs)
    sample = run_to_completion(stream.measure(np.asarray(sample_rows, dtype=np.int64)))
    rows = np.concatenate([rows for _, rows in stream.slabs()])
    return (rows, sample) if len(sample_rows) else rows


def test_hand_made_columns_plane_by_plane_equal_the_whole_volume():
    """multiscale_column_slabs filters each plane in Y and X once and combines planes along Z with
    the filters' taps; whatever the slab, and in volumes shallower than the widest Gaussian (whose
    border reflects more than once), it gives the whole volume's columns."""
    from napari_hypseg.core.baselines import multiscale_column_slabs, multiscale_columns

    rng = np.random.default_rng(5)
    for shape, planes in [((13, 17, 11), 1), ((13, 17, 11), 4), ((3, 20, 9), 2), ((1, 8, 8), 1), ((40, 12, 10), 7)]:
        volume = (rng.normal(size=shape) * 10 + 50).astype(np.float32)
        slabs = list(multiscale_column_slabs(volume, planes))
        assert [start for start, _ in slabs] == list(range(0, shape[0], planes))
        np.testing.assert_allclose(np.concatenate([c for _, c in slabs]), multiscale_columns(volume),
                                   atol=2e-4, rtol=1e-5)


def test_joint_features_in_slabs_equal_the_whole_volume(image):
    """The joint rows come out the same whatever the slab, every channel standardised, the image
    ones times the weight; the first pass gathers exactly the rows asked for."""
    from napari_hypseg.core.baselines import multiscale_columns

    rng = np.random.default_rng(0)
    latents = (rng.uniform(-0.5, 0.5, image.shape + (3,)) / 2).astype(np.float32)
    whole = _joint_rows(latents, image, 2.0, geometry="euclidean", slab_voxels=10**9)
    picked = np.sort(rng.choice(len(whole), 500, replace=False))
    slabs, sample = _joint_rows(latents, image, 2.0, picked, geometry="euclidean",
                                slab_voxels=image.shape[1] * image.shape[2])
    np.testing.assert_allclose(slabs, whole, atol=1e-5)
    np.testing.assert_array_equal(sample, slabs[picked])
    np.testing.assert_allclose(whole.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(whole.std(0), [1, 1, 1] + [2] * 6, rtol=1e-3)
    columns = multiscale_columns(image).reshape(-1, 6)
    np.testing.assert_allclose(whole[:, 3:] / 2, (columns - columns.mean(0)) / columns.std(0), atol=1e-4)


def test_shared_latent_scaling_keeps_the_proportions_training_gave_the_channels(image):
    """latent_scaling "shared" divides every latent channel by one spread, the root mean square of
    theirs, so a channel that barely varies stays small beside the one that carries the structure;
    "channel" makes them all 1. The image columns are the same either way, and segment() takes the
    option, refusing a name it does not know."""
    rng = np.random.default_rng(1)
    spreads = np.array([0.3, 0.03, 0.1])
    latents = (rng.normal(size=image.shape + (3,)) * spreads).astype(np.float32)
    shared = _joint_rows(latents, image, 2.0, geometry="euclidean", latent_scaling="shared")
    channel = _joint_rows(latents, image, 2.0, geometry="euclidean", latent_scaling="channel")
    measured = latents.reshape(-1, 3).std(0)
    np.testing.assert_allclose(shared.std(0)[:3], measured / np.sqrt(np.mean(measured ** 2)), rtol=1e-3)
    np.testing.assert_allclose(channel.std(0)[:3], 1, rtol=1e-3)
    np.testing.assert_allclose(shared[:, 3:], channel[:, 3:], atol=1e-5)
    trained = _trained(image)
    one = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, latent_scaling="shared"))
    other = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1, latent_scaling="channel"))
    assert not np.array_equal(one.fine_labels, other.fine_labels)
    with pytest.raises(ConfigError, match="latent_scaling must be one of"):
        run_to_completion(segment(trained, image, n_fine=6, device="cpu", latent_scaling="pca"))


@pytest.mark.parametrize("option", [{"latent_scaling": "shared"}, {"fine_clustering": "kmeans"}])
def test_a_joint_space_option_without_image_features_is_refused_before_inference(image, option):
    """latent_scaling and fine_clustering shape only the joint space of latents and image features:
    asked for with image_features 0 (the model's or given) they would change nothing, so segment()
    says so before computing any latent."""
    name = next(iter(option))
    for trained, extra in ((_trained(image, image_features=0.0), {}), (_trained(image), {"image_features": 0.0})):
        events = []
        with pytest.raises(ConfigError, match=f"{name} .* image_features is 0"):
            run_to_completion(segment(trained, image, n_fine=6, device="cpu", **option, **extra), events.append)
        assert events == []


def test_a_memory_mapped_run_with_image_features_leaves_only_its_latents(image, tmp_path):
    trained = _trained(image)
    in_memory = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1))
    mapped = run_to_completion(segment(trained, image, n_fine=6, device="cpu", seed=1,
                                       latents_out=tmp_path / "latents.npy"))
    assert np.array_equal(mapped.fine_labels, in_memory.fine_labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents.npy"]


def test_the_tree_keeps_wards_top_and_the_linkage_below(image):
    """The default tree: its top ward_top groups are the Ward tree's over the same fine clusters, and
    below them the configured linkage decides; ward_top 0 gives that linkage throughout. Bad values
    are refused with the parameter's name."""
    trained = _trained(image, image_features=0.0, linkage="centroid", ward_top=2)
    segmentation = run_to_completion(segment(trained, image, n_fine=8, device="cpu", seed=1))
    ward = segmentation.with_linkage("ward")
    assert np.array_equal(segmentation.labels_at_k(2), ward.labels_at_k(2))
    plain = run_to_completion(segment(trained, image, n_fine=8, device="cpu", seed=1, ward_top=0))
    assert np.array_equal(plain.fine_labels, segmentation.fine_labels)
    assert np.array_equal(plain.hierarchy.merges, ClusterHierarchy.from_centroids(
        plain.centroids, weights=plain.fine_counts[1:], linkage="centroid", coarser=plain.hierarchy.coarser).merges)
    for k in range(2, 9):
        top = segmentation.labels_at_k(2)
        finer = segmentation.labels_at_k(k)
        assert all(len(np.unique(top[finer == c])) == 1 for c in np.unique(finer))
    with pytest.raises(ConfigError, match="ward_top"):
        run_to_completion(segment(trained, image, n_fine=8, device="cpu", ward_top=-1))
    with pytest.raises(ConfigError, match="linkage"):
        get_preset("fast", linkage="median")
