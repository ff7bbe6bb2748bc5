"""Live training curves: one line per loss term, redrawn at most a few times a second."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QVBoxLayout, QWidget
from superqt.utils import qthrottled

from ..core.progress import LOSS_TERMS
from ._common import BACKGROUND, FOREGROUND, GRID, style_axes



class LossPlot(QWidget):
    """Loss terms against the training step, on a log scale when every value is positive."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history: dict[str, tuple[list[int], list[float]]] = {}
        self.figure = Figure(figsize=(4, 2.4), facecolor=BACKGROUND, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.axes = self.figure.add_subplot()
        self.canvas.setToolTip("Each loss term of the training objective, per step (live).")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._redraw_soon = qthrottled(self.redraw, timeout=400, leading=True, parent=self)
        self.redraw()

    def clear(self) -> None:
        self.history.clear()
        self.redraw()

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            if name not in LOSS_TERMS:
                continue
            steps, values = self.history.setdefault(name, ([], []))
            steps.append(step)
            values.append(float(value))
        self._redraw_soon()

    def redraw(self) -> None:
        axes = self.axes
        axes.clear()
        style_axes(axes)
        axes.set_xlabel("step", fontsize=8)
        axes.grid(True, color=GRID, linewidth=0.5)
        positive = True
        for name, (steps, values) in self.history.items():
            axes.plot(steps, values, label=name, linewidth=1.2)
            positive = positive and all(v > 0 for v in values)
        if self.history:
            axes.set_yscale("log" if positive else "symlog")
            legend = axes.legend(fontsize=7, facecolor=BACKGROUND, edgecolor=GRID, labelcolor=FOREGROUND)
            legend.get_frame().set_alpha(0.8)
        else:
            axes.text(0.5, 0.5, "losses appear here during training", ha="center", va="center",
                      color=FOREGROUND, fontsize=8, transform=axes.transAxes)
        self.canvas.draw_idle()
