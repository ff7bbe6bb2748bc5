"""The labels a Labels layer stands for, when it shows a hierarchy level through its colormap.

The Segment widget keeps the fine labels in its Labels layer once and shows a level of the hierarchy
by colouring each fine id with the colour of its coarse cluster, so a slider move changes only a
colour table (O(number of fine clusters), whatever the volume's size). The fine id -> coarse label
table of the level shown is in ``layer.metadata["hypseg"]["fine_to_coarse"]``; whatever writes or
measures the layer's labels (the writer, the Export widget) applies it here, only when asked.
No Qt, no napari: the npe2 writer uses it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.lookup import apply_lookup

LOOKUP_KEY = "fine_to_coarse"


def level_lookup(metadata: dict | None) -> np.ndarray | None:
    """The fine id -> coarse label table recorded in a layer's metadata, or None."""
    table = ((metadata or {}).get("hypseg") or {}).get(LOOKUP_KEY)
    return None if table is None else np.asarray(table)


def coarse_labels(data: Any, attributes: dict) -> tuple[Any, dict]:
    """(labels, attributes) of a layer as shown: the level's lookup applied, and the attributes
    without it (so it is never applied twice). Layers without a lookup come back unchanged."""
    metadata = attributes.get("metadata") or {}
    lookup = level_lookup(metadata)
    if lookup is None:
        return data, attributes
    hypseg = {key: value for key, value in metadata["hypseg"].items() if key != LOOKUP_KEY}
    return apply_lookup(data, lookup), {**attributes, "metadata": {**metadata, "hypseg": hypseg}}


def displayed_labels(layer: Any) -> np.ndarray:
    """The labels a Labels layer shows (its data, through its level's lookup if it has one)."""
    return coarse_labels(layer.data, {"metadata": layer.metadata})[0]
