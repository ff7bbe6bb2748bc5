"""The hierarchy slider as a colour table: what a real napari Labels layer shows, what the writer and the
Export widget write, voxel for voxel equal to Segmentation.labels_at_k / labels_at_radius."""

from __future__ import annotations

import numpy as np

from napari_hypseg._layer_labels import LOOKUP_KEY, displayed_labels
from napari_hypseg._writer import write_labels
from napari_hypseg.core.hierarchy import ClusterHierarchy
from napari_hypseg.core.segmentation import Segmentation
from napari_hypseg.core.volume_io import read_volume

N_FINE = 7


def _segmentation(shape=(9, 10, 11)) -> Segmentation:
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(N_FINE, 3))
    centroids = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0.2, 0.9, (N_FINE, 1))
    fine = rng.integers(1, N_FINE + 1, size=shape, dtype=np.uint16)
    counts = np.bincount(fine.reshape(-1), minlength=N_FINE + 1)
    return Segmentation(fine_labels=fine, hierarchy=ClusterHierarchy.from_centroids(centroids, weights=counts[1:]),
                        centroids=centroids, fine_counts=counts, sample_points=centroids,
                        sample_labels=np.arange(1, N_FINE + 1))


def test_a_level_is_a_colour_table_over_the_fine_labels(make_napari_viewer, tmp_path):
    from napari_hypseg.widgets._cluster_colormap import cluster_colors, fine_features, level_colormap

    segmentation = _segmentation()
    viewer = make_napari_viewer()
    layer = viewer.add_labels(segmentation.fine_labels, scale=(2.0, 1.0, 1.0))
    image = np.random.default_rng(0).normal(size=segmentation.fine_labels.shape)
    low, high = segmentation.hierarchy.radius_range
    levels = [("k", k) for k in range(1, N_FINE + 1)] + [("radius", r) for r in np.linspace(low, high, 4)]
    for mode, value in levels:
        hierarchy = segmentation.hierarchy
        lookup = hierarchy.lookup_at_k(value) if mode == "k" else hierarchy.lookup_at_radius(value)
        expected = segmentation.labels_at_k(value) if mode == "k" else segmentation.labels_at_radius(value)
        data_before = layer.data
        layer.colormap = level_colormap(lookup)
        layer.metadata["hypseg"] = {LOOKUP_KEY: [int(v) for v in lookup]}
        assert layer.data is data_before                        # a move never touches the voxels
        # What is drawn: each voxel in the colour of its coarse label, voxel for voxel.
        drawn = np.asarray(layer.colormap.map(layer.data.reshape(-1)))
        np.testing.assert_array_equal(drawn, cluster_colors(expected.reshape(-1)))
        # Distinct coarse labels get distinct colours, so the picture separates exactly these clusters.
        assert len(np.unique(drawn, axis=0)) == len(np.unique(expected))
        np.testing.assert_array_equal(displayed_labels(layer), expected)
        # What is written: the writer applies the level, once.
        data, attributes, _ = layer.as_layer_data_tuple()
        (written,) = write_labels(str(tmp_path / f"{mode}{value:.3f}.tif"), data, attributes)
        np.testing.assert_array_equal(read_volume(written).data, expected)
        # The features table: one row per fine id, holding its coarse cluster's row.
        table = fine_features(segmentation.features(lookup, image), lookup)
        np.testing.assert_array_equal(table["index"], np.arange(1, N_FINE + 1))
        np.testing.assert_array_equal(table["label"], lookup[1:])
        counts = np.bincount(expected.reshape(-1), minlength=int(lookup.max()) + 1)
        np.testing.assert_array_equal(table["voxel_count"], counts[lookup[1:]])
