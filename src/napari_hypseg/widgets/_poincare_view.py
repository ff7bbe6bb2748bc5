"""The latent space at a glance: sampled voxels' latent points in the Poincaré disk (first two
coordinates), coloured like the segmentation layer, recoloured as the hierarchy slider moves.

At each level a dashed circle marks the mean radius of the clusters' centres in the ball (all
coordinates), and the title gives it: whether coarse levels sit nearer the origin than fine ones
can be read off while the slider moves."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._common import BACKGROUND, FOREGROUND, GRID, style_axes


class PoincareView(QWidget):
    """Scatter of latent points; the unit circle (boundary of the ball) for hyperbolic models."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(3, 3), facecolor=BACKGROUND, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.canvas.setToolTip(
            "Latent points of sampled voxels (first two coordinates), coloured by their cluster at the "
            "current hierarchy level. In the Poincaré disk coarse structures sit near the centre and "
            "finer ones towards the circle.")
        self.axes = self.figure.add_subplot()
        self._scatter = None
        self._centroids = None
        self._radius_circle = None
        self._disk = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.show_points(np.zeros((0, 2)), np.zeros((0, 4)), disk=True)

    def show_points(self, points: np.ndarray, colors: np.ndarray, *, disk: bool) -> None:
        """Draw `points` (N, >=2) with RGBA `colors` (N, 4); `disk` draws the unit circle."""
        axes = self.axes
        axes.clear()
        self._disk = disk
        self._radius_circle = None
        style_axes(axes)
        axes.set_aspect("equal")
        axes.set_xticks([])
        axes.set_yticks([])
        xy = np.asarray(points, dtype=float)[:, :2] if len(points) else np.zeros((0, 2))
        if disk:
            axes.add_patch(Circle((0, 0), 1.0, fill=False, color=FOREGROUND, linewidth=0.8))
            axes.set_xlim(-1.05, 1.05)
            axes.set_ylim(-1.05, 1.05)
            axes.set_title("Poincaré disk", fontsize=8)
        else:
            axes.set_title("latent space (Euclidean)", fontsize=8)
            axes.grid(True, color=GRID, linewidth=0.5)
        self._scatter = axes.scatter(xy[:, 0], xy[:, 1], s=3, c=colors if len(xy) else None,
                                     linewidths=0)
        self._centroids = None
        if not disk and len(xy):
            axes.autoscale_view()
        self.canvas.draw_idle()

    def set_level(self, colors: np.ndarray, centroids: np.ndarray, centroid_colors: np.ndarray) -> None:
        """Recolour the points (same order as shown) and mark the clusters' centres at this level."""
        if self._scatter is not None and len(colors):
            self._scatter.set_facecolors(colors)
        if self._centroids is not None:
            self._centroids.remove()
        if self._radius_circle is not None:
            self._radius_circle.remove()
            self._radius_circle = None
        centroids = np.asarray(centroids, dtype=float)
        if self._disk and len(centroids):
            radius = float(np.linalg.norm(centroids, axis=1).mean())
            self._radius_circle = Circle((0, 0), radius, fill=False, color=FOREGROUND, linewidth=0.8, linestyle="--")
            self.axes.add_patch(self._radius_circle)
            self.axes.set_title(f"Poincaré disk: {len(centroids)} clusters, mean centre radius {radius:.2f}",
                                fontsize=8)
        xy = centroids[:, :2]
        self._centroids = self.axes.scatter(xy[:, 0], xy[:, 1], s=60, c=centroid_colors, marker="*",
                                            edgecolors=FOREGROUND, linewidths=0.6, zorder=3)
        self.canvas.draw_idle()

    @property
    def colors(self) -> np.ndarray:
        return self._scatter.get_facecolors() if self._scatter is not None else np.zeros((0, 4))
