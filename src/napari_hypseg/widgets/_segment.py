"""Segment dock widget: image + model -> core `segment` in a worker -> one Labels layer whose
hierarchy level follows a slider (a lookup in the core, never a re-run of the model). With "every
selected image layer", one run segments each Image layer selected in the layer list in turn.

The widget is the run (model, image(s), parameters, Start / Stop) and the result it shows; it composes
the hierarchy panel (`_hierarchy_panel`: the cut and its slider, the disk view) and the per-cluster
layers (`_cluster_layers`), and applies the chosen level to the layers in `apply_level`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..core.progress import VOXEL_PACE, format_metric
from .._layer_labels import LOOKUP_KEY
from ._binning import binned_placement, binned_segment_jobs, binning_field, region_field, region_mismatch
from ._cluster_colormap import cluster_colors, level_view
from ._cluster_layers import ClusterLayers
from ._common import (
    INT_MAX,
    DeviceChooser,
    LayerPicker,
    model_load_button,
    notify_error,
    scrollable_layout,
    spacing_of,
    volume_of,
)
from ._hierarchy_panel import HierarchyPanel
from ._session import ModelEntry, load_model_file, session_for
from ._worker_widget import WorkerWidget

if TYPE_CHECKING:
    import napari


class SegmentWidget(WorkerWidget):
    """Segment an image layer once, finely, then explore coarser levels with the hierarchy slider."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.session = session_for(napari_viewer)
        self._pending: list[tuple[Image, Any, dict]] = []   # (layer, data, binned holder) of the run
        self._pending_model: ModelEntry | None = None
        self._current = ""   # which image of a run over several is being segmented

        # Result of the last run, and what it was computed from.
        self.segmentation: Any = None
        self.model_used: ModelEntry | None = None
        self.image_data: Any = None
        self.spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.source_name = ""
        self._image_layer: Image | None = None
        self.labels_layer: Labels | None = None
        self._cluster_layers = ClusterLayers(napari_viewer)

        self.image = LayerPicker(napari_viewer, Image, multiple=False,
                                 tooltip="The 3D image layer to segment.")
        self.image.widget.changed.connect(self._update_enabled)
        self.every_selected = QCheckBox("every selected image layer")
        self.every_selected.setToolTip(
            "Segment every Image layer selected in the layer list, one after the other, in one run; each "
            "gets its own segmentation layer, and the hierarchy slider then moves the last one.")
        self.every_selected.toggled.connect(self._update_enabled)
        napari_viewer.layers.selection.events.changed.connect(self._update_enabled)

        self.model = QComboBox()
        self.model.setToolTip("A model trained in the Train widget or loaded from a file.")
        self.model.setMinimumContentsLength(12)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.currentIndexChanged.connect(self._update_enabled)
        self.load_button = model_load_button(self.load_model, "Load a model file (.pt) saved by napari-hypseg.",
                                             self)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.load_button)

        self.n_fine = QSpinBox()
        self.n_fine.setRange(2, 255)
        self.n_fine.setValue(16)
        self.n_fine.setToolTip(
            "Number of fine clusters found once in the latent space. Every coarser level is a merge "
            "of these, so choose at least as many as the finest structures you want to separate.")
        self.seed = QSpinBox()
        self.seed.setRange(0, INT_MAX)
        self.seed.setToolTip("Seed of the clustering (k-means++ starts): the same seed gives the same "
                             "clusters.")
        self.devices = DeviceChooser()
        self.binning = binning_field()
        self.region = region_field(napari_viewer)
        self._translate: tuple[float, ...] = (0.0, 0.0, 0.0)

        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip("Compute every voxel's latent point and cluster them "
                                       "(runs in the background).")
        self.segment_button.clicked.connect(self.start_segmentation)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the segmentation; layers already shown are kept.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.stop_button)
        self.status = QLabel("Choose an image and a model, then Segment.")
        self.status.setWordWrap(True)
        self.status.setToolTip("Progress of the current segmentation and what is shown.")

        self.hierarchy = HierarchyPanel()
        self.hierarchy.level_changed.connect(self.apply_level)
        self.hierarchy.per_cluster.toggled.connect(self._per_cluster_toggled)
        # The panel's controls, also reachable here: scripts and tests drive the widget by them.
        self.mode = self.hierarchy.mode
        self.k_slider = self.hierarchy.k_slider
        self.radius_slider = self.hierarchy.radius_slider
        self.per_cluster = self.hierarchy.per_cluster
        self.poincare = self.hierarchy.poincare

        form = QFormLayout()
        form.addRow("image", self.image.widget.native)
        form.addRow("", self.every_selected)
        form.addRow("model", model_row)
        form.addRow("fine clusters", self.n_fine)
        form.addRow("seed", self.seed)
        form.addRow("binning", self.binning)
        form.addRow("region", self.region.widget.native)
        form.addRow("device", self.devices)
        layout = scrollable_layout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.hierarchy)
        layout.addStretch(1)

        self._run_controls(self.segment_button, self.stop_button,
                           locked=(self.model, self.load_button, self.n_fine, self.seed, self.devices, self.binning,
                                   self.region.widget.native, self.image.widget.native, self.every_selected))
        self.session.models_changed.connect(self._models_changed)
        self._models_changed(None)

    # ------------------------------------------------------------------ models

    def _models_changed(self, selected: ModelEntry | None) -> None:
        current = self.model.currentData()
        self.model.blockSignals(True)
        self.model.clear()
        for entry in self.session.models:
            self.model.addItem(entry.name, entry)
            self.model.setItemData(self.model.count() - 1, entry.description, Qt.ItemDataRole.ToolTipRole)
        self.model.blockSignals(False)
        wanted = selected if selected is not None else current
        index = next((i for i in range(self.model.count()) if self.model.itemData(i) is wanted),
                     self.model.count() - 1)
        self.model.setCurrentIndex(index)
        self._update_enabled()

    @property
    def selected_model(self) -> ModelEntry | None:
        return self.model.currentData()

    def load_model(self, path: str | Path) -> ModelEntry | None:
        """Load a model file and select it (what "Load model…" does after its dialog)."""
        return load_model_file(self.session, path)

    # ------------------------------------------------------------------ state

    @property
    def images(self) -> list[Image]:
        """The image layers a run segments: the chosen one, or every selected Image layer (in list order)."""
        if not self.every_selected.isChecked():
            return [self.image.value] if self.image.value is not None else []
        selected = self.viewer.layers.selection
        return [layer for layer in self.viewer.layers
                if layer in selected and isinstance(layer, Image) and not layer.rgb]

    def _ready(self) -> bool:
        return bool(self.images) and self.selected_model is not None

    def _update_enabled(self, *_: Any) -> None:
        super()._update_enabled()
        if not self.running:
            if self.selected_model is None:
                self.segment_button.setToolTip("Train a model (Train widget) or load one first.")
            elif not self.images:
                self.segment_button.setToolTip("Select image layers in the layer list first."
                                               if self.every_selected.isChecked() else "Open an image layer first.")
            else:
                self.segment_button.setToolTip("Compute every voxel's latent point and cluster them "
                                               "(runs in the background).")
        self.hierarchy.setEnabled(self.segmentation is not None)

    # ------------------------------------------------------------------ segmentation

    def start_segmentation(self) -> None:
        if self.running:
            return
        layers, entry = self.images, self.selected_model
        if not layers or entry is None:
            show_error("Choose an image layer and a model before segmenting.")
            return
        region = self.region.value
        mismatch = region_mismatch(region, layers)
        if mismatch is not None:
            show_error(mismatch)
            return
        self._pending = [(layer, volume_of(layer), {}) for layer in layers]
        self._pending_model = entry
        names = ", ".join(layer.name for layer in layers)
        self.status.setText(f"Segmenting {names} with {entry.name} into {self.n_fine.value()} "
                            f"fine clusters on {self.devices.device}…")
        self._start_run(
            binned_segment_jobs,
            entry.trained,
            [data for _, data, _ in self._pending],
            factor=self.binning.currentData(),
            holders=[holder for _, _, holder in self._pending],
            n_fine=self.n_fine.value(),
            device=self.devices.device,
            seed=self.seed.value(),
            mask=None if region is None else volume_of(region),
            description="HypSeg segmentation",
            total=0,
            on_event=self._on_progress,
            on_result=self._on_segmented,
        )

    def _on_progress(self, event: Any) -> None:
        if event.stage == "images":   # a run over several layers moves on to the next one
            self._current = f"<b>{self._pending[event.step][0].name}</b> ({event.step + 1} of {event.total})<br>"
            return
        stage = {"infer": "latent points", "cluster": "clustering"}.get(event.stage, event.stage)
        parts = [f"<b>{stage}</b> {event.step}/{event.total}"]
        metrics = dict(event.metrics)
        parts += [format_metric(name, metrics[name]) for name in VOXEL_PACE if name in metrics]
        text = self._current + " · ".join(parts)
        if event.message:
            text += f"<br>{event.message}"
        self.status.setText(text)

    def _on_segmented(self, segmentations: list[Any]) -> None:
        """Show each finished segmentation; the last becomes the one the hierarchy slider moves."""
        entry = self._pending_model
        for (layer, data, holder), segmentation in zip(self._pending, segmentations):
            self._show_result(layer, entry, holder.get("image", data), segmentation)
        if len(segmentations) < len(self._pending):
            done = f" after {len(segmentations)} of {len(self._pending)} images" if segmentations else ""
            self.status.setText(f"Stopped{done}; the layers shown before were kept.")
        elif len(segmentations) > 1:
            self.status.setText(f"Segmented {len(segmentations)} images with {entry.name}. The slider moves "
                                f"the last one, {self.source_name}.")

    def _show_result(self, layer: Image, entry: ModelEntry, image_data: Any, segmentation: Any) -> None:
        new_source = layer.name != self.source_name
        self.segmentation = segmentation
        self.model_used = entry
        self.image_data = image_data
        self.spacing, self._translate = binned_placement(spacing_of(layer), layer.translate[-3:],
                                                         self.binning.currentData())
        self.source_name = layer.name
        self._image_layer = layer
        if new_source:  # a new image gets its own result layers; the old ones stay as they are
            self.labels_layer = None
            self._cluster_layers.forget()
        n_fine = int(segmentation.hierarchy.n_fine)
        self.hierarchy.follow(segmentation, keep_k=not new_source)
        self.apply_level()
        self.status.setText(f"Segmented {layer.name} into {n_fine} fine clusters with {entry.name}. "
                            "Move the slider to merge them.")
        show_info(f"Segmentation of {layer.name} done ({n_fine} fine clusters).")

    def _run_ended(self) -> None:
        self._pending = []
        self._pending_model = None
        self._current = ""

    # ------------------------------------------------------------------ the level shown

    @property
    def level(self) -> tuple[str, float]:
        """("k", k) or ("radius", r): the cut the hierarchy slider shows."""
        return self.hierarchy.level

    @property
    def cluster_layers(self) -> list[Labels]:
        """The per-cluster layers shown ("one layer per cluster"), in cluster order."""
        return self._cluster_layers.layers

    def apply_level(self, *_: Any) -> None:
        """Show the segmentation at the slider's level: one lookup in the core, layers updated in place."""
        segmentation = self.segmentation
        if segmentation is None:
            return
        mode, value = self.level
        lookup, tag = self.hierarchy.cut(segmentation.hierarchy)
        # The layer keeps the fine labels; a level is a colour table (O(n_fine), see _cluster_colormap).
        layer = self._show_labels(segmentation.fine_labels)
        view = level_view(segmentation, lookup, self.image_data, self.spacing)
        if view.error is not None:
            notify_error(view.error)
        layer.colormap = view.colormap
        layer.features = view.features
        layer.metadata["hypseg"] = {
            "mode": mode, "level": value, "n_fine": int(segmentation.hierarchy.n_fine),
            "model": str(self.model_used.path) if self.model_used and self.model_used.path else None,
            LOOKUP_KEY: [int(v) for v in lookup],
        }
        clusters = [int(c) for c in np.unique(lookup[1:])]
        self.hierarchy.level_info.setText(f"{len(clusters)} clusters ({tag})")
        if self.per_cluster.isChecked():   # the only per-voxel work of a move, and only when asked
            self._cluster_layers.show(segmentation.labels_from_lookup(lookup), clusters, tag, layer)
        self.poincare.set_level(cluster_colors(lookup[segmentation.sample_labels]), view.coarse_centroids,
                                cluster_colors(clusters))

    def _show_labels(self, labels: np.ndarray) -> Labels:
        layer = self.labels_layer
        if layer is not None and layer in self.viewer.layers:
            if layer.data is not labels:
                layer.data = labels
                layer.scale, layer.translate = self.spacing, self._translate
            return layer
        source = self._image_layer
        self.labels_layer = self.viewer.add_labels(
            labels,
            name=f"{self.source_name} segmentation",
            scale=self.spacing,
            translate=self._translate,
            units=tuple(source.units[-3:]),
            axis_labels=tuple(source.axis_labels[-3:]),
            metadata={"hypseg_volume": dict(source.metadata.get("hypseg_volume") or {})},
        )
        return self.labels_layer

    def _per_cluster_toggled(self, on: bool) -> None:
        if on:
            self.apply_level()
            return
        self._cluster_layers.remove()
