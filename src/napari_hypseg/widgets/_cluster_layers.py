"""The Segment widget's "one layer per cluster": a binary Labels layer for each cluster of the level
shown, coloured like that cluster in the segmentation layer, kept in step with the hierarchy slider."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

from ._cluster_colormap import cluster_colors


class ClusterLayers:
    """The per-cluster layers of the current segmentation layer, in cluster order."""

    def __init__(self, viewer: Any) -> None:
        self._viewer = viewer
        self.layers: list[Labels] = []

    def show(self, labels: np.ndarray, clusters: list[int], tag: str, parent: Labels) -> None:
        """One layer per cluster of `labels` (coarse ids), named with the level's `tag`, placed on `parent`.

        Existing layers are updated in place and only the difference is added or removed: fewer
        layer-list changes, and never a removal and an addition in one event-loop turn, which makes
        vispy lose the new layers' textures ("Could not find texture with id ...", then a crash).
        """
        viewer = self._viewer
        alive = [layer for layer in self.layers if layer in viewer.layers]
        for layer in alive[len(clusters):]:
            viewer.layers.remove(layer)
        alive = alive[:len(clusters)]
        colors = cluster_colors(clusters)
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
                layer = viewer.add_labels(
                    mask, name=name, colormap=colormap, scale=parent.scale, translate=parent.translate,
                    units=parent.units, axis_labels=parent.axis_labels,
                    metadata={"hypseg_volume": dict(parent.metadata.get("hypseg_volume") or {})},
                )
            layer.metadata["hypseg_cluster"] = cluster
            layers.append(layer)
        self.layers = layers

    def remove(self) -> None:
        """Take the layers out of the viewer (the switch was turned off)."""
        for layer in self.layers:
            if layer in self._viewer.layers:
                self._viewer.layers.remove(layer)
        self.layers = []

    def forget(self) -> None:
        """Leave the layers in the viewer as they are: they belong to an earlier image's segmentation."""
        self.layers = []
