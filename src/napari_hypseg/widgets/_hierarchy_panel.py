"""The Segment widget's hierarchy panel: how the cluster tree is cut (into k clusters or at a ball
radius), the slider of that cut, the "one layer per cluster" switch, a line about the level and the
Poincaré-disk view. The panel holds the controls; the Segment widget applies the level to its layers
when `level_changed` fires."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QStackedWidget, QWidget
from superqt import QLabeledDoubleSlider, QLabeledSlider
from superqt.utils import qthrottled, signals_blocked

from ._poincare_view import PoincareView

MODE_K = "number of clusters (k)"
MODE_RADIUS = "ball radius"
DEFAULT_K = 4


class HierarchyPanel(QGroupBox):
    """The cut of the cluster tree a segmentation is shown at, chosen with a slider."""

    # Another cut was chosen; slider moves are throttled to one per 80 ms (each recolours the layers).
    level_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Hierarchy", parent)
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

        self._slider_moved = qthrottled(self._announce_level, timeout=80, leading=True, parent=self)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.k_slider.valueChanged.connect(self._slider_moved)
        self.radius_slider.valueChanged.connect(self._slider_moved)

        form = QFormLayout(self)
        form.addRow("cut by", self.mode)
        form.addRow("level", self.sliders)
        form.addRow(self.per_cluster)
        form.addRow(self.level_info)
        form.addRow(self.poincare)

    def _announce_level(self, *_: Any) -> None:
        self.level_changed.emit()

    def _mode_changed(self, index: int) -> None:
        self.sliders.setCurrentIndex(index)
        self.level_changed.emit()

    @property
    def level(self) -> tuple[str, float]:
        """("k", k) or ("radius", r): the cut the slider shows."""
        if self.mode.currentText() == MODE_K:
            return "k", self.k_slider.value()
        return "radius", float(self.radius_slider.value())

    def cut(self, hierarchy: Any) -> tuple[np.ndarray, str]:
        """The fine -> coarse lookup of the chosen level (from the core's tree) and its tag in layer
        names ("k=3", "r=0.42")."""
        mode, value = self.level
        if mode == "k":
            return hierarchy.lookup_at_k(int(value)), f"k={int(value)}"
        return hierarchy.lookup_at_radius(value), f"r={value:.2f}"

    def follow(self, segmentation: Any, *, keep_k: bool) -> None:
        """Fit the sliders to a new segmentation's tree (k kept for another run on the same image) and
        show its sampled latent points in the disk view."""
        hierarchy = segmentation.hierarchy
        n_fine = int(hierarchy.n_fine)
        low, high = (float(v) for v in hierarchy.radius_range)
        with signals_blocked(self.k_slider), signals_blocked(self.radius_slider):
            self.k_slider.setRange(1, n_fine)
            if not keep_k:
                self.k_slider.setValue(min(DEFAULT_K, n_fine))
            self.radius_slider.setRange(low, high)
            self.radius_slider.setValue((low + high) / 2)
        self.setEnabled(True)
        disk = hierarchy.geometry == "hyperbolic"
        self.radius_slider.setToolTip(
            "Ball radius of the cut: fine clusters whose common ancestor lies farther than this from the "
            "centre of the ball are merged; small = coarse, large = fine." if disk else
            "Distance threshold of the cut (Euclidean model): fine clusters closer than this are merged; "
            "small = fine, large = coarse.")
        points = segmentation.sample_points
        self.poincare.show_points(points, np.zeros((len(points), 4)), disk=disk)
