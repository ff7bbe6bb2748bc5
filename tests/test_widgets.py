"""The dock widgets on a real napari viewer: docking by manifest name, states, parameters, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_hypseg._layer_labels import displayed_labels
from napari_hypseg.core.config import PRESETS
from napari_hypseg.core.errors import ConfigError


def _manifest_widget_names() -> list[str]:
    """The display names of every widget the plugin manifest contributes."""
    from npe2 import PluginManifest

    import napari_hypseg

    manifest = PluginManifest.from_file(Path(napari_hypseg.__file__).parent / "napari.yaml")
    return [widget.display_name for widget in manifest.contributions.widgets]


@pytest.mark.parametrize("name", _manifest_widget_names())
def test_every_widget_docks_by_its_manifest_name(make_napari_viewer, qtbot, name):
    viewer = make_napari_viewer(show=True)   # a shown window, so visibility means something
    dock, widget = viewer.window.add_plugin_dock_widget("napari-hypseg", name)
    assert type(widget).__name__ == f"{name}Widget"
    assert viewer.window.dock_widgets[f"{name} (napari-hypseg)"] is widget
    assert dock.inner_widget() is widget
    qtbot.waitUntil(lambda: dock.isVisible() and widget.isVisible(), timeout=5_000)   # shown once Qt lays it out


def test_train_widget_states_and_parameters(make_napari_viewer):
    from napari_hypseg.widgets import TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    # idle: Train enabled, Stop disabled; every parameter explains itself
    assert widget.train_button.isEnabled() and not widget.stop_button.isEnabled()
    assert all(editor.toolTip() for editor in widget.form.editors.values())
    assert widget.devices.label.text()  # e.g. "CPU only (2 threads)"
    # the preset fills the form; the form gives back exactly that configuration
    widget.preset.setCurrentText("paper")
    assert widget.form.config() == PRESETS["paper"]
    widget.preset.setCurrentText("fast")
    assert widget.form.config() == PRESETS["fast"]
    # the tree's linkage is a choice of the names the core accepts, not free text
    linkage = widget.form.editors["linkage"]
    assert [linkage.itemText(i) for i in range(linkage.count())] == ["ward", "centroid", "average", "single"]
    assert linkage.currentText() == "centroid" and widget.form.editors["ward_top"].value() == 2
    # a tiny learning rate survives the round trip through the field (no fixed-decimal rounding)
    widget.form.set_values(learning_rate=5e-7, encoder_channels=(4, 8))
    config = widget.form.config()
    assert config.learning_rate == pytest.approx(5e-7) and config.encoder_channels == (4, 8)
    # the coarse-level context and the texture target round-trip too; a malformed pair is a clear error
    widget.form.set_values(hierarchy_scales=((6, 1.5),), texture_descriptor="oriented")
    assert widget.form.editors["hierarchy_scales"].text() == "6:1.5"
    assert widget.form.editors["hierarchy_neighbours"].text() == "6:6"
    widget.form.editors["hierarchy_neighbours"].setText("3:5, 2:9")
    config = widget.form.config()
    assert config.hierarchy_scales == ((6, 1.5),) and config.texture_descriptor == "oriented"
    assert config.hierarchy_neighbours == ((3, 5.0), (2, 9.0))
    widget.form.editors["hierarchy_scales"].setText("6-1.5")
    with pytest.raises(ConfigError, match="k:sigma pairs"):
        widget.form.config()
    widget.form.editors["hierarchy_scales"].setText("8:2, 4:6")
    # the gyroplane switch means nothing for the Euclidean model
    widget.form.editors["geometry"].setCurrentText("euclidean")
    assert not widget.form.editors["gyroplane"].isEnabled()
    # the image list follows the layer list
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="a")
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="b")
    assert [layer.name for layer in widget.images.widget.choices] == ["a", "b"]
    assert [layer.name for layer in widget.images.value] == ["a"]
    viewer.layers["a"].name = "renamed"
    assert "renamed" in [item.text() for item in _items(widget.images.widget.native)]
    viewer.layers.remove("renamed")
    assert [layer.name for layer in widget.images.value] == ["b"]


def test_invalid_parameters_are_a_notification_not_a_run(make_napari_viewer, tmp_path, notifications):
    from napari_hypseg.widgets import TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.add_image(np.zeros((8, 8, 8), np.float32))
    widget.form.editors["encoder_channels"].setText("16, lots")
    widget.checkpoint.setText(str(tmp_path / "m.pt"))
    widget.train_button.click()
    assert widget.worker is None and widget.train_button.isEnabled()
    assert any("encoder channels" in str(n.message) for n in notifications)
    assert not (tmp_path / "m.pt").exists()


def _items(list_widget):
    return [list_widget.item(i) for i in range(list_widget.count())]


# --- export ---------------------------------------------------------------------------------------


def answer_next_dialog(button):
    """Click `button` of the next modal dialog (e.g. QMessageBox.StandardButton.No) once it is open."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    def click():
        box = QApplication.activeModalWidget()
        if box is None:
            QTimer.singleShot(20, click)
        else:
            box.button(button).click()

    QTimer.singleShot(0, click)


def _export(qtbot, widget):
    widget.export_button.click()
    if widget.worker is not None:
        qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)


def _labels_volume():
    labels = np.zeros((6, 7, 8), np.uint16)
    labels[1:3, 2:5, 1:4] = 1
    labels[3:6, :, 5:] = 3
    return labels


def test_export_layers_and_cluster_masks_keep_voxel_size(make_napari_viewer, qtbot, tmp_path):
    from napari_hypseg.core.volume_io import read_volume
    from napari_hypseg.widgets import ExportWidget

    viewer = make_napari_viewer()
    labels = _labels_volume()
    viewer.add_labels(labels, name="tomo segmentation", scale=(2.0, 1.5, 0.5), units=("angstrom",) * 3)
    widget = ExportWidget(viewer)
    widget.folder.setText(str(tmp_path / "out"))
    assert [layer.name for layer in widget.layers.value] == ["tomo segmentation"]

    widget.format.setCurrentText(".mrc")
    _export(qtbot, widget)
    volume = read_volume(tmp_path / "out" / "tomo segmentation.mrc")
    np.testing.assert_array_equal(volume.data, labels)
    assert volume.spacing == pytest.approx((2.0, 1.5, 0.5)) and volume.unit == "angstrom"

    widget.masks.setChecked(True)
    widget.format.setCurrentText(".tif")
    _export(qtbot, widget)
    for cluster in (1, 3):
        mask = read_volume(tmp_path / "out" / f"tomo segmentation_cluster{cluster}.tif")
        np.testing.assert_array_equal(mask.data, labels == cluster)
        assert mask.spacing == pytest.approx((2.0, 1.5, 0.5))
    assert not (tmp_path / "out" / "tomo segmentation_cluster2.tif").exists()

    widget.clusters.setText("3")
    assert [job[0].name for job in widget.planned()] == ["tomo segmentation_cluster3.tif"]


def test_export_asks_before_replacing_files(make_napari_viewer, qtbot, tmp_path):
    from qtpy.QtWidgets import QMessageBox

    from napari_hypseg.core.volume_io import read_volume
    from napari_hypseg.widgets import ExportWidget

    viewer = make_napari_viewer()
    layer = viewer.add_labels(_labels_volume(), name="seg")
    widget = ExportWidget(viewer)
    widget.folder.setText(str(tmp_path))
    widget.format.setCurrentText(".tif")
    _export(qtbot, widget)
    target = tmp_path / "seg.tif"
    original = target.read_bytes()

    layer.data = np.zeros_like(layer.data)
    answer_next_dialog(QMessageBox.StandardButton.No)
    _export(qtbot, widget)
    assert target.read_bytes() == original and "cancelled" in widget.status.text()

    answer_next_dialog(QMessageBox.StandardButton.Yes)
    _export(qtbot, widget)
    assert not read_volume(target).data.any()


def test_export_to_nifti_keeps_the_source_affine(make_napari_viewer, qtbot, tmp_path):
    import nibabel as nib

    from napari_hypseg.widgets import ExportWidget

    affine = np.array([[0.0, 0.0, 1.5, -20.0], [0.0, 0.75, 0.0, 10.0], [-0.5, 0.0, 0.0, 3.0], [0, 0, 0, 1.0]])
    viewer = make_napari_viewer()
    viewer.add_labels(_labels_volume(), name="brain", scale=(1.5, 0.75, 0.5), units=("millimeter",) * 3,
                      metadata={"hypseg_volume": {"affine": affine.tolist(), "unit": "mm"}})
    widget = ExportWidget(viewer)
    widget.folder.setText(str(tmp_path))
    widget.format.setCurrentText(".nii.gz")
    _export(qtbot, widget)
    np.testing.assert_allclose(nib.load(tmp_path / "brain.nii.gz").affine, affine)


# --- training stops cleanly however it is asked to ---------------------------------------------------


def test_cancelling_the_task_stops_training_and_keeps_the_model(make_napari_viewer, qtbot, tmp_path):
    """napari cancels a task (activity dock, closing the window) with worker.quit(): that must stop
    after the current step and save, like the Stop button, not abandon the run."""
    from napari_hypseg.core.checkpoint import load_checkpoint
    from napari_hypseg.widgets import TrainWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32), name="noise")
    widget = TrainWidget(viewer)
    widget.form.set_values(steps=1000, batch_size=2, encoder_channels=(4,), hidden=8, n_samples=1,
                           warmup_steps=0, checkpoint_every=1000)
    path = tmp_path / "cancelled.pt"
    widget.checkpoint.setText(str(path))
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.last_event is not None and widget.last_event.step >= 2, timeout=60_000)
    status = widget.status.text()
    assert all(shown in status for shown in (" patches/s", "ETA ", "lr ")), status   # the pace beside the losses
    widget.worker.quit()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    step = load_checkpoint(path).step
    assert 2 <= step < 1000
    assert widget.last_model is not None and widget.last_model.trained.step == step
    assert widget.train_button.isEnabled() and not widget.stop_button.isEnabled()


def test_a_failed_run_is_a_notification_and_replaces_no_model_file(make_napari_viewer, qtbot, tmp_path,
                                                                    notifications):
    from qtpy.QtWidgets import QMessageBox

    from napari_hypseg.widgets import TrainWidget

    viewer = make_napari_viewer()
    volume = np.zeros((12, 12, 12), np.float32)
    volume[3, 4, 5] = np.nan
    viewer.add_image(volume, name="broken")
    widget = TrainWidget(viewer)
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"an earlier model")
    widget.checkpoint.setText(str(existing))
    answer_next_dialog(QMessageBox.StandardButton.Yes)  # "Replace existing files?"
    widget.train_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    errors = [n for n in notifications if str(n.severity).lower().endswith("error")]
    assert errors and "NaN or infinite" in str(errors[-1].message)
    assert existing.read_bytes() == b"an earlier model"
    assert widget.train_button.isEnabled() and not widget.stop_button.isEnabled()
    assert widget.last_model is None


def test_declining_to_replace_a_model_file_starts_nothing(make_napari_viewer, tmp_path):
    from qtpy.QtWidgets import QMessageBox

    from napari_hypseg.widgets import TrainWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((12, 12, 12), np.float32))
    widget = TrainWidget(viewer)
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"an earlier model")
    widget.checkpoint.setText(str(existing))
    answer_next_dialog(QMessageBox.StandardButton.No)
    widget.train_button.click()
    assert widget.worker is None and widget.train_button.isEnabled()
    assert existing.read_bytes() == b"an earlier model"


# --- segmentation ----------------------------------------------------------------------------------


def test_euclidean_model_on_a_nifti_volume_keeps_its_space_to_the_exported_file(make_napari_viewer, qtbot,
                                                                                 tmp_path):
    """A NIfTI opened with our reader -> segmented with a Euclidean model (plain latent view) ->
    exported as NIfTI: the labels land in the image's voxel space (same affine)."""
    import nibabel as nib
    from matplotlib.patches import Circle

    from napari_hypseg.core.config import get_preset
    from napari_hypseg.core.progress import run_to_completion
    from napari_hypseg.core.training import train
    from napari_hypseg.core.volume_io import read_volume
    from napari_hypseg.widgets import ExportWidget, SegmentWidget, TrainWidget

    raw = np.random.default_rng(0).normal(size=(16, 14, 12)).astype(np.float32)
    affine = np.array([[0.0, 0.0, 1.5, -20.0], [0.0, 0.75, 0.0, 10.0], [-0.5, 0.0, 0.0, 3.0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(raw, affine), tmp_path / "brain.nii.gz")
    config = get_preset("fast", geometry="euclidean", steps=1, batch_size=2, encoder_channels=(4,), hidden=8,
                        n_samples=1, warmup_steps=0)
    run_to_completion(train([raw], config, checkpoint_path=tmp_path / "euclid.pt", device="cpu"))

    viewer = make_napari_viewer()
    (image,) = viewer.open(tmp_path / "brain.nii.gz", plugin="napari-hypseg")
    segmenter = SegmentWidget(viewer)
    assert not segmenter.segment_button.isEnabled()  # no model yet
    TrainWidget(viewer).load_model(tmp_path / "euclid.pt")  # the session is shared per viewer
    assert segmenter.selected_model is not None and segmenter.segment_button.isEnabled()
    segmenter.image.value = image
    segmenter.n_fine.setValue(4)
    segmenter.devices.device = "cpu"
    segmenter.segment_button.click()
    qtbot.waitUntil(lambda: not segmenter.running, timeout=60_000)
    layer = segmenter.labels_layer
    np.testing.assert_array_equal(displayed_labels(layer), segmenter.segmentation.labels_at_k(segmenter.k_slider.value()))
    assert tuple(layer.scale) == tuple(image.scale)
    assert layer.metadata["hypseg_volume"] == image.metadata["hypseg_volume"]
    assert not [patch for patch in segmenter.poincare.axes.patches if isinstance(patch, Circle)]
    assert len(segmenter.poincare.colors) == len(segmenter.segmentation.sample_points)
    assert "Euclidean" in segmenter.radius_slider.toolTip()

    exporter = ExportWidget(viewer)
    exporter.layers.value = [viewer.layers[layer.name]]
    exporter.folder.setText(str(tmp_path / "out"))
    exporter.format.setCurrentText(".nii.gz")
    _export(qtbot, exporter)
    written = tmp_path / "out" / "brain segmentation.nii.gz"
    np.testing.assert_allclose(nib.load(written).affine, affine)
    np.testing.assert_array_equal(read_volume(written).data, displayed_labels(layer))
