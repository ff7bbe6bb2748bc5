"""Objects dock widget: the connected components of one cluster as picks, a table and a Labels layer,
and their export as CSV, RELION STAR or a surface mesh.

All measuring happens in `core.objects` (in a worker thread) and all writing in `core.export_objects`;
this module only gathers the choices and shows the result:

- a Points layer ``<labels> cluster C picks`` at the objects' centroids, with the features table as
  its `features` (Layers › Metadata › Features table widget shows it too);
- a Labels layer ``<labels> cluster C objects`` with one id per object;
- a table in the dock: selecting a row moves the view (slice and camera centre) to that object and
  selects its point.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..core.errors import HypsegError
from ..core.progress import Progress
from ._common import (
    LayerPicker,
    confirm_overwrite,
    notify_error,
    scrollable_layout,
    spacing_of,
    volume_of,
)
from ._worker_widget import WorkerWidget

if TYPE_CHECKING:
    import napari

    from ..core.objects import Objects

SIZE_UNITS = ("voxels", "physical volume")
TABLE_COLUMNS = (("object_id", "id"), ("voxel_count", "voxels"), ("volume", "volume"),
                 ("centroid_z_px", "z"), ("centroid_y_px", "y"), ("centroid_x_px", "x"),
                 ("mean_intensity", "mean intensity"), ("mean_latent_radius", "latent radius"))
MESH_FILTER = "Wavefront OBJ (*.obj);;Stanford PLY (*.ply);;STL (*.stl)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _find_objects(labels, cluster: int, options: dict, *, stop: threading.Event):
    """Worker body: one core call, announced as a progress event."""
    from ..core.objects import cluster_objects

    yield Progress("objects", 0, 1, message=f"components of cluster {cluster}")
    if stop.is_set():
        return None
    objects = cluster_objects(np.asarray(labels), cluster, **options)
    yield Progress("objects", 1, 1)
    return objects


def layer_unit(layer: Any) -> str:
    """The layer's length unit in the core's spelling ("angstrom", "mm", "pixel", ...)."""
    from ..core.volume_io import canonical_unit

    source = (layer.metadata or {}).get("hypseg_volume") or {}
    if source.get("unit"):
        return canonical_unit(source["unit"])
    units = getattr(layer, "units", None)
    return canonical_unit(str(units[-1])) if units is not None and len(units) else "pixel"


def _unwrapped(obj: Any) -> Any:
    """The object behind napari's PublicOnlyProxy (or the object itself)."""
    return getattr(obj, "__wrapped__", obj)


def _camera(viewer: Any) -> Any:
    """The viewer's camera: `viewer.scene.camera` from napari 0.9, `viewer.camera` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


class ObjectsWidget(WorkerWidget):
    """Find the objects of a cluster, browse them, and export them."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.objects: Objects | None = None
        self.source: Labels | None = None          # the Labels layer the objects were found in
        self.points_layer = None
        self.objects_layer: Labels | None = None

        self.labels = LayerPicker(napari_viewer, Labels, multiple=False,
                                  tooltip="The segmentation (Labels layer) whose cluster you want as objects.")
        self.labels.widget.changed.connect(self._labels_chosen)
        self._watched: Labels | None = None
        self.cluster = QComboBox()
        self.cluster.setToolTip("The cluster (label id) whose connected components become objects.")
        self.image = ComboBox(choices=self._image_choices, nullable=True,
                              tooltip="Optional: an image of the same shape, for each object's mean intensity.")
        napari_viewer.layers.events.inserted.connect(self._layers_changed)
        napari_viewer.layers.events.removed.connect(self._layers_changed)

        self.min_size = QDoubleSpinBox()
        self.max_size = QDoubleSpinBox()
        for box, text in ((self.min_size, "Objects smaller than this are dropped (0: no minimum)."),
                          (self.max_size, "Objects larger than this are dropped (0: no maximum).")):
            box.setRange(0, 1e15)
            box.setDecimals(3)
            box.setSpecialValueText("none")          # 0 shows as "none": no bound
            box.setToolTip(text)
        self.size_unit = QComboBox()
        self.size_unit.addItems(list(SIZE_UNITS))
        self.size_unit.setToolTip("Sizes as voxel counts, or as volumes in the layer's unit cubed "
                                  "(voxel count × voxel volume).")
        size_row = QHBoxLayout()
        size_row.addWidget(self.min_size)
        size_row.addWidget(QLabel("to"))
        size_row.addWidget(self.max_size)
        self.connectivity = QComboBox()
        self.connectivity.addItems(["6 (faces)", "18 (faces, edges)", "26 (faces, edges, corners)"])
        self.connectivity.setToolTip("Which neighbouring voxels belong to the same object.")

        self.find_button = QPushButton("Find objects")
        self.find_button.setToolTip("Label the connected components of the cluster and measure them.")
        self.find_button.clicked.connect(self.find)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableWidget(0, 0)
        self.table.setToolTip("One row per object; select a row to go to it.")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(180)
        self.table.itemSelectionChanged.connect(self._row_selected)

        self.tomo_name = QLineEdit()
        self.tomo_name.setToolTip("rlnTomoName / rlnMicrographName in the STAR file: the tomogram's name "
                                  "(default: the source file name).")
        self.csv_button = QPushButton("CSV…")
        self.csv_button.setToolTip("Save the table (one row per object) as CSV.")
        self.star_button = QPushButton("STAR…")
        self.star_button.setToolTip("Save the centroids as RELION particle picks (pixels of the tomogram, "
                                    "pixel size in Å).")
        self.mesh_button = QPushButton("Mesh…")
        self.mesh_button.setToolTip("Save the surface of the selected objects (all when none is selected) "
                                    "as .obj, .ply or .stl, in physical units.")
        self.csv_button.clicked.connect(lambda: self.export_csv())
        self.star_button.clicked.connect(lambda: self.export_star())
        self.mesh_button.clicked.connect(lambda: self.export_mesh())
        export_row = QHBoxLayout()
        for button in (self.csv_button, self.star_button, self.mesh_button):
            export_row.addWidget(button)

        form = QFormLayout()
        form.addRow("labels", self.labels.widget.native)
        form.addRow("cluster", self.cluster)
        form.addRow("image", self.image.native)
        form.addRow("size", size_row)
        form.addRow("size in", self.size_unit)
        form.addRow("connectivity", self.connectivity)
        export_form = QFormLayout()
        export_form.addRow("tomogram name", self.tomo_name)
        layout = scrollable_layout(self)
        layout.addLayout(form)
        layout.addWidget(self.find_button)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addLayout(export_form)
        layout.addLayout(export_row)
        self._set_results_enabled(False)
        self._labels_chosen()
        self._run_controls(self.find_button)

    # ------------------------------------------------------------------ choices

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Image) and not layer.rgb and layer.ndim >= 3]

    def _layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()
        self.refresh_clusters()

    def _labels_chosen(self, *_: Any) -> None:
        """Follow the chosen layer's data (the Segment widget's slider relabels it in place)."""
        if self._watched is not None:
            self._watched.events.data.disconnect(self.refresh_clusters)
            self._watched.events.features.disconnect(self.refresh_clusters)
        self._watched = self.labels.value
        if self._watched is not None:
            self._watched.events.data.connect(self.refresh_clusters)
            self._watched.events.features.connect(self.refresh_clusters)
        self.refresh_clusters()

    def refresh_clusters(self, *_: Any) -> None:
        """Fill the cluster list with the ids present in the chosen layer (its features table when it
        has one, as segmentations from the Segment widget do)."""
        layer = self.labels.value
        current = self.cluster.currentText()
        self.cluster.clear()
        if layer is None:
            return
        features = getattr(layer, "features", None)
        if features is not None and "label" in features and len(features):
            ids = [int(c) for c in features["label"] if c != 0]
        else:
            ids = [int(c) for c in np.unique(np.asarray(layer.data)) if c != 0]
        self.cluster.addItems([str(c) for c in ids])
        if current:
            self.cluster.setCurrentText(current)
        if self.image.value is None:
            for _name, image in self._image_choices():
                if tuple(image.data.shape[-3:]) == tuple(layer.data.shape[-3:]):
                    self.image.value = image
                    break

    # ------------------------------------------------------------------ finding

    def options(self) -> dict:
        """The keyword arguments of core.objects.cluster_objects the widget's choices give."""
        layer = self.labels.value
        low = self.min_size.value() or None
        high = self.max_size.value() or None
        physical = self.size_unit.currentText() == SIZE_UNITS[1]
        options = {
            "spacing": spacing_of(layer), "unit": layer_unit(layer),
            "connectivity": (6, 18, 26)[self.connectivity.currentIndex()],
            ("min_volume" if physical else "min_size"): low,
            ("max_volume" if physical else "max_size"): high,
        }
        if self.image.value is not None:
            options["image"] = volume_of(self.image.value)
        segmentation = self._segmentation_of(layer)
        if segmentation is not None:
            options["segmentation"] = segmentation
        features = getattr(layer, "features", None)
        if features is not None and "label" in features and len(features):
            options["n_clusters"] = int(np.max(features["label"]))
        return options

    def _segmentation_of(self, layer: Labels):
        """The Segmentation behind `layer` when a docked Segment widget made it (for latent radii)."""
        for widget in self.viewer.window.dock_widgets.values():
            shown = getattr(widget, "labels_layer", None)
            # plugin widgets hold napari's public proxies of layers: compare what they wrap
            if _unwrapped(shown) is _unwrapped(layer) and getattr(widget, "segmentation", None) is not None:
                segmentation = widget.segmentation
                if segmentation.fine_labels.shape == tuple(layer.data.shape):
                    return segmentation
        return None

    def find(self) -> None:
        """Find the objects of the chosen cluster, in the background."""
        if self.running:
            return
        layer = self.labels.value
        if layer is None:
            show_error("Choose a Labels layer (a segmentation) first.")
            return
        if not self.cluster.currentText():
            show_error(f"The layer {layer.name!r} has no cluster (every voxel is 0); choose another layer.")
            return
        try:
            options = self.options()
        except HypsegError as error:
            notify_error(error)
            return
        cluster = int(self.cluster.currentText())
        self.source = layer
        self.status.setText(f"Finding the objects of cluster {cluster}…")
        self._start_run(_find_objects, layer.data, cluster, options, description="HypSeg objects", total=1,
                        on_result=self._show)

    def _run_ended(self) -> None:
        if self.status.text().startswith("Finding"):      # the run failed (its message is a notification)
            self.status.setText("No objects: see the message.")

    def _show(self, objects: Objects | None) -> None:
        if objects is None:
            return
        self.objects = objects
        layer = self.source
        name = f"{layer.name} cluster {objects.cluster}"
        placement = {"scale": layer.scale, "translate": layer.translate, "units": layer.units,
                     "axis_labels": layer.axis_labels}
        metadata = {"hypseg_volume": dict(layer.metadata.get("hypseg_volume") or {}),
                    "hypseg_objects": {"source": layer.name, "cluster": objects.cluster}}
        if self.objects_layer is not None and self.objects_layer in self.viewer.layers:
            self.objects_layer.data = objects.components
            self.objects_layer.name = f"{name} objects"
            self.objects_layer.metadata.update(metadata)
        else:
            self.objects_layer = self.viewer.add_labels(objects.components, name=f"{name} objects",
                                                        metadata=metadata, **placement)
        centroids = objects.centroids_px
        if self.points_layer is not None and self.points_layer in self.viewer.layers:
            self.points_layer.data = centroids
            self.points_layer.features = objects.table
            self.points_layer.name = f"{name} picks"
            self.points_layer.metadata.update(metadata)
        else:
            self.points_layer = self.viewer.add_points(
                centroids, name=f"{name} picks", features=objects.table, size=3, face_color="yellow",
                border_color="black", metadata=metadata, **placement)
        self._fill_table(objects)
        if not self.tomo_name.text():
            self.tomo_name.setText(self._default_tomo_name(layer))
        found = f"{objects.n_found} component(s), {len(objects)} kept"
        dropped = len(objects.dropped_sizes)
        self.status.setText(f"Cluster {objects.cluster}: {found}"
                            + (f" ({dropped} outside the size range)" if dropped else "") + ".")
        self._set_results_enabled(True)

    def _fill_table(self, objects: Objects) -> None:
        table = objects.table
        columns = [(key, title) for key, title in TABLE_COLUMNS if key in table]
        unit = objects.unit
        self.table.clearSelection()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(
            [f"{title} ({unit}³)" if key == "volume" and unit != "pixel" else title for key, title in columns])
        self.table.setRowCount(len(table))
        for row, values in enumerate(table[[key for key, _ in columns]].itertuples(index=False)):
            for column, value in enumerate(values):
                text = str(value) if isinstance(value, (int, np.integer)) else f"{value:.4g}"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)

    def _set_results_enabled(self, enabled: bool) -> None:
        for button in (self.csv_button, self.star_button, self.mesh_button):
            button.setEnabled(enabled)

    # ------------------------------------------------------------------ browsing

    def selected_rows(self) -> list[int]:
        return sorted({index.row() for index in self.table.selectionModel().selectedRows()})

    def go_to(self, row: int) -> None:
        """Move the view to object `row` (0-based): its slice, the camera centre, its point selected."""
        if self.objects is None or not 0 <= row < len(self.objects):
            return
        layer = self.points_layer if self.points_layer in self.viewer.layers else self.source
        world = np.asarray(layer.data_to_world(self.objects.centroids_px[row]), dtype=float)
        ndim = self.viewer.dims.ndim
        axes = list(range(ndim - len(world), ndim))
        self.viewer.dims.set_point(axes, tuple(world))
        camera = _camera(self.viewer)
        camera.center = tuple(world[-3:]) if self.viewer.dims.ndisplay == 3 else tuple(world[-2:])
        if self.points_layer is not None and self.points_layer in self.viewer.layers:
            self.points_layer.selected_data = {row}

    def _row_selected(self) -> None:
        rows = self.selected_rows()
        if len(rows) == 1:
            self.go_to(rows[0])

    # ------------------------------------------------------------------ exports

    def _default_tomo_name(self, layer: Labels) -> str:
        source = ((layer.metadata or {}).get("hypseg_volume") or {}).get("source")
        if source:
            from ..core.volume_io import suffix_of

            name = Path(source).name
            return name[: -len(suffix_of(name))] or name
        return _UNSAFE.sub("_", layer.name).strip("_") or "tomogram"

    def _target(self, path: str | Path | None, title: str, filters: str, suffix: str) -> Path | None:
        """The file to write: `path`, or one chosen in a dialog; None when the user declines to replace it."""
        if path is None:
            default = str(Path.cwd() / f"{_UNSAFE.sub('_', self.points_layer.name if self.points_layer else 'objects')}"
                          f"{suffix}")
            path, _ = QFileDialog.getSaveFileName(self, title, default, filters,
                                                  options=QFileDialog.Option.DontConfirmOverwrite)
            if not path:
                return None
        path = Path(path)
        if not confirm_overwrite(self, [path]):
            self.status.setText(f"Not written: {path.name} exists and was kept.")
            return None
        return path

    def _export(self, path, title: str, filters: str, suffix: str, write) -> Path | None:
        if self.objects is None:
            show_error("Find objects first; there is nothing to export yet.")
            return None
        target = self._target(path, title, filters, suffix)
        if target is None:
            return None
        try:
            written = write(target)
        except HypsegError as error:
            notify_error(error)
            return None
        self.status.setText(f"Wrote {written}")
        show_info(f"Wrote {written}")
        return written

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        from ..core.export_objects import write_csv

        return self._export(path, "Save objects as CSV", "CSV table (*.csv)", ".csv",
                            lambda target: write_csv(self.objects, target, overwrite=True))

    def export_star(self, path: str | Path | None = None) -> Path | None:
        from ..core.export_objects import write_star

        name = self.tomo_name.text().strip() or self._default_tomo_name(self.source)
        return self._export(path, "Save picks as RELION STAR", "RELION STAR (*.star)", ".star",
                            lambda target: write_star(self.objects, target, tomo_name=name, overwrite=True))

    def export_mesh(self, path: str | Path | None = None) -> Path | None:
        """The surface of the selected objects, or of every object when no row is selected."""
        from ..core.export_objects import write_objects_mesh

        rows = self.selected_rows()
        ids = None if not rows or self.objects is None else [int(self.objects.table["object_id"].iloc[r])
                                                             for r in rows]
        return self._export(path, "Save surface mesh", MESH_FILTER, ".obj",
                            lambda target: write_objects_mesh(self.objects, target, object_ids=ids, overwrite=True))
