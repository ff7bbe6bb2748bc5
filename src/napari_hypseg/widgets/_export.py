"""Export dock widget: Labels layers -> TIFF / MRC / NIfTI files with the image's voxel size and space,
or the surface of each cluster as a mesh.

Each volume file goes through the plugin's writer (`_writer.write_labels`, what File › Save uses),
which takes the spacing from the layer's scale and units and the NIfTI affine from its metadata, and
writes through `core.volume_io.write_labels` — so both ways of saving give identical files. A mesh
(.obj / .ply / .stl) is the marching-cubes surface of a cluster's mask in the layer's physical
units (`core.export_objects`, as the Objects widget and `hypseg objects --mesh` write it).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QToolButton,
    QWidget,
)

from .._layer_labels import coarse_labels
from ..core.export_objects import MESH_SUFFIXES
from ..core.progress import Progress
from ._common import LayerPicker, confirm_overwrite, scrollable_layout
from ._worker_widget import WorkerWidget

if TYPE_CHECKING:
    import napari

FORMATS = (".tif", ".mrc", ".nii.gz", *MESH_SUFFIXES)
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def _file_stem(name: str) -> str:
    """A layer name made safe as a file name on every system."""
    return _UNSAFE.sub("_", name).strip(" .") or "labels"


def _export_job(jobs: list[tuple[Path, Any, dict, int | None]], *, stop: threading.Event):
    """Worker body: write each (path, labels, layer attributes, cluster) through the plugin's writer;
    with a cluster, its binary mask (made here, one at a time, not all at once in memory), or the
    mask's surface when the path is a mesh file."""
    from .._writer import write_labels
    from ..core.export_objects import surface_mesh, write_mesh

    written: list[Path] = []
    for index, (path, data, attributes, cluster) in enumerate(jobs):
        if stop.is_set():
            break
        yield Progress("export", index, len(jobs), message=path.name)
        labels = data if cluster is None else (np.asarray(data) == cluster).astype(np.uint8)
        if path.suffix in MESH_SUFFIXES:
            spacing = tuple(attributes.get("scale") or (1.0, 1.0, 1.0))[-3:]
            write_mesh(path, *surface_mesh(labels, spacing), overwrite=True)    # replacing was asked
        else:
            write_labels(str(path), labels, attributes)
        written.append(path)
    yield Progress("export", len(written), len(jobs))
    return written


class ExportWidget(WorkerWidget):
    """Write Labels layers, or each of their clusters as a binary mask, to image files."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.written: list[Path] = []

        self.layers = LayerPicker(napari_viewer, Labels, multiple=True,
                                  tooltip="Labels layers to export (Ctrl/Shift-click for several).")
        self.whole = QRadioButton("one multi-label file per layer")
        self.whole.setToolTip("<layer>.<ext>: every cluster id in one file.")
        self.masks = QRadioButton("one binary mask per cluster")
        self.masks.setToolTip("<layer>_cluster<id>.<ext>: 1 inside the cluster, 0 elsewhere (with a mesh "
                              "format: the cluster's surface).")
        self.whole.setChecked(True)
        self.clusters = QLineEdit()
        self.clusters.setPlaceholderText("all")
        self.clusters.setToolTip("Cluster ids to export as masks, e.g. 1, 3, 4 (empty: every cluster "
                                 "present in the layer).")
        self.masks.toggled.connect(self.clusters.setEnabled)
        self.clusters.setEnabled(False)

        self.format = QComboBox()
        self.format.addItems(list(FORMATS))
        self.format.setToolTip(".tif: ImageJ TIFF with the voxel size. .mrc: voxel size in Å for cryo-ET "
                               "tools. .nii.gz: NIfTI in the space (affine) of the image it came from. "
                               ".obj / .ply / .stl: each cluster's surface (marching cubes) in physical "
                               "units, for ChimeraX, Blender or napari's Surface layer.")
        self.format.currentTextChanged.connect(self._format_chosen)
        self.folder = QLineEdit(str(Path.cwd()))
        self.folder.setToolTip("Folder the files are written to (created if needed).")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose the output folder.")
        browse.clicked.connect(self._browse_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        self.overwrite = QCheckBox("replace existing files without asking")
        self.overwrite.setToolTip("Off: you are asked before any existing file is replaced.")

        self.export_button = QPushButton("Export")
        self.export_button.setToolTip("Write the files (in the background).")
        self.export_button.clicked.connect(self.export)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("layers", self.layers.widget.native)
        form.addRow(self.whole)
        form.addRow(self.masks)
        form.addRow("clusters", self.clusters)
        form.addRow("format", self.format)
        form.addRow("folder", folder_row)
        form.addRow(self.overwrite)
        layout = scrollable_layout(self)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        objects_hint = QLabel("Positions (CSV, RELION STAR), measurements and meshes of a cluster's separate "
                              "objects: Plugins › HypSeg › Objects.")
        objects_hint.setWordWrap(True)
        layout.addWidget(objects_hint)
        layout.addStretch(1)
        self._run_controls(self.export_button)

    def _format_chosen(self, suffix: str) -> None:
        """A mesh is the surface of one cluster: mesh formats write one file per cluster."""
        mesh = suffix in MESH_SUFFIXES
        if mesh:
            self.masks.setChecked(True)
        self.whole.setEnabled(not mesh)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def planned(self) -> list[tuple[Path, Any, dict, int | None]]:
        """(file, labels, layer attributes, cluster or None) for every file the choices would write."""
        folder = Path(self.folder.text()).expanduser()
        suffix = self.format.currentText()
        wanted = self._wanted_clusters()
        jobs = []
        for layer in self.layers.value:
            data, attributes, _ = layer.as_layer_data_tuple()
            data, attributes = coarse_labels(data, attributes)   # a hierarchy level: its labels, as shown
            stem = _file_stem(layer.name)
            if self.whole.isChecked():
                jobs.append((folder / f"{stem}{suffix}", data, attributes, None))
                continue
            present = [int(c) for c in np.unique(np.asarray(data)) if c != 0]
            for cluster in present if wanted is None else [c for c in wanted if c in present]:
                jobs.append((folder / f"{stem}_cluster{cluster}{suffix}", data, attributes, cluster))
        return jobs

    def _wanted_clusters(self) -> list[int] | None:
        text = self.clusters.text().strip()
        if not text or text.lower() == "all":
            return None
        try:
            return [int(part) for part in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"clusters: write ids separated by commas, e.g. 1, 3 (got {text!r})") from None

    def export(self) -> None:
        """Write the files; asks before replacing any (unless told not to)."""
        if self.running:
            return
        if not self.layers.value:
            show_error("Choose at least one Labels layer to export.")
            return
        try:
            jobs = self.planned()
        except ValueError as error:
            show_error(str(error))
            return
        if not jobs:
            show_error("Nothing to export: the chosen clusters are not in the chosen layers.")
            return
        if not self.overwrite.isChecked() and not confirm_overwrite(self, [job[0] for job in jobs]):
            self.status.setText("Export cancelled; no file was changed.")
            return
        folder = jobs[0][0].parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            show_error(f"Cannot create the folder {folder}: {error.strerror}")
            return
        self.written = []
        self.status.setText(f"Writing {len(jobs)} file(s) to {folder}…")
        self._start_run(_export_job, jobs, description="HypSeg export", total=len(jobs), on_result=self._on_written)

    def _on_written(self, written: list[Path]) -> None:
        self.written = list(written)
        names = ", ".join(path.name for path in written[:6]) + (" …" if len(written) > 6 else "")
        self.status.setText(f"Wrote {len(written)} file(s) to {written[0].parent}: {names}" if written
                            else "No file written.")
        if written:
            show_info(f"Exported {len(written)} file(s) to {written[0].parent}.")
