"""Screenshot of the Objects widget for the documentation: picks over a toy volume -> docs/images/objects.png.

Run from the repository root (a shown napari window is needed; Xvfb gives one without a screen):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_objects_screenshot.py

It opens the synthetic sample (File › Open Sample › napari-hypseg › toy), docks **Objects**, takes
cluster 4 of the layer ``truth level 3`` (the small spheres inside the vesicles), finds its objects,
selects one row of the table (the view moves to that object) and grabs the window in 3D, with the
image as a faint volume, the objects as labels and the picks as points. No file is written except the
PNG. The truth stands in for a segmentation here so that the picture shows the widget, not a
method's errors; docs/benchmarks.md measures how well a segmentation's cluster finds these objects.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_screenshots import DOCK_WIDTH, PLUGIN, WINDOW_SIZE, close_notifications, settle, wait  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images",
                        help="folder for the PNG file (default docs/images)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True, title="napari-hypseg")
    app = QApplication.instance()
    window = viewer.window._qt_window
    window.resize(*WINDOW_SIZE)
    viewer.open_sample(PLUGIN, "toy")
    for name in ("truth level 1", "truth level 2"):
        viewer.layers[name].visible = False
    truth = viewer.layers["truth level 3"]
    truth.visible = False
    settle(app)

    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Objects")
    window.resizeDocks([dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)
    widget.labels.value = truth
    widget.cluster.setCurrentText("4")
    widget.min_size.setValue(5)
    widget.find_button.click()
    wait(app, lambda: widget.worker is None, timeout=300)
    if widget.objects is None:
        raise RuntimeError("the Objects widget found nothing; see the messages above")
    print(f"{len(widget.objects)} objects")

    image = viewer.layers["toy image"]
    image.rendering = "mip"
    image.opacity = 0.35
    image.contrast_limits = (float(image.data.min()), float(image.data.max()))
    viewer.dims.ndisplay = 3
    widget.points_layer.size = 4
    widget.objects_layer.opacity = 0.45
    widget.points_layer.face_color = "yellow"
    close_notifications(app)
    viewer.reset_view()
    viewer.scene.camera.angles = (0.0, 25.0, 60.0)
    widget.table.selectRow(0)
    viewer.reset_view()
    viewer.scene.camera.angles = (0.0, 25.0, 60.0)
    viewer.layers.selection.active = widget.points_layer
    settle(app, 1.5)
    path = args.out / "objects.png"
    pixmap = window.grab()
    if not pixmap.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({pixmap.width()}x{pixmap.height()}, {path.stat().st_size / 1024:.0f} KiB)")
    viewer.close()


if __name__ == "__main__":
    main()
