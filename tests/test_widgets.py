"""The dock widgets on a real napari viewer: docking by manifest name, states, parameters, errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hypseg.core.config import PRESETS


@pytest.fixture
def notifications():
    """Every napari notification (info, warning, error) dispatched during the test."""
    from napari.utils.notifications import notification_manager

    received = []
    notification_manager.notification_ready.connect(received.append)
    yield received
    notification_manager.notification_ready.disconnect(received.append)


@pytest.mark.parametrize("name", ["Train", "Segment", "Export"])
def test_every_widget_docks_by_its_manifest_name(make_napari_viewer, name):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-hypseg", name)
    assert type(widget).__name__ == f"{name}Widget"
    assert dock.isVisible() or not viewer.window._qt_window.isVisible()


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
    # a tiny learning rate survives the round trip through the field (no fixed-decimal rounding)
    widget.form.set_values(learning_rate=5e-7, encoder_channels=(4, 8))
    config = widget.form.config()
    assert config.learning_rate == pytest.approx(5e-7) and config.encoder_channels == (4, 8)
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
