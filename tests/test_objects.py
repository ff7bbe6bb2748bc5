"""Objects of a cluster: components and their table on hand-made volumes, and the files written from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_hypseg.core.errors import HypsegError
from napari_hypseg.core.export_objects import (
    surface_mesh,
    write_csv,
    write_mesh,
    write_objects_mesh,
    write_star,
)
from napari_hypseg.core.objects import ObjectsError, cluster_objects, match_points

SPACING = (2.0, 1.5, 0.5)          # z, y, x in Å: one voxel is 1.5 Å³


def hand_made() -> np.ndarray:
    """Cluster 1: three separate cubes of 8, 27 and 1 voxels; cluster 2: one slab; cluster 5: one voxel.
    Clusters 3 and 4 have no voxel."""
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[1:3, 1:3, 1:3] = 1           # 8 voxels, centroid (1.5, 1.5, 1.5)
    labels[10:13, 5:8, 14:17] = 1       # 27 voxels, centroid (11, 6, 15)
    labels[18, 18, 18] = 1              # 1 voxel
    labels[5:8, 10:20, 0:5] = 2         # 150 voxels
    labels[0, 19, 0] = 5
    return labels


def test_components_of_a_cluster_with_counts_sizes_and_physical_centroids():
    objects = cluster_objects(hand_made(), 1, spacing=SPACING, unit="angstrom")
    table = objects.table
    assert len(objects) == 3 and objects.n_found == 3
    assert table["object_id"].tolist() == [1, 2, 3]
    assert (table["cluster"] == 1).all() and (table["unit"] == "angstrom").all()
    assert table["voxel_count"].tolist() == [8, 27, 1]
    np.testing.assert_allclose(table["volume"], [12.0, 40.5, 1.5])
    np.testing.assert_allclose(objects.centroids_px, [[1.5, 1.5, 1.5], [11, 6, 15], [18, 18, 18]])
    np.testing.assert_allclose(objects.centroids, [[3.0, 2.25, 0.75], [22, 9, 7.5], [36, 27, 9]])
    second = table.iloc[1]
    assert [second[f"bbox_{a}{e}"] for e in "01" for a in "zyx"] == [10, 5, 14, 13, 8, 17]
    # the components volume holds exactly the kept objects, numbered like the table
    assert objects.components.dtype == np.int32
    for row in table.itertuples():
        assert (objects.components == row.object_id).sum() == row.voxel_count
    assert "mean_intensity" not in table and "mean_latent_radius" not in table


def test_size_filter_in_voxels_and_in_physical_volume():
    labels = hand_made()
    kept = cluster_objects(labels, 1, spacing=SPACING, min_size=2, max_size=27)
    assert kept.table["voxel_count"].tolist() == [8, 27] and kept.n_found == 3
    assert sorted(kept.dropped_sizes.tolist()) == [1]
    assert set(np.unique(kept.components)) == {0, 1, 2}
    # 12 Å³ is exactly the 8-voxel cube (8 x 1.5 Å³): bounds are inclusive
    by_volume = cluster_objects(labels, 1, spacing=SPACING, unit="angstrom", min_volume=12.0, max_volume=12.0)
    assert by_volume.table["voxel_count"].tolist() == [8]
    assert cluster_objects(labels, 1, spacing=SPACING, max_size=8).table["voxel_count"].tolist() == [8, 1]


def test_connectivity_decides_whether_corner_neighbours_are_one_object():
    labels = np.zeros((6, 6, 6), np.uint16)
    labels[1, 1, 1] = labels[2, 2, 2] = 7      # share a corner
    labels[4, 4, 4] = labels[4, 4, 5] = 7      # share a face
    assert len(cluster_objects(labels, 7, connectivity=6)) == 3
    assert len(cluster_objects(labels, 7, connectivity=18)) == 3
    objects = cluster_objects(labels, 7, connectivity=26)
    assert objects.table["voxel_count"].tolist() == [2, 2]


def test_mean_intensity_and_mean_latent_radius_columns():
    labels = hand_made()
    image = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None], labels.shape)   # value = z index
    latents = np.zeros(labels.shape + (2,), np.float32)
    latents[..., 0] = 0.3
    latents[10:13, :, :, 1] = 0.4        # the 27-voxel cube lies at radius 0.5
    objects = cluster_objects(labels, 1, image=image, latents=latents)
    np.testing.assert_allclose(objects.table["mean_intensity"], [1.5, 11.0, 18.0])
    np.testing.assert_allclose(objects.table["mean_latent_radius"], [0.3, 0.5, 0.3], rtol=1e-6)


def test_mean_latent_radius_from_a_segmentation_uses_each_voxel_fine_cluster():
    from napari_hypseg.core.hierarchy import ClusterHierarchy
    from napari_hypseg.core.segmentation import Segmentation

    labels = hand_made()
    fine = np.ones(labels.shape, np.uint16)
    fine[10:12] = 2                       # two of the 27-voxel cube's three z-planes are in fine cluster 2
    centroids = np.array([[0.1, 0.0], [0.0, 0.7]])
    segmentation = Segmentation(
        fine_labels=fine, hierarchy=ClusterHierarchy.from_centroids(centroids, weights=[10, 10]),
        centroids=centroids, fine_counts=np.array([0, 10, 10]), sample_points=centroids,
        sample_labels=np.array([1, 2]))
    objects = cluster_objects(labels, 1, segmentation=segmentation)
    np.testing.assert_allclose(objects.table["mean_latent_radius"], [0.1, (2 * 0.7 + 0.1) / 3, 0.1])


@pytest.mark.parametrize(("cluster", "kwargs", "expected"), [
    (9, {}, "cluster 9 does not exist in these labels; choose one of 1, 2, 5"),
    (3, {}, "cluster 3 is empty: no voxel has this label"),
    (6, {"n_clusters": 8}, "cluster 6 is empty"),
    (0, {}, "0 is never a cluster"),
    (1, {"min_size": 100}, "no object of cluster 1 is within the size filter (at least 100 voxels): its 3 "
                           "component(s) have 1..27 voxels"),
    (1, {"min_size": 10, "max_size": 5}, "the minimum size is larger than the maximum"),
    (1, {"min_size": -1}, "minimum size must be a number of 0 or more"),
    (1, {"connectivity": 8}, "connectivity must be 6, 18 or 26"),
    (1, {"image": np.zeros((20, 20, 19))}, "the image has shape (20, 20, 19) but the labels have (20, 20, 20)"),
    (1, {"latents": np.zeros((20, 20, 20))}, "the latent field has shape (20, 20, 20)"),
    (1, {"spacing": (1.0, 0.0, 1.0)}, "voxel size must be three positive numbers"),
])
def test_bad_inputs_say_what_is_wrong(cluster, kwargs, expected):
    with pytest.raises(ObjectsError) as error:
        cluster_objects(hand_made(), cluster, **kwargs)
    assert expected in str(error.value)
    assert isinstance(error.value, HypsegError)


def test_labels_that_are_not_labels_are_refused():
    with pytest.raises(ObjectsError, match="integer cluster ids"):
        cluster_objects(np.full((4, 4, 4), 0.5), 1)
    with pytest.raises(ObjectsError, match="3D volume"):
        cluster_objects(np.ones((4, 4), np.uint8), 1)
    with pytest.raises(ObjectsError, match="labels are all 0"):
        cluster_objects(np.zeros((4, 4, 4), np.uint8), 1)


def test_csv_round_trip_through_pandas(tmp_path):
    image = np.random.default_rng(0).normal(size=(20, 20, 20))
    objects = cluster_objects(hand_made(), 1, spacing=SPACING, unit="angstrom", image=image)
    path = write_csv(objects, tmp_path / "objects.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(objects.table.columns)
    pd.testing.assert_frame_equal(back, objects.table, check_dtype=False)
    assert [p.name for p in tmp_path.iterdir()] == ["objects.csv"]      # no temporary file left


@pytest.mark.parametrize(("unit", "pixel_size"), [("angstrom", 0.5), ("nanometer", 5.0), ("pixel", None)])
def test_star_round_trip_through_starfile(tmp_path, unit, pixel_size):
    import starfile

    objects = cluster_objects(hand_made(), 1, spacing=SPACING, unit=unit)
    path = write_star(objects, tmp_path / "picks.star", tomo_name="TS_01")
    star = starfile.read(path, always_dict=True)
    assert list(star) == ["particles"]
    particles = star["particles"]
    assert particles["rlnTomoName"].tolist() == ["TS_01"] * 3
    assert particles["rlnMicrographName"].tolist() == ["TS_01"] * 3
    # pixel coordinates of the tomogram, X = last axis
    np.testing.assert_allclose(particles[["rlnCoordinateZ", "rlnCoordinateY", "rlnCoordinateX"]].to_numpy(),
                               objects.centroids_px, atol=1e-6)
    if pixel_size is None:
        assert "rlnPixelSize" not in particles
    else:
        np.testing.assert_allclose(particles["rlnPixelSize"], pixel_size)


def test_star_needs_a_tomogram_name_without_spaces(tmp_path):
    objects = cluster_objects(hand_made(), 1)
    with pytest.raises(ObjectsError, match="must be one word"):
        write_star(objects, tmp_path / "picks.star", tomo_name="my tomo")
    assert not (tmp_path / "picks.star").exists()


def _ball(radius: float, shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A ball of `radius` in physical units, centred in the volume."""
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum(g ** 2 for g in grids) <= radius ** 2


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl"])
def test_mesh_encloses_the_volume_of_its_mask(tmp_path, suffix):
    import trimesh

    spacing = (2.0, 1.0, 0.5)                      # anisotropic: the ball has 7 x 14 x 28 voxels across
    mask = _ball(7.0, shape=(12, 24, 40), spacing=spacing)
    labels = mask.astype(np.uint8) * 3
    objects = cluster_objects(labels, 3, spacing=spacing, unit="angstrom")
    path = write_objects_mesh(objects, tmp_path / f"ball{suffix}")
    mesh = trimesh.load(path, force="mesh", process=True)
    mask_volume = mask.sum() * np.prod(spacing)
    assert mesh.is_watertight and mesh.volume > 0           # closed, normals outwards
    assert mesh.volume == pytest.approx(mask_volume, rel=0.04)
    # physical coordinates in (x, y, z) order: the ball is 14 Å across (to a voxel) on every axis, centred
    centre = (np.array(objects.centroids[0]))[::-1]
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), centre, atol=0.3)
    assert np.all(np.abs(np.ptp(mesh.bounds, axis=0) - 14.0) <= np.array(spacing[::-1]) + 1e-9)


def test_mesh_of_one_object_and_of_an_object_at_the_border_is_closed(tmp_path):
    import trimesh

    labels = hand_made()
    objects = cluster_objects(labels, 1)
    vertices, faces = surface_mesh(objects.mask([2]), objects.spacing)
    mesh = trimesh.Trimesh(vertices, faces)
    assert mesh.is_watertight and 0.8 * 27 < mesh.volume < 27        # marching cubes bevels a cube's edges
    np.testing.assert_allclose(mesh.bounds, [[13.5, 4.5, 9.5], [16.5, 7.5, 12.5]])   # x, y, z of object 2
    border = np.zeros((5, 5, 5), bool)
    border[:2, :2, :2] = True                                 # touches three faces of the volume
    mesh = trimesh.Trimesh(*surface_mesh(border))
    assert mesh.is_watertight and mesh.volume > 0
    with pytest.raises(ObjectsError, match="object id.*7.*not among the 3 objects"):
        objects.mask([7])


def test_a_mesh_of_nothing_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(ObjectsError, match="nothing to mesh: the mask is empty"):
        surface_mesh(np.zeros((5, 5, 5), bool))
    with pytest.raises(ObjectsError, match="nothing to mesh"):
        write_mesh(tmp_path / "empty.obj", np.zeros((0, 3)), np.zeros((0, 3), int))
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    objects = cluster_objects(hand_made(), 1)
    for write, name in ((lambda p, **k: write_csv(objects, p, **k), "o.csv"),
                        (lambda p, **k: write_star(objects, p, tomo_name="t", **k), "o.star"),
                        (lambda p, **k: write_objects_mesh(objects, p, **k), "o.ply")):
        target = tmp_path / name
        target.write_text("keep me")
        with pytest.raises(ObjectsError, match="already exists; choose another name or allow replacing it"):
            write(target)
        assert target.read_text() == "keep me"
        write(target, overwrite=True)
        assert target.read_bytes() != b"keep me"
    with pytest.raises(ObjectsError, match=r"must end in \.obj or \.ply or \.stl"):
        write_objects_mesh(objects, tmp_path / "o.vtk")
    with pytest.raises(ObjectsError, match="folder .* does not exist"):
        write_csv(objects, tmp_path / "missing" / "o.csv")


def test_match_points_pairs_each_truth_once_within_the_tolerance():
    truth = np.array([[0, 0, 0], [10, 10, 10], [20, 0, 0]], float)
    detected = np.array([[0.5, 0, 0], [1.0, 0, 0], [10, 10, 12.5], [20, 1, 1]], float)
    d, t = match_points(detected, truth, tolerance=2.0)
    assert sorted(zip(d.tolist(), t.tolist())) == [(0, 0), (3, 2)]
    assert len(match_points(np.zeros((0, 3)), truth, 2.0)[0]) == 0
