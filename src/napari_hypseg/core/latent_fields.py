"""Fields over the volume that the clustering works on: the latent field (dense inference, then a
Gaussian smoothing in the tangent space at the origin), each fine cluster's latents averaged over
wider neighbourhoods and the share of each fine cluster around it (the coarse stages of the tree),
and the latents joined with hand-made image features (the fine clusters when image_features is on).
segmentation.segment puts them together.

All of them run in slabs of Z, so a memory-mapped field of a large tomogram is never held whole.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np

from .lookup import CHUNK_VOXELS
from .pages import release_pages
from .parallel import gaussian_filter, one_ahead
from .progress import Progress, voxel_rate


def smooth_latent_field(latents: np.ndarray, sigma: float, *, geometry: str = "hyperbolic",
                        curvature: float = 1.0, slab_voxels: int = CHUNK_VOXELS) -> np.ndarray:
    """Gaussian-smooth a (Z, Y, X, d) latent field in place (sigma in voxels; 0 = unchanged).

    Hyperbolic fields are smoothed in the tangent space at the origin (log_0, filter, exp_0), so the
    result stays in the ball; Euclidean ones directly. Memory-safe for a memmapped field: the maps
    run over slabs of Z, the filter over one channel at a time (one (Z, Y, X) float32 array in RAM).
    """
    import torch

    from . import manifold

    sigma = float(sigma)
    if sigma <= 0:
        return latents
    hyperbolic = geometry == "hyperbolic"
    rows = max(1, slab_voxels // max(1, math.prod(latents.shape[1:3])))

    def remap(fn):
        for start in range(0, latents.shape[0], rows):
            slab = torch.from_numpy(np.ascontiguousarray(latents[start:start + rows], dtype=np.float32))
            latents[start:start + rows] = fn(slab, curvature=curvature).numpy()
            release_pages(latents)

    if hyperbolic:
        remap(manifold.logmap0)
    values = np.empty(latents.shape[:3], dtype=np.float32)      # one channel, filtered in place
    for channel in range(latents.shape[-1]):
        for start in range(0, latents.shape[0], rows):
            values[start:start + rows] = latents[start:start + rows, ..., channel]
            release_pages(latents)
        gaussian_filter(values, sigma, mode="nearest")
        for start in range(0, latents.shape[0], rows):
            latents[start:start + rows, ..., channel] = values[start:start + rows]
            release_pages(latents)
    if hyperbolic:
        remap(manifold.expmap0)
    if isinstance(latents, np.memmap):
        latents.flush()
    return latents


def _tangent_slabs(latents: np.ndarray, rows: int, geometry: str, curvature: float):
    """(start, slab) over slabs of `rows` Z planes: float32 latents, mapped to the tangent space at the
    origin for a hyperbolic field (where averages and standardisation are taken)."""
    import torch

    from . import manifold

    for start in range(0, latents.shape[0], rows):
        slab = torch.from_numpy(np.ascontiguousarray(latents[start:start + rows], dtype=np.float32))
        release_pages(latents)
        if geometry == "hyperbolic":
            slab = manifold.logmap0(slab, curvature=curvature)
        yield start, slab.numpy()


def regional_descriptors(latents: np.ndarray, fine_labels: np.ndarray, fine_counts: np.ndarray, sigmas, *,
                         geometry: str = "hyperbolic", curvature: float = 1.0,
                         slab_voxels: int = CHUNK_VOXELS) -> list[np.ndarray]:
    """For each sigma, every fine cluster's latents averaged over a Gaussian neighbourhood of sigma
    voxels around its voxels: (n_fine, d) points (of the ball, for a hyperbolic field) per sigma.
    `fine_counts`: voxels per fine id (index 0 unused), as Segmentation.fine_counts.

    They describe what surrounds a cluster, not only what it is: two clusters of one object, or an
    organelle and the cell around it, share their surroundings even where their own latents differ,
    which is what coarse levels of the hierarchy should be decided on. Averages are taken in the
    tangent space at the origin; one channel of the field is held in RAM at a time.
    """
    import torch

    from . import manifold

    hyperbolic = geometry == "hyperbolic"
    rows = max(1, slab_voxels // max(1, math.prod(latents.shape[1:3])))
    n_fine = len(fine_counts) - 1
    counts = np.maximum(np.asarray(fine_counts)[1:], 1)
    sums = np.zeros((len(sigmas), n_fine, latents.shape[-1]))
    for channel in range(latents.shape[-1]):
        tangent = np.empty(latents.shape[:3], dtype=np.float32)
        for start, slab in _tangent_slabs(latents, rows, geometry, curvature):
            tangent[start:start + rows] = slab[..., channel]
        for index, sigma in enumerate(sigmas):
            smoothed = gaussian_filter(tangent.copy(), float(sigma), mode="nearest") if sigma > 0 else tangent
            for start in range(0, latents.shape[0], rows):
                sums[index, :, channel] += np.bincount(fine_labels[start:start + rows].reshape(-1),
                                                       weights=smoothed[start:start + rows].reshape(-1),
                                                       minlength=n_fine + 1)[1:]
    means = sums / counts[None, :, None]
    if not hyperbolic:
        return list(means)
    return [manifold.expmap0(torch.from_numpy(m), curvature=curvature).numpy() for m in means]


def neighbour_descriptors(fine_labels: np.ndarray, fine_counts: np.ndarray, sigma: float, *,
                          subsample_above: int = 2**24, slab_voxels: int = CHUNK_VOXELS) -> np.ndarray:
    """(n_fine, n_fine) Euclidean descriptors of which fine clusters lie around each one: row i is
    the square root of the share of cluster j in a Gaussian neighbourhood of sigma voxels around
    cluster i's voxels, averaged over them (rows sum to 1 before the root: Hellinger geometry, where
    Euclidean distance compares distributions).

    Where regional_descriptors averages what the surroundings look like, this says whose they are:
    an organelle whose neighbourhood is mostly the cell's clusters goes with the cell, however
    different its texture (docs/tuning.md, ninth round). The shares vary slowly, so in a volume of
    more than `subsample_above` voxels and for sigma >= 6 they are taken on every step-th voxel along
    each axis (step = sigma // 3, the Gaussian scaled to match; on the 50³ validation volumes that
    grid gave the same tree cuts in 37 of 40), unless it would miss a cluster. One (Z, Y, X) float32
    array of that grid in RAM.
    """
    n_fine = len(fine_counts) - 1
    present = np.asarray(fine_counts)[1:] > 0
    step = max(1, int(float(sigma) // 3)) if fine_labels.size > subsample_above else 1
    grid, counts = fine_labels, np.asarray(fine_counts)
    if step > 1:
        coarse = np.asarray(fine_labels[::step, ::step, ::step])
        coarse_counts = np.bincount(coarse.reshape(-1), minlength=n_fine + 1)
        if np.all(coarse_counts[1:][present] > 0):
            grid, counts = coarse, coarse_counts
        else:
            step = 1
    rows = max(1, slab_voxels // max(1, math.prod(grid.shape[1:])))
    shares = np.zeros((n_fine, n_fine))
    indicator = np.empty(grid.shape, dtype=np.float32)
    for neighbour in np.flatnonzero(present) + 1:
        for start in range(0, grid.shape[0], rows):
            indicator[start:start + rows] = grid[start:start + rows] == neighbour
        gaussian_filter(indicator, float(sigma) / step, mode="nearest")
        for start in range(0, grid.shape[0], rows):
            shares[:, neighbour - 1] += np.bincount(np.asarray(grid[start:start + rows]).reshape(-1),
                                                    weights=indicator[start:start + rows].reshape(-1),
                                                    minlength=n_fine + 1)[1:]
    shares /= np.maximum(counts[1:], 1)[:, None]
    return np.sqrt(np.clip(shares, 0.0, None))


class JointFeatures:
    """Each voxel's latent (in the tangent space at the origin for a hyperbolic field) beside the six
    hand-made columns of baselines.multiscale_columns, standardised over the volume and the hand-made
    ones times `weight`: what the fine clusters are found in when the configuration's image_features
    is on. `latent_scaling` "channel" standardises each latent channel on its own, "shared" divides
    them all by the root mean square of their spreads (see HypsegConfig.latent_scaling).

    Never stored whole (4 (d + 6) bytes per voxel, 11 GB for a 1k x 1k x 300 tomogram): `measure`
    runs over the volume once for each channel's mean and spread and gathers the rows the clusters
    are fitted on, then `slabs` runs over it again to label every voxel. Each pass computes the
    columns slab by slab (baselines.multiscale_column_slabs), a slab of Z planes at a time.
    """

    def __init__(self, latents: np.ndarray, image: np.ndarray, weight: float, *, geometry: str = "hyperbolic",
                 curvature: float = 1.0, latent_scaling: str = "channel", slab_voxels: int = CHUNK_VOXELS):
        self.latents, self.image, self.weight = latents, image, float(weight)
        self.latent_scaling = latent_scaling
        self.geometry, self.curvature = geometry, curvature
        self.n_features = latents.shape[-1] + 6
        self.planes = max(1, slab_voxels // max(1, math.prod(latents.shape[1:3])))
        self.n_slabs = -(-latents.shape[0] // self.planes)
        self.mean = self.scale = None

    def _raw_slabs(self):
        """(first row, (rows, d + 6) float32 rows of a slab, not yet standardised)."""
        from .baselines import multiscale_column_slabs

        plane = math.prod(self.latents.shape[1:3])
        pairs = zip(_tangent_slabs(self.latents, self.planes, self.geometry, self.curvature),
                    multiscale_column_slabs(self.image, self.planes))
        for (start, tangent), (_, columns) in pairs:
            yield start * plane, np.concatenate([tangent, columns], axis=-1).reshape(-1, self.n_features)

    def measure(self, sample_rows: np.ndarray, stop: threading.Event | None = None
                ) -> Generator[Progress, None, np.ndarray | None]:
        """First pass: each channel's mean and spread over the volume, and the standardised rows
        numbered `sample_rows` (sorted), which it returns (None if `stop` was set). Yields Progress
        per slab."""
        sums = np.zeros(self.n_features)
        squares = np.zeros(self.n_features)
        sample = np.empty((len(sample_rows), self.n_features), dtype=np.float32)
        count = math.prod(self.latents.shape[:3])
        began = time.monotonic()
        for index, (first, rows) in enumerate(one_ahead(self._raw_slabs())):
            if stop is not None and stop.is_set():
                return None
            block = rows.astype(np.float64)
            sums += block.sum(0)
            squares += (block * block).sum(0)
            low, high = np.searchsorted(sample_rows, [first, first + len(rows)])
            sample[low:high] = rows[sample_rows[low:high] - first]
            yield Progress("cluster", index + 1, self.n_slabs, message="measuring the image features",
                           metrics=voxel_rate(first + len(rows), count, time.monotonic() - began))
        self.mean = sums / count
        spread = np.sqrt(np.maximum(squares / count - self.mean * self.mean, 0.0)) + 1e-8
        d = self.n_features - 6
        if self.latent_scaling == "shared":
            spread[:d] = np.sqrt(np.mean(spread[:d] ** 2))
        self.scale = np.concatenate([np.ones(d), np.full(6, self.weight)]) / spread
        return self._standardised(sample)

    def _standardised(self, rows: np.ndarray) -> np.ndarray:
        """In float32 throughout: float64 statistics would promote every slab to a float64 copy."""
        rows = rows - self.mean.astype(np.float32)
        rows *= self.scale.astype(np.float32)
        return rows

    def slabs(self):
        """Second pass (after measure): (first row, standardised (rows, d + 6) float32) per slab."""
        if self.mean is None:
            raise RuntimeError("JointFeatures.measure must run before slabs")
        for first, rows in one_ahead(self._raw_slabs()):
            yield first, self._standardised(rows)


def clustering_field(trained, image, *, context: int | None = None, device="cpu", tile: int = 64,
                     stop: threading.Event | None = None, latents_out: str | Path | None = None,
                     latent_smoothing: float | None = None, precision: str = "auto",
                     inference_stride: int | None = None) -> Generator[Progress, None, np.ndarray | None]:
    """The latent field that is clustered: dense inference of `image` (a checked volume array) at the
    model's `inference_stride` (or this one), then the model's spatial smoothing (or `latent_smoothing`;
    both checked by the configuration).

    Yields inference Progress; returns the (Z, Y, X, d) field, or None if `stop` was set.
    """
    from .inference import latent_field

    config = trained.config
    settings = config.with_overrides(latent_smoothing=latent_smoothing, inference_stride=inference_stride)
    smoothing = settings.latent_smoothing
    latents = yield from latent_field(trained.model, image, trained.stats, context=context, tile=tile,
                                      device=device, out=latents_out, stop=stop, precision=precision,
                                      stride=settings.inference_stride)
    if latents is None or smoothing <= 0:
        return latents
    if not latents.flags.writeable:
        latents = np.array(latents)
    # Minutes on a tomogram: say so rather than fall silent between inference and clustering.
    yield Progress("cluster", 0, 1, message=f"smoothing the latent field (sigma {smoothing:g} voxels)")
    return smooth_latent_field(latents, smoothing, geometry=config.geometry, curvature=float(config.curvature))
