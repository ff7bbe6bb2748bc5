"""The Objects dock widget on a real napari viewer: picks, table, navigation, exports, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_hypseg.core.objects import cluster_objects
from napari_hypseg.core.synthetic import ToyConfig, make_toy_volume
from napari_hypseg.widgets._objects import _camera

SCALE = (2.0, 2.0, 2.0)


@pytest.fixture
def toy_viewer(make_napari_viewer):
    """A viewer with a toy image and its level-3 truth as a segmentation, 2 Å voxels, from 'TS_01.mrc'."""
    toy = make_toy_volume(1003)
    viewer = make_napari_viewer()
    source = {"spacing": list(SCALE), "unit": "angstrom", "affine": None, "source": "/data/TS_01.mrc"}
    viewer.add_image(toy.image, name="TS_01", scale=SCALE, units=("angstrom",) * 3,
                     metadata={"hypseg_volume": source})
    viewer.add_labels(toy.truth[3], name="TS_01 segmentation", scale=SCALE, units=("angstrom",) * 3,
                      metadata={"hypseg_volume": source})
    return viewer, toy


def _find(qtbot, widget):
    widget.find_button.click()
    if widget.worker is not None:
        qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)


def test_objects_widget_docks_by_its_manifest_name(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-hypseg", "Objects")
    assert type(widget).__name__ == "ObjectsWidget"
    assert all(w.toolTip() for w in (widget.cluster, widget.min_size, widget.max_size, widget.size_unit,
                                     widget.connectivity, widget.find_button, widget.csv_button,
                                     widget.star_button, widget.mesh_button))


def test_find_objects_shows_picks_components_and_a_table_that_moves_the_view(toy_viewer, qtbot):
    from napari_hypseg.widgets import ObjectsWidget

    viewer, toy = toy_viewer
    widget = ObjectsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.labels.value.name == "TS_01 segmentation"
    assert [widget.cluster.itemText(i) for i in range(widget.cluster.count())] == ["1", "2", "3", "4", "5"]
    assert widget.image.value.name == "TS_01"          # the image of the same shape, chosen for mean intensity
    assert not widget.csv_button.isEnabled()            # nothing to export yet

    widget.cluster.setCurrentText("4")
    widget.min_size.setValue(5)
    _find(qtbot, widget)
    expected = cluster_objects(toy.truth[3], 4, spacing=SCALE, unit="angstrom", min_size=5, image=toy.image)
    points = viewer.layers["TS_01 segmentation cluster 4 picks"]
    components = viewer.layers["TS_01 segmentation cluster 4 objects"]
    np.testing.assert_allclose(points.data, expected.centroids_px)
    assert tuple(points.scale) == SCALE and tuple(components.scale) == SCALE
    np.testing.assert_array_equal(components.data, expected.components)
    np.testing.assert_allclose(points.features["mean_intensity"], expected.table["mean_intensity"])
    assert widget.table.rowCount() == len(expected) >= 2
    assert widget.table.horizontalHeaderItem(2).text() == "volume (angstrom³)"
    assert f"{expected.n_found} component(s), {len(expected)} kept" in widget.status.text()

    # selecting a row moves the slice and the camera to that object and selects its point
    row = len(expected) - 1
    widget.table.selectRow(row)
    world = np.asarray(expected.centroids[row])
    assert viewer.dims.point[0] == pytest.approx(world[0], abs=SCALE[0])   # on the slice of the object
    np.testing.assert_allclose(_camera(viewer).center[-2:], world[-2:])
    assert points.selected_data == {row}

    # a second run replaces the layers instead of piling them up
    widget.min_size.setValue(0)
    widget.table.clearSelection()
    _find(qtbot, widget)
    assert len([layer for layer in viewer.layers if "picks" in layer.name]) == 1


def test_size_in_physical_volume_and_an_empty_result_is_a_notification(toy_viewer, qtbot, notifications):
    from napari_hypseg.widgets import ObjectsWidget

    viewer, toy = toy_viewer
    widget = ObjectsWidget(viewer)
    widget.cluster.setCurrentText("5")
    widget.size_unit.setCurrentText("physical volume")
    widget.min_size.setValue(8.0 * 10)                  # 10 voxels of 8 Å³
    assert widget.options()["min_volume"] == 80.0 and "min_size" not in widget.options()
    _find(qtbot, widget)
    expected = cluster_objects(toy.truth[3], 5, min_size=10)
    assert widget.table.rowCount() == len(expected)

    widget.min_size.setValue(1e9)
    _find(qtbot, widget)
    qtbot.waitUntil(lambda: any("within the size filter" in str(n.message) for n in notifications), timeout=5000)
    assert "No objects" in widget.status.text()


def test_exports_write_files_and_ask_before_replacing(toy_viewer, qtbot, tmp_path):
    import starfile
    import trimesh
    from qtpy.QtWidgets import QMessageBox

    from test_widgets import answer_next_dialog

    from napari_hypseg.widgets import ObjectsWidget

    viewer, toy = toy_viewer
    widget = ObjectsWidget(viewer)
    widget.cluster.setCurrentText("4")
    _find(qtbot, widget)
    objects = widget.objects
    assert widget.tomo_name.text() == "TS_01"          # from the source file of the layer

    table = pd.read_csv(widget.export_csv(tmp_path / "picks.csv"))
    assert table["object_id"].tolist() == list(range(1, len(objects) + 1))
    particles = starfile.read(widget.export_star(tmp_path / "picks.star"))
    assert (particles["rlnTomoName"] == "TS_01").all()
    np.testing.assert_allclose(particles["rlnCoordinateZ"], objects.centroids_px[:, 0], atol=1e-5)
    np.testing.assert_allclose(particles["rlnPixelSize"], 2.0)

    # with a row selected, the mesh is that object's surface only
    widget.table.selectRow(0)
    mesh = trimesh.load(widget.export_mesh(tmp_path / "one.ply"), force="mesh")
    one_object = (objects.components == 1).sum() * 8.0
    assert mesh.is_watertight and 0.7 * one_object < mesh.volume < one_object

    # an existing file is only replaced when the user says yes
    target = tmp_path / "picks.csv"
    target.write_text("keep me")
    answer_next_dialog(QMessageBox.StandardButton.No)
    assert widget.export_csv(target) is None
    assert target.read_text() == "keep me" and "kept" in widget.status.text()
    answer_next_dialog(QMessageBox.StandardButton.Yes)
    assert widget.export_csv(target) == target
    assert pd.read_csv(target)["cluster"].eq(4).all()


def test_the_cluster_list_follows_the_layer_data_and_features(make_napari_viewer):
    from napari_hypseg.widgets import ObjectsWidget

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((4, 5, 6), np.uint8), name="seg")
    widget = ObjectsWidget(viewer)
    assert widget.cluster.count() == 0
    layer.data = np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3      # ids 0, 1, 2 -> clusters 1, 2
    assert [widget.cluster.itemText(i) for i in range(widget.cluster.count())] == ["1", "2"]
    layer.features = {"index": [1, 2, 3], "label": [1, 2, 3]}    # what the Segment widget writes per level
    assert [widget.cluster.itemText(i) for i in range(widget.cluster.count())] == ["1", "2", "3"]
    assert widget.options()["n_clusters"] == 3


@pytest.mark.slow
def test_objects_of_a_segment_widget_layer_have_a_mean_latent_radius(make_napari_viewer, qtbot, tmp_path, one_thread):
    """A real (tiny, one-step) model segments a toy volume in the Segment widget; the Objects widget
    finds that segmentation behind the layer and adds each object's mean latent radius."""
    from napari_hypseg.core.config import get_preset
    from napari_hypseg.core.progress import run_to_completion
    from napari_hypseg.core.training import train

    toy = make_toy_volume(1001, config=ToyConfig(
        shape=24, cell_radius=(12.0, 0.5), vesicle_radius=(4.0, 0.3), mitochondrion_half_side=(4.0, 0.3),
        small_sphere_radius=(1.5, 0.1), small_cube_half_side=(1.5, 0.1)))
    config = get_preset("fast", steps=1, batch_size=4, encoder_channels=(4, 8), hidden=16, n_samples=1,
                        warmup_steps=0, checkpoint_every=1000)
    model = run_to_completion(train([toy.image], config, checkpoint_path=tmp_path / "m.pt", device="cpu"))
    viewer = make_napari_viewer()
    image = viewer.add_image(toy.image, name="toy")
    _, segmenter = viewer.window.add_plugin_dock_widget("napari-hypseg", "Segment")
    segmenter.load_model(model.checkpoint_path)
    segmenter.image.value = image
    segmenter.n_fine.setValue(4)
    segmenter.devices.device = "cpu"
    segmenter.segment_button.click()
    qtbot.waitUntil(lambda: not segmenter.running, timeout=120_000)
    segmentation, layer = segmenter.segmentation, segmenter.labels_layer
    assert segmentation is not None

    _, widget = viewer.window.add_plugin_dock_widget("napari-hypseg", "Objects")
    widget.labels.value = layer
    # the cluster list follows the Segment widget's slider
    for k in (2, 3):
        segmenter.k_slider.setValue(k)
        qtbot.waitUntil(lambda k=k: widget.cluster.count() == k, timeout=5_000)
        assert [widget.cluster.itemText(i) for i in range(k)] == [str(c) for c in range(1, k + 1)]
    cluster = int(np.bincount(np.asarray(layer.data).ravel()).argmax())
    widget.cluster.setCurrentText(str(cluster))
    assert widget.options()["segmentation"] is segmentation
    _find(qtbot, widget)
    expected = cluster_objects(layer.data, cluster, segmentation=segmentation)
    np.testing.assert_allclose(widget.objects.table["mean_latent_radius"], expected.table["mean_latent_radius"])
    assert (expected.table["mean_latent_radius"] > 0).all() and (expected.table["mean_latent_radius"] < 1).all()
    assert widget.table.horizontalHeaderItem(widget.table.columnCount() - 1).text() == "latent radius"


def test_export_widget_writes_each_cluster_surface_as_a_mesh_in_physical_units(make_napari_viewer, qtbot, tmp_path):
    import trimesh
    from qtpy.QtWidgets import QMessageBox

    from test_widgets import _export, answer_next_dialog

    from napari_hypseg.widgets import ExportWidget

    spacing = (2.0, 1.0, 0.5)                       # z, y, x: the ball is 8 x 16 x 32 voxels across
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip((14, 26, 44), (6.5, 12.5, 21.5), spacing)],
                        indexing="ij")
    ball = sum(g ** 2 for g in grids) <= 8.0 ** 2
    labels = ball.astype(np.uint8) * 2
    labels[0:2, 0:2, 0:2] = 5
    viewer = make_napari_viewer()
    viewer.add_labels(labels, name="seg", scale=spacing, units=("angstrom",) * 3)
    widget = ExportWidget(viewer)
    widget.folder.setText(str(tmp_path))
    widget.format.setCurrentText(".stl")
    assert widget.masks.isChecked() and not widget.whole.isEnabled()     # a mesh is one cluster's surface
    widget.clusters.setText("2")
    _export(qtbot, widget)
    target = tmp_path / "seg_cluster2.stl"
    assert widget.written == [target] and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    mesh = trimesh.load(target, force="mesh")
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(ball.sum() * np.prod(spacing), rel=0.04)
    centre = cluster_objects(labels, 2, spacing=spacing).centroids[0][::-1]     # (x, y, z)
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), centre, atol=0.3)

    original = target.read_bytes()
    widget.clusters.setText("")
    answer_next_dialog(QMessageBox.StandardButton.No)
    _export(qtbot, widget)
    assert target.read_bytes() == original and not (tmp_path / "seg_cluster5.stl").exists()

    widget.format.setCurrentText(".tif")
    assert widget.whole.isEnabled()
