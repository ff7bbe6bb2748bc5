"""Screenshots of the real plugin for the documentation, written to docs/images/.

Run from the repository root (a shown napari window is needed; Xvfb gives one without a screen):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Optional: ``--steps N`` (training steps, default 150) and ``--out FOLDER`` (default docs/images).

What it does, through the dock widgets exactly as a user would:
  1. opens napari and the synthetic sample (File › Open Sample › napari-hypseg › toy);
  2. docks **Train**, trains a small model (preset "fast", fewer steps) on "toy image" and waits
     until the run ends, so the loss plot shows a curve -> ``train.png``;
  3. docks **Segment**, segments "toy image" with the model just trained, sets the hierarchy
     slider to k = 4 and shows the Poincaré-disk view -> ``segment.png``;
  4. docks **Export**, exports the segmentation as one binary mask per cluster -> ``export.png``.

The model file and the exported masks go to a temporary folder that is deleted at the end;
nothing is written to ~/.napari-hypseg.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

WINDOW_SIZE = (1440, 960)
DOCK_WIDTH = 470
PLUGIN = "napari-hypseg"


def wait(app, condition, timeout: float = 1800.0) -> None:
    """Run the Qt event loop until `condition()` is true (workers report through it)."""
    start = time.monotonic()
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            raise TimeoutError("the widget did not finish in time")


def run_to_end(app, widget, button, done: str, result) -> None:
    """Click a widget's run button, wait until its worker ends, and fail if `result()` is still None."""
    button.click()
    started = time.monotonic()
    wait(app, lambda: not widget.running)
    print(f"{done} in {time.monotonic() - started:.0f} s")
    if result() is None:
        raise RuntimeError(f"{type(widget).__name__} produced no result; see the messages above")


def settle(app, seconds: float = 0.5) -> None:
    """Let Qt lay out and paint (and vispy draw) before a screenshot."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def close_notifications(app) -> None:
    """Close the pop-up notifications, which would otherwise cover the canvas in the screenshots."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for widget in app.topLevelWidgets() + [w for w in app.allWidgets()]:
        if isinstance(widget, NapariQtNotification):
            widget.close()
    settle(app, 0.3)


def grab(app, viewer, path: Path) -> None:
    """The whole main window (canvas, layer list and docks) as a PNG."""
    close_notifications(app)
    settle(app, 0.5)
    viewer.reset_view()  # fit the volume into the canvas left beside the docks
    settle(app, 0.8)
    pixmap = viewer.window._qt_window.grab()
    if not pixmap.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({pixmap.width()}x{pixmap.height()}, {path.stat().st_size / 1024:.0f} KiB)")


DOCKS: list = []  # the plugin docks this script added


def show_only(viewer, dock) -> None:
    """Hide the plugin docks except `dock`, and give it a comfortable width."""
    from qtpy.QtCore import Qt

    if dock not in DOCKS:
        DOCKS.append(dock)
    for other in DOCKS:
        other.setVisible(other is dock)
    viewer.window._qt_window.resizeDocks([dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)


def scroll_to(widget, child) -> None:
    """Scroll a dock's body so that `child` is in view."""
    from qtpy.QtWidgets import QScrollArea

    for scroll in widget.findChildren(QScrollArea):
        scroll.ensureWidgetVisible(child, 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images",
                        help="folder for the PNG files (default docs/images)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    work = Path(tempfile.mkdtemp(prefix="hypseg-screenshots-"))
    viewer = napari.Viewer(show=True, title="napari-hypseg")
    app = QApplication.instance()
    window = viewer.window._qt_window
    window.resize(*WINDOW_SIZE)

    # --- open the sample ------------------------------------------------------------------------
    viewer.open_sample(PLUGIN, "toy")
    image = viewer.layers["toy image"]
    viewer.dims.ndisplay = 2
    viewer.dims.set_current_step(0, image.data.shape[0] // 2)  # the middle z slice
    settle(app)

    # --- train ----------------------------------------------------------------------------------
    train_dock, trainer = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    show_only(viewer, train_dock)
    trainer.images.value = [image]
    trainer.preset.setCurrentText("fast")
    trainer.form.set_values(steps=args.steps, checkpoint_every=max(50, args.steps // 3))
    trainer.checkpoint.setText(str(work / "models" / "toy-fast.pt"))
    run_to_end(app, trainer, trainer.train_button, f"trained {args.steps} steps", lambda: trainer.last_model)
    for name in ("truth level 1", "truth level 2", "truth level 3"):
        viewer.layers[name].visible = False
    # the file name the widget proposes for the next run (not created), instead of the temporary folder
    from napari_hypseg.widgets._common import default_model_path

    trainer.checkpoint.setText(str(default_model_path()))
    scroll_to(trainer, trainer.loss_plot)
    grab(app, viewer, args.out / "train.png")

    # --- segment ----------------------------------------------------------------------------------
    segment_dock, segmenter = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    show_only(viewer, segment_dock)
    segmenter.image.value = image
    segmenter.n_fine.setValue(16)
    run_to_end(app, segmenter, segmenter.segment_button, "segmented", lambda: segmenter.segmentation)
    segmenter.k_slider.setValue(4)
    segmenter.apply_level()
    segmenter.labels_layer.opacity = 0.55
    viewer.layers.selection.active = segmenter.labels_layer
    viewer.dims.set_current_step(0, image.data.shape[0] // 2)
    settle(app, 1.0)
    scroll_to(segmenter, segmenter.poincare)  # the hierarchy group: slider and Poincaré disk
    grab(app, viewer, args.out / "segment.png")

    # --- export -----------------------------------------------------------------------------------
    export_dock, exporter = viewer.window.add_plugin_dock_widget(PLUGIN, "Export")
    show_only(viewer, export_dock)
    exporter.layers.value = [segmenter.labels_layer]
    exporter.masks.setChecked(True)
    exporter.format.setCurrentText(".tif")
    exporter.folder.setText(str(work / "export"))
    exporter.export_button.click()
    wait(app, lambda: exporter.worker is None, timeout=300)
    grab(app, viewer, args.out / "export.png")

    viewer.close()
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
