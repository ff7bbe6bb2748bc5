"""Coarse labels from fine ones through a table: how every level of the hierarchy is read.

One place for the chunked `table[fine_labels]` that a Segmentation, the napari writer and the
Export widget all apply. Only numpy: the writer uses it without importing torch.
"""

from __future__ import annotations

import numpy as np

CHUNK_VOXELS = 1 << 18
"""Voxels per np.take call: stays in cache, about twice as fast as one call over the volume."""


def apply_lookup(labels, lookup, dtype=None) -> np.ndarray:
    """lookup[labels] chunk by chunk, as `dtype` (default: the smallest unsigned type that holds
    the largest value of the table)."""
    labels = np.asarray(labels)
    lookup = np.asarray(lookup)
    if dtype is None:
        dtype = np.uint8 if int(lookup.max(initial=0)) <= np.iinfo(np.uint8).max else np.uint16
    table = lookup.astype(dtype)
    out = np.empty(labels.shape, dtype=dtype)
    source, target = labels.reshape(-1), out.reshape(-1)
    for start in range(0, source.size, CHUNK_VOXELS):
        np.take(table, source[start:start + CHUNK_VOXELS], out=target[start:start + CHUNK_VOXELS])
    return out
