"""Boundaries of the fine clusters re-decided on the image at its own resolution.

Every voxel's latent point summarises a context of several voxels, smoothed further before
clustering, and the hand-made features include edge and spread measures that are high on both sides
of an edge; so the band of voxels along a boundary between two structures is decided on a mixture
of both, and the boundary sits a voxel or two off, to one side or the other depending on the
volume's contrasts. Here each voxel in that band (within `band` voxels of another fine cluster)
takes, among the fine clusters present around it, the one whose interior intensity best explains
its own lightly smoothed intensity, with a Potts term for agreeing with its 26 neighbours: a few
Jacobi sweeps of iterated conditional modes. Voxels away from every boundary, and the tree over the
fine clusters, are left as they were, so every cut of the tree still nests (docs/tuning.md,
sixteenth round).

The volume is walked in slabs along z with the halo each filter needs, so the memory is a few
slabs of floats beside the label arrays, whatever the volume's size.
"""

from __future__ import annotations

import threading
from collections.abc import Generator

import numpy as np
from scipy import ndimage

from .progress import Progress

BAND = 1
"""Voxels of a fine cluster within this distance (6-connected steps) of another are re-decided."""
SWEEPS = 2
"""Jacobi sweeps: the first moves the band, the second settles the voxels the first left alone."""
SMOOTHNESS = 0.1
"""Potts weight per disagreeing neighbour (of 26), against the unary's negative log-likelihood in
units of a cluster's intensity spread."""
SLAB = 32
"""Planes per slab by default."""
MIN_INTERIOR = 20
"""A cluster with fewer interior voxels is described by all of its voxels."""


def refine_boundaries(fine_labels: np.ndarray, image: np.ndarray, n_fine: int, sigma: float, *,
                      stop: threading.Event | None = None, slab: int = SLAB) -> Generator[Progress, None, np.ndarray | None]:
    """A new fine label map whose boundary bands are re-decided on `image` smoothed at `sigma` voxels.

    Fine id 0 (not labelled) is neither changed nor offered. Returns None if `stop` was set. The
    result does not depend on `slab` (planes per slab), only the memory does.
    """
    slabs = range(0, fine_labels.shape[0], slab)
    total = len(slabs) * (1 + SWEEPS)
    interior = np.zeros(fine_labels.shape, dtype=bool)
    sums = np.zeros((2, 3, n_fine + 1))   # (interior, all) x (count, sum, sum of squares) per fine id
    footprint = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), BAND)
    for index, start in enumerate(slabs):
        if stop is not None and stop.is_set():
            return None
        labels, stop_at, inner = _slab(fine_labels, start, slab, BAND)
        intensity = _smoothed_slab(image, start, stop_at, sigma)
        lowest = ndimage.minimum_filter(labels, footprint=footprint, mode="constant", cval=0)[inner]
        highest = ndimage.maximum_filter(labels, footprint=footprint, mode="constant", cval=0)[inner]
        own = labels[inner]
        core = (lowest == highest) & (own > 0)
        interior[start:stop_at] = core
        for row, chosen in enumerate((core, own > 0)):
            ids, values = own[chosen], intensity[chosen].astype(np.float64)
            sums[row] += [np.bincount(ids, minlength=n_fine + 1), np.bincount(ids, values, n_fine + 1),
                          np.bincount(ids, values ** 2, n_fine + 1)]
        yield Progress("cluster", index + 1, total, message="refining boundaries: intensity of each cluster")
    mean, spread = _intensity_models(sums)
    current = fine_labels
    for sweep in range(SWEEPS):
        refined = current.copy()
        for index, start in enumerate(slabs):
            if stop is not None and stop.is_set():
                return None
            labels, stop_at, inner = _slab(current, start, slab, 1)
            band = ~interior[start:stop_at] & (current[start:stop_at] > 0)
            if band.any():
                intensity = _smoothed_slab(image, start, stop_at, sigma)
                refined[start:stop_at][band] = _best_labels(labels, inner, band, intensity, mean, spread)
            yield Progress("cluster", len(slabs) * (1 + sweep) + index + 1, total,
                           message=f"refining boundaries: sweep {sweep + 1} of {SWEEPS}")
        current = refined
    return current


def _slab(labels: np.ndarray, start: int, planes: int, halo: int) -> tuple[np.ndarray, int, tuple[slice, ...]]:
    """Planes start..start+planes with `halo` planes either side where the volume has them; the end
    plane and the index of the slab itself inside the haloed block."""
    stop_at = min(start + planes, labels.shape[0])
    first = max(start - halo, 0)
    block = np.asarray(labels[first:min(stop_at + halo, labels.shape[0])])
    return block, stop_at, (slice(start - first, start - first + stop_at - start),)


def _smoothed_slab(image: np.ndarray, start: int, stop_at: int, sigma: float) -> np.ndarray:
    """image smoothed at sigma over the whole volume, planes start..stop_at (exact: a halo of the
    filter's radius is read around the slab)."""
    radius = int(4.0 * sigma + 0.5)
    first, last = max(start - radius, 0), min(stop_at + radius, image.shape[0])
    block = np.asarray(image[first:last], dtype=np.float32)
    if sigma > 0:
        block = ndimage.gaussian_filter(block, sigma)
    return block[start - first:start - first + stop_at - start]


def _intensity_models(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of each fine cluster's smoothed intensity, from its interior where that is
    big enough to describe it (a band of mixed voxels would blur it), else from all its voxels."""
    use_interior = sums[0, 0] >= MIN_INTERIOR
    count, total, squares = np.where(use_interior, sums[0], sums[1])
    count = np.maximum(count, 1)
    mean = total / count
    variance = np.maximum(squares / count - mean ** 2, 0.0)
    occupied = sums[1, 0] > 0
    overall = float(np.sqrt(np.average(variance[occupied], weights=sums[1, 0][occupied]))) if occupied.any() else 1.0
    spread = np.maximum(np.sqrt(variance), 1e-3 * max(overall, 1e-12))
    return mean, spread


def _best_labels(labels: np.ndarray, inner: tuple[slice, ...], band: np.ndarray, intensity: np.ndarray,
                 mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """For the band voxels of a slab: the fine id, among those in each voxel's 3x3x3 neighbourhood,
    of least cost (negative log-likelihood of its intensity plus SMOOTHNESS per disagreeing neighbour)."""
    values = intensity[band]
    best_cost = np.full(values.shape, np.inf)
    best = labels[inner][band].copy()
    for fine_id in np.unique(labels):
        if fine_id == 0:
            continue
        agreeing = ndimage.uniform_filter((labels == fine_id).astype(np.float32), 3, mode="nearest")[inner][band] * 27
        cost = (0.5 * ((values - mean[fine_id]) / spread[fine_id]) ** 2 + np.log(spread[fine_id])
                + SMOOTHNESS * (27 - agreeing))
        cost[agreeing < 0.5] = np.inf
        better = cost < best_cost
        best_cost[better] = cost[better]
        best[better] = fine_id
    return best
