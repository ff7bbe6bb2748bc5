"""Show a hierarchy level by recolouring fine labels: the Labels layer keeps the fine ids, and a
level is a DirectLabelColormap giving each fine id the colour of its coarse cluster.

A slider move therefore builds a colour table of n_fine entries and a features table of n_fine rows;
it never touches the voxels. Coarse clusters get the colours napari's default label colormap gives
their ids, so a level looks as a Labels layer of the coarse labels would.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from napari.utils.colormaps import DirectLabelColormap, label_colormap

TRANSPARENT = np.zeros(4, dtype=np.float32)


@lru_cache(maxsize=1)
def _default_colormap():
    return label_colormap()


def cluster_colors(values: Any) -> np.ndarray:
    """RGBA (float32) of coarse cluster ids, as napari's default label colormap draws them."""
    return np.asarray(_default_colormap().map(np.asarray(values)), dtype=np.float32)


def level_colormap(lookup: np.ndarray) -> DirectLabelColormap:
    """Fine id i (1..n_fine) drawn in the colour of coarse cluster lookup[i]; 0 (outside) transparent."""
    lookup = np.asarray(lookup)
    colors = cluster_colors(lookup[1:])
    color_dict: dict[Any, Any] = {None: TRANSPARENT, 0: TRANSPARENT}
    color_dict.update({int(fine): color for fine, color in zip(range(1, len(lookup)), colors)})
    return DirectLabelColormap(color_dict=color_dict)


def fine_features(table: dict[str, np.ndarray], lookup: np.ndarray) -> dict[str, np.ndarray]:
    """A features table with one row per fine id (napari's "index" column = the layer's values), each
    row holding its coarse cluster's features: hovering a voxel shows the cluster of the level."""
    if not table:
        return {}
    lookup = np.asarray(lookup)
    rows = lookup[1:] - 1                              # coarse label c is row c - 1 of `table`
    fine = {key: np.asarray(values)[rows] for key, values in table.items()}
    return {"index": np.arange(1, len(lookup), dtype=np.int64), **fine}


@dataclass
class LevelView:
    """What the widget shows for one level: colour table, features table, coarse centroids."""

    colormap: DirectLabelColormap
    features: dict[str, np.ndarray]
    coarse_centroids: np.ndarray
    error: Exception | None = None


_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def level_view(segmentation: Any, lookup: np.ndarray, image: Any, spacing: Any) -> LevelView:
    """The LevelView of a cut, computed once per segmentation, cut, image and spacing: going back to a
    level costs a dictionary lookup (coarse centroids are Fréchet means, the slow part of a first visit)."""
    lookup = np.asarray(lookup)
    views = _VIEWS.setdefault(segmentation, {})
    key = (lookup.tobytes(), id(image), tuple(float(s) for s in spacing))
    view = views.get(key)
    if view is None:
        from ..core.errors import HypsegError

        centroids = segmentation.hierarchy.coarse_centroids(lookup)
        error = None
        try:
            table = segmentation.features(lookup, image, spacing)
        except HypsegError as exc:   # e.g. the image's data were replaced since segmenting
            table, error = {}, exc
        view = LevelView(level_colormap(lookup), fine_features(table, lookup), centroids, error)
        if error is None:
            views[key] = view
    return view
