"""The latent space at a glance: sampled voxels' latent points in the Poincaré disk (first two
coordinates), coloured like the segmentation layer, recoloured as the hierarchy slider moves.

At each level a dashed circle marks the mean radius of the clusters' centres in the ball (all
coordinates), and the title gives it: whether coarse levels sit nearer the origin than fine ones
can be read off while the slider moves.

A slider move redraws this figure, so it is kept cheap: the points are one marker line per colour
(Agg stamps one rendered marker, several times faster than a scatter with a colour per point), the
margins are fixed (no layout pass per draw), and the title is a Qt label above the figure, not text in
it (Agg renders a title's glyphs afresh on every draw, half the cost of a draw)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ._common import BACKGROUND, FOREGROUND, GRID, style_axes

POINT_SIZE = 1.7   # marker diameter in points (the area of a scatter of s=3)


class PoincareView(QWidget):
    """Scatter of latent points; the unit circle (boundary of the ball) for hyperbolic models."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(3, 3), facecolor=BACKGROUND)
        self.figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.98)
        self.title = QLabel()
        self.title.setStyleSheet(f"color: {FOREGROUND}; font-size: 8pt;")
        self.title.setWordWrap(True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.canvas.setToolTip(
            "Latent points of sampled voxels (first two coordinates), coloured by their cluster at the "
            "current hierarchy level. In the Poincaré disk coarse structures sit near the centre and "
            "finer ones towards the circle.")
        self.axes = self.figure.add_subplot()
        self._xy = np.zeros((0, 2))
        self._groups: list = []                        # one marker line per colour
        self._group_of = np.zeros(0, dtype=np.intp)   # each point's line
        self._centroids = None
        self._radius_circle = None
        self._disk = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
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
            self.title.setText("Poincaré disk")
        else:
            self.title.setText("latent space (Euclidean)")
            axes.grid(True, color=GRID, linewidth=0.5)
        self._xy, self._groups = xy, []   # axes.clear() removed the old lines
        self._draw_points(colors)
        self._centroids = None
        if not disk and len(xy):
            axes.autoscale_view()
        self.canvas.draw_idle()

    def set_level(self, colors: np.ndarray, centroids: np.ndarray, centroid_colors: np.ndarray) -> None:
        """Recolour the points (same order as shown) and mark the clusters' centres at this level.
        The centres' markers and the radius circle are artists kept from level to level and updated in
        place (adding a patch or a scatter per move costs more than the new data)."""
        if len(colors):
            self._draw_points(colors)
        centroids = np.asarray(centroids, dtype=float)
        if self._disk and len(centroids):
            radius = float(np.linalg.norm(centroids, axis=1).mean())
            if self._radius_circle is None:
                self._radius_circle = Circle((0, 0), radius, fill=False, color=FOREGROUND, linewidth=0.8,
                                             linestyle="--")
                self.axes.add_patch(self._radius_circle)
            self._radius_circle.set_radius(radius)
            self.title.setText(f"Poincaré disk: {len(centroids)} clusters, mean centre radius {radius:.2f}")
        xy = centroids[:, :2] if len(centroids) else np.zeros((0, 2))
        if self._centroids is None:
            self._centroids = self.axes.scatter(xy[:, 0], xy[:, 1], s=60, c=centroid_colors, marker="*",
                                                edgecolors=FOREGROUND, linewidths=0.6, zorder=3)
        else:
            self._centroids.set_offsets(xy)
            self._centroids.set_facecolor(centroid_colors)
        self.canvas.draw_idle()

    def _draw_points(self, colors: np.ndarray) -> None:
        """The points in `colors` (one RGBA per point), as one marker line per distinct colour; the lines
        of the last level are reused (a new line costs more than new data). Colours are grouped by an
        8-bit-per-channel key, a one-dimensional unique (rows of floats would be sorted as records)."""
        colors = np.asarray(colors, dtype=float).reshape(len(self._xy), 4)
        channels = np.clip(np.round(colors * 255), 0, 255).astype(np.uint32)
        keys = channels[:, 0] << 24 | channels[:, 1] << 16 | channels[:, 2] << 8 | channels[:, 3]
        _, first, which = np.unique(keys, return_index=True, return_inverse=True)
        palette = colors[first]
        self._group_of = which.reshape(-1)
        order = np.argsort(self._group_of, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(self._group_of, minlength=len(palette)))[:-1])
        while len(self._groups) > len(palette):
            self._groups.pop().remove()
        while len(self._groups) < len(palette):
            line = Line2D([], [], linestyle="none", marker="o", markersize=POINT_SIZE, markeredgewidth=0)
            self._groups.append(self.axes.add_line(line))
        for line, color, members in zip(self._groups, palette, groups):
            line.set_data(self._xy[members, 0], self._xy[members, 1])
            line.set_color(color)

    @property
    def points(self) -> np.ndarray:
        """The (x, y) each point is drawn at, in the order given."""
        drawn = np.zeros((len(self._group_of), 2))
        for i, line in enumerate(self._groups):
            drawn[self._group_of == i] = line.get_xydata()
        return drawn

    @property
    def colors(self) -> np.ndarray:
        """The RGBA each point is drawn in, in the order given."""
        drawn = np.array([to_rgba(line.get_color()) for line in self._groups]).reshape(-1, 4)
        return drawn[self._group_of]
