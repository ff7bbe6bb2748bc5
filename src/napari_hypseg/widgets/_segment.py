"""Segment dock widget: image + model -> core `segment` in a worker -> one Labels layer whose
hierarchy level follows a slider (a lookup in the core, never a re-run of the model). With "every
selected image layer", one run segments each Image layer selected in the layer list in turn."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider
from superqt.utils import qthrottled, signals_blocked

from ..core.progress import format_metric
from ._common import (
    INT_MAX,
    MODEL_DIR,
    DeviceChooser,
    LayerPicker,
    notify_error,
    scrollable_layout,
    spacing_of,
    start_job,
    volume_of,
)
from .._layer_labels import LOOKUP_KEY
from ._binning import binned_placement, binned_segment_jobs, binning_field
from ._cluster_colormap import cluster_colors, level_view
from ._poincare_view import PoincareView
from ._session import ModelEntry, load_model_file, session_for

if TYPE_CHECKING:
    import napari

MODE_K = "number of clusters (k)"
MODE_RADIUS = "ball radius"
DEFAULT_K = 4


class SegmentWidget(QWidget):
    """Segment an image layer once, finely, then explore coarser levels with the hierarchy slider."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.worker = None
        self._stop = threading.Event()
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
        self.cluster_layers: list[Labels] = []

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
        self.load_button = QPushButton("Load model…")
        self.load_button.setToolTip("Load a model file (.pt) saved by napari-hypseg.")
        self.load_button.clicked.connect(self._browse_model)
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
        self._translate: tuple[float, ...] = (0.0, 0.0, 0.0)

        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip("Compute every voxel's latent point and cluster them "
                                       "(runs in the background).")
        self.segment_button.clicked.connect(self.start_segmentation)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the segmentation; layers already shown are kept.")
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.stop_button)
        self.status = QLabel("Choose an image and a model, then Segment.")
        self.status.setWordWrap(True)
        self.status.setToolTip("Progress of the current segmentation and what is shown.")

        # --- hierarchy explorer
        self.mode = QComboBox()
        self.mode.addItems([MODE_K, MODE_RADIUS])
        self.mode.setToolTip(
            "How to cut the cluster tree: into k clusters, or by a radius in the Poincaré ball "
            "(fine clusters whose common ancestor lies at least that far from the centre merge; "
            "small radius = coarse).")
        self.k_slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.k_slider.setRange(1, 16)
        self.k_slider.setValue(DEFAULT_K)
        self.k_slider.setToolTip("Number of clusters: 1 = everything together, n fine = the finest level.")
        self.radius_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.radius_slider.setDecimals(2)
        self.radius_slider.setRange(0.0, 1.0)
        self.radius_slider.setValue(0.5)
        self.radius_slider.setToolTip("Ball radius of the cut (see 'cut by').")
        self.sliders = QStackedWidget()
        self.sliders.addWidget(self.k_slider)
        self.sliders.addWidget(self.radius_slider)
        self.sliders.setFixedHeight(self.k_slider.sizeHint().height())
        self.per_cluster = QCheckBox("one layer per cluster")
        self.per_cluster.setToolTip("Also show each cluster of the current level as its own Labels "
                                    "layer (to hide, recolour or export clusters one by one).")
        self.level_info = QLabel("")
        self.level_info.setWordWrap(True)
        self.poincare = PoincareView()

        self._apply_soon = qthrottled(self.apply_level, timeout=80, leading=True, parent=self)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.k_slider.valueChanged.connect(self._apply_soon)
        self.radius_slider.valueChanged.connect(self._apply_soon)
        self.per_cluster.toggled.connect(self._per_cluster_toggled)

        form = QFormLayout()
        form.addRow("image", self.image.widget.native)
        form.addRow("", self.every_selected)
        form.addRow("model", model_row)
        form.addRow("fine clusters", self.n_fine)
        form.addRow("seed", self.seed)
        form.addRow("binning", self.binning)
        form.addRow("device", self.devices)
        self.hierarchy = QGroupBox("Hierarchy")
        hierarchy_form = QFormLayout(self.hierarchy)
        hierarchy_form.addRow("cut by", self.mode)
        hierarchy_form.addRow("level", self.sliders)
        hierarchy_form.addRow(self.per_cluster)
        hierarchy_form.addRow(self.level_info)
        hierarchy_form.addRow(self.poincare)
        layout = scrollable_layout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.hierarchy)
        layout.addStretch(1)

        self.session.models_changed.connect(self._models_changed)
        self._models_changed(None)
        self._set_running(False)

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

    def _browse_model(self) -> None:
        start = str(MODEL_DIR) if MODEL_DIR.exists() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Load a napari-hypseg model", start,
                                              "napari-hypseg models (*.pt);;All files (*)")
        if path:
            self.load_model(path)

    def load_model(self, path: str | Path) -> ModelEntry | None:
        """Load a model file and select it (what "Load model…" does after its dialog)."""
        return load_model_file(self.session, path)

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _set_running(self, running: bool) -> None:
        for widget in (self.model, self.load_button, self.n_fine, self.seed, self.devices, self.binning,
                       self.image.widget.native, self.every_selected):
            widget.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self._update_enabled()

    @property
    def images(self) -> list[Image]:
        """The image layers a run segments: the chosen one, or every selected Image layer (in list order)."""
        if not self.every_selected.isChecked():
            return [self.image.value] if self.image.value is not None else []
        selected = self.viewer.layers.selection
        return [layer for layer in self.viewer.layers
                if layer in selected and isinstance(layer, Image) and not layer.rgb]

    def _update_enabled(self, *_: Any) -> None:
        ready = bool(self.images) and self.selected_model is not None
        self.segment_button.setEnabled(ready and not self.running)
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
        self._stop = threading.Event()
        self._pending = [(layer, volume_of(layer), {}) for layer in layers]
        self._pending_model = entry
        names = ", ".join(layer.name for layer in layers)
        self.status.setText(f"Segmenting {names} with {entry.name} into {self.n_fine.value()} "
                            f"fine clusters on {self.devices.device}…")
        self.worker = start_job(
            binned_segment_jobs,
            entry.trained,
            [data for _, data, _ in self._pending],
            factor=self.binning.currentData(),
            holders=[holder for _, _, holder in self._pending],
            n_fine=self.n_fine.value(),
            device=self.devices.device,
            seed=self.seed.value(),
            owner=self,
            stop=self._stop,
            description="HypSeg segmentation",
            total=0,
            on_event=self._on_progress,
            on_result=self._on_segmented,
            on_finish=self._on_finished,
        )
        self._set_running(True)  # after the worker exists: `running` is read by the enabled states

    def stop(self) -> None:
        if self.running:
            self._stop.set()
            self.stop_button.setEnabled(False)
            self.status.setText(self.status.text() + "<br><b>Stopping…</b>")

    def _on_progress(self, event: Any) -> None:
        if event.stage == "images":   # a run over several layers moves on to the next one
            self._current = f"<b>{self._pending[event.step][0].name}</b> ({event.step + 1} of {event.total})<br>"
            return
        stage = {"infer": "latent points", "cluster": "clustering"}.get(event.stage, event.stage)
        parts = [f"<b>{stage}</b> {event.step}/{event.total}"]
        metrics = dict(event.metrics)
        parts += [format_metric(name, metrics[name]) for name in ("voxels_per_s", "eta_s") if name in metrics]
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
        if new_source:  # a new image gets its own result layer; the old one stays as it is
            self.labels_layer = None
            self.cluster_layers = []
        n_fine = int(segmentation.hierarchy.n_fine)
        low, high = (float(v) for v in segmentation.hierarchy.radius_range)
        with signals_blocked(self.k_slider), signals_blocked(self.radius_slider):
            self.k_slider.setRange(1, n_fine)
            if new_source:
                self.k_slider.setValue(min(DEFAULT_K, n_fine))
            self.radius_slider.setRange(low, high)
            self.radius_slider.setValue((low + high) / 2)
        self.hierarchy.setEnabled(True)
        disk = segmentation.hierarchy.geometry == "hyperbolic"
        self.radius_slider.setToolTip(
            "Ball radius of the cut: fine clusters whose common ancestor lies farther than this from the "
            "centre of the ball are merged; small = coarse, large = fine." if disk else
            "Distance threshold of the cut (Euclidean model): fine clusters closer than this are merged; "
            "small = fine, large = coarse.")
        self.poincare.show_points(segmentation.sample_points, np.zeros((len(segmentation.sample_points), 4)),
                                  disk=disk)
        self.apply_level()
        self.status.setText(f"Segmented {layer.name} into {n_fine} fine clusters with {entry.name}. "
                            "Move the slider to merge them.")
        show_info(f"Segmentation of {layer.name} done ({n_fine} fine clusters).")

    def _on_finished(self) -> None:
        self.worker = None
        self._pending = []
        self._pending_model = None
        self._current = ""
        self._set_running(False)

    # ------------------------------------------------------------------ hierarchy

    def _mode_changed(self, index: int) -> None:
        self.sliders.setCurrentIndex(index)
        self.apply_level()

    @property
    def level(self) -> tuple[str, float]:
        """("k", k) or ("radius", r): the cut the slider shows."""
        if self.mode.currentText() == MODE_K:
            return "k", self.k_slider.value()
        return "radius", float(self.radius_slider.value())

    def apply_level(self, *_: Any) -> None:
        """Show the segmentation at the slider's level: one lookup in the core, layers updated in place."""
        segmentation = self.segmentation
        if segmentation is None:
            return
        mode, value = self.level
        if mode == "k":
            lookup = segmentation.hierarchy.lookup_at_k(int(value))
            tag = f"k={int(value)}"
        else:
            lookup = segmentation.hierarchy.lookup_at_radius(value)
            tag = f"r={value:.2f}"
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
        self.level_info.setText(f"{len(clusters)} clusters ({tag})")
        if self.per_cluster.isChecked():   # the only per-voxel work of a move, and only when asked
            self._show_cluster_layers(segmentation.labels_from_lookup(lookup), clusters, tag, layer)
        self.poincare.set_level(_colors(layer, lookup[segmentation.sample_labels]),
                                view.coarse_centroids, _colors(layer, clusters))

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

    def _show_cluster_layers(self, labels: np.ndarray, clusters: list[int], tag: str, parent: Labels) -> None:
        """One binary Labels layer per cluster, coloured like the cluster in the main layer.

        Existing layers are updated in place and only the difference is added or removed: fewer
        layer-list changes, and never a removal and an addition in one event-loop turn, which makes
        vispy lose the new layers' textures ("Could not find texture with id ...", then a crash).
        """
        alive = [layer for layer in self.cluster_layers if layer in self.viewer.layers]
        for layer in alive[len(clusters):]:
            self.viewer.layers.remove(layer)
        alive = alive[:len(clusters)]
        colors = _colors(parent, clusters)
        layers = []
        for i, cluster in enumerate(clusters):
            mask = (labels == cluster).astype(np.uint8)
            name = f"cluster {cluster} ({tag})"
            colormap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: colors[i]})
            if i < len(alive):
                layer = alive[i]
                layer.data = mask
                layer.name = name
                layer.colormap = colormap
            else:
                layer = self.viewer.add_labels(
                    mask, name=name, colormap=colormap, scale=parent.scale, translate=parent.translate,
                    units=parent.units, axis_labels=parent.axis_labels,
                    metadata={"hypseg_volume": dict(parent.metadata.get("hypseg_volume") or {})},
                )
            layer.metadata["hypseg_cluster"] = cluster
            layers.append(layer)
        self.cluster_layers = layers

    def _per_cluster_toggled(self, on: bool) -> None:
        if on:
            self.apply_level()
            return
        for layer in self.cluster_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.cluster_layers = []



def _colors(layer: Labels, values: Any) -> np.ndarray:
    """RGBA colours of these coarse cluster ids, as the level's colour table draws them."""
    return cluster_colors(values)
