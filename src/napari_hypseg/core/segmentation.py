"""Volume + trained model -> fine clusters -> a hierarchy of coarser segmentations (method.md §7).

`segment` computes every voxel's latent point (inference.latent_field), smooths that field spatially
(a Gaussian of `config.latent_smoothing` voxels, see smooth_latent_field), clusters a sample of them
finely with k-means in the model's geometry (Poincaré ball or Euclidean), labels every voxel by its
nearest centroid, and builds the ClusterHierarchy over the fine clusters. A `Segmentation` then
answers any level -- k clusters or a ball radius -- with one table lookup per voxel.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from numbers import Integral
from pathlib import Path

import numpy as np

from .errors import ConfigError, VolumeError
from .hierarchy import LINKAGES, ClusterHierarchy
from .lookup import CHUNK_VOXELS, apply_lookup
from .progress import Progress
from .volume_io import as_volume_array

MAX_FINE_CLUSTERS = 1024
SAMPLE_POINTS = 5000
"""Latent points kept for the Poincaré-disk view."""


@dataclass(eq=False)
class Segmentation:
    """Fine clusters of one volume and the tree over them.

    fine_labels: (Z, Y, X) uint16, fine ids 1..n_fine, numbered by size (1 = largest in the fit sample).
    centroids: (n_fine, d), row i = centroid of fine id i + 1 (points of the ball if hyperbolic).
    fine_counts: (n_fine + 1,) voxels per fine id (index 0 unused).
    sample_points / sample_labels: a random sample of voxels' latent points and their fine ids.
    """

    fine_labels: np.ndarray
    hierarchy: ClusterHierarchy
    centroids: np.ndarray
    fine_counts: np.ndarray
    sample_points: np.ndarray
    sample_labels: np.ndarray
    geometry: str = "hyperbolic"
    curvature: float = 1.0
    context: int | None = None
    _intensity_sums: tuple = field(default=(None, None), repr=False)

    @property
    def n_fine(self) -> int:
        return self.hierarchy.n_fine

    @property
    def label_dtype(self) -> np.dtype:
        """uint8 when every cut fits in it, else uint16: the same for every level of this volume."""
        return np.dtype(np.uint8 if self.n_fine <= np.iinfo(np.uint8).max else np.uint16)

    def with_linkage(self, linkage: str) -> Segmentation:
        """The same fine clusters under another tree (see hierarchy.LINKAGES); no re-clustering."""
        hierarchy = ClusterHierarchy.from_centroids(self.centroids, geometry=self.geometry, curvature=self.curvature,
                                                    weights=self.fine_counts[1:], linkage=linkage,
                                                    coarser=self.hierarchy.coarser)
        return replace(self, hierarchy=hierarchy, _intensity_sums=(None, None))

    def labels_at_k(self, k: int) -> np.ndarray:
        """(Z, Y, X) coarse labels 1..k."""
        return self.labels_from_lookup(self.hierarchy.lookup_at_k(k))

    def labels_at_radius(self, radius: float) -> np.ndarray:
        """(Z, Y, X) coarse labels of the cut at this ball radius (see ClusterHierarchy)."""
        return self.labels_from_lookup(self.hierarchy.lookup_at_radius(radius))

    def labels_from_lookup(self, lookup: np.ndarray) -> np.ndarray:
        """lookup[fine_labels], in cache-sized chunks (about 20 ms for 256³ voxels)."""
        return apply_lookup(self.fine_labels, lookup, self.label_dtype)

    def features(self, lookup: np.ndarray, image, spacing=(1.0, 1.0, 1.0)) -> dict[str, np.ndarray]:
        """One row per coarse label of a cut: label, parent (its id in the cut with one cluster less,
        0 at k = 1), voxel_count, physical_volume (count x voxel volume, in the spacing's unit³),
        mean_intensity (of `image`, NaN for an empty cluster), centroid_radius (norm of the coarse
        centroid: its radius in the Poincaré ball, where coarse structures sit near 0)."""
        lookup = np.asarray(lookup)
        parents = self.hierarchy.coarser_parents(lookup)     # also checks the lookup is a cut of this tree
        k = len(parents) - 1
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ConfigError(f"spacing must be three positive numbers (z, y, x), got {spacing}")
        counts = np.bincount(lookup[1:], weights=self.fine_counts[1:], minlength=k + 1)[1:]
        sums = np.bincount(lookup[1:], weights=self._fine_intensity_sums(image)[1:], minlength=k + 1)[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_intensity = np.where(counts > 0, sums / counts, np.nan)
        return {
            "label": np.arange(1, k + 1, dtype=np.int32),
            "parent": parents[1:].astype(np.int32),
            "voxel_count": counts.astype(np.int64),
            "physical_volume": counts * math.prod(spacing),
            "mean_intensity": mean_intensity,
            "centroid_radius": np.linalg.norm(self.hierarchy.coarse_centroids(lookup), axis=1),
        }

    def _fine_intensity_sums(self, image) -> np.ndarray:
        """Sum of intensities per fine id; cached for the last image (a slider asks again and again)."""
        cached_image, sums = self._intensity_sums
        if cached_image is not None and cached_image() is image:
            return sums
        volume = np.asarray(image)
        if volume.shape != self.fine_labels.shape:
            raise VolumeError(f"the image has shape {volume.shape} but the segmentation {self.fine_labels.shape}; "
                              "give the image that was segmented")
        sums = np.zeros(self.n_fine + 1)
        rows = max(1, CHUNK_VOXELS // max(1, math.prod(volume.shape[1:])))
        for start in range(0, volume.shape[0], rows):
            sums += np.bincount(self.fine_labels[start:start + rows].ravel(),
                                weights=np.asarray(volume[start:start + rows], dtype=np.float64).ravel(),
                                minlength=self.n_fine + 1)
        try:
            self._intensity_sums = (weakref.ref(image), sums)
        except TypeError:   # not weak-referenceable (e.g. a list): just do not cache
            pass
        return sums


def smooth_latent_field(latents: np.ndarray, sigma: float, *, geometry: str = "hyperbolic",
                        curvature: float = 1.0, slab_voxels: int = CHUNK_VOXELS) -> np.ndarray:
    """Gaussian-smooth a (Z, Y, X, d) latent field in place (sigma in voxels; 0 = unchanged).

    Hyperbolic fields are smoothed in the tangent space at the origin (log_0, filter, exp_0), so the
    result stays in the ball; Euclidean ones directly. Memory-safe for a memmapped field: the maps
    run over slabs of Z, the filter over one channel at a time (one (Z, Y, X) float32 array in RAM).
    """
    import torch
    from scipy import ndimage

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

    if hyperbolic:
        remap(manifold.logmap0)
    for channel in range(latents.shape[-1]):
        values = np.ascontiguousarray(latents[..., channel])     # filtered in place: one (Z, Y, X) array
        latents[..., channel] = ndimage.gaussian_filter(values, sigma, mode="nearest", output=values)
    if hyperbolic:
        remap(manifold.expmap0)
    if isinstance(latents, np.memmap):
        latents.flush()
    return latents


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
    from scipy import ndimage

    from . import manifold

    hyperbolic = geometry == "hyperbolic"
    rows = max(1, slab_voxels // max(1, math.prod(latents.shape[1:3])))
    n_fine = len(fine_counts) - 1
    counts = np.maximum(np.asarray(fine_counts)[1:], 1)
    sums = np.zeros((len(sigmas), n_fine, latents.shape[-1]))
    for channel in range(latents.shape[-1]):
        tangent = np.empty(latents.shape[:3], dtype=np.float32)
        for start in range(0, latents.shape[0], rows):
            slab = torch.from_numpy(np.ascontiguousarray(latents[start:start + rows], dtype=np.float32))
            if hyperbolic:
                slab = manifold.logmap0(slab, curvature=curvature)
            tangent[start:start + rows] = slab[..., channel].numpy()
        for index, sigma in enumerate(sigmas):
            smoothed = ndimage.gaussian_filter(tangent, float(sigma), mode="nearest") if sigma > 0 else tangent
            for start in range(0, latents.shape[0], rows):
                sums[index, :, channel] += np.bincount(fine_labels[start:start + rows].reshape(-1),
                                                       weights=smoothed[start:start + rows].reshape(-1),
                                                       minlength=n_fine + 1)[1:]
    means = sums / counts[None, :, None]
    if not hyperbolic:
        return list(means)
    return [manifold.expmap0(torch.from_numpy(m), curvature=curvature).numpy() for m in means]


def joint_features(latents: np.ndarray, image: np.ndarray, weight: float, *, geometry: str = "hyperbolic",
                   curvature: float = 1.0, slab_voxels: int = CHUNK_VOXELS) -> np.ndarray:
    """(Z, Y, X, d + 6) float32: each voxel's latent (in the tangent space at the origin for a
    hyperbolic field) standardised per channel, beside the six standardised hand-made features of
    baselines.multiscale_features times `weight` -- what the fine clusters are found in when the
    configuration's image_features is on (see HypsegConfig). 4 (d + 6) bytes per voxel."""
    import torch

    from . import manifold
    from .baselines import multiscale_features

    d = latents.shape[-1]
    joint = np.empty(latents.shape[:3] + (d + 6,), dtype=np.float32)
    rows = max(1, slab_voxels // max(1, math.prod(latents.shape[1:3])))
    for start in range(0, latents.shape[0], rows):
        slab = torch.from_numpy(np.ascontiguousarray(latents[start:start + rows], dtype=np.float32))
        if geometry == "hyperbolic":
            slab = manifold.logmap0(slab, curvature=curvature)
        joint[start:start + rows, ..., :d] = slab.numpy()
    flat = joint[..., :d].reshape(-1, d)
    mean, spread = flat.mean(0, dtype=np.float64), flat.std(0, dtype=np.float64)
    joint[..., :d] = (joint[..., :d] - mean.astype(np.float32)) / (spread.astype(np.float32) + np.float32(1e-8))
    joint[..., d:] = multiscale_features(image).reshape(joint.shape[:3] + (6,)) * np.float32(weight)
    return joint


def clustering_field(trained, image, *, context: int | None = None, device="cpu", tile: int = 64,
                     stop: threading.Event | None = None, latents_out: str | Path | None = None,
                     latent_smoothing: float | None = None, precision: str = "auto"
                     ) -> Generator[Progress, None, np.ndarray | None]:
    """The latent field that is clustered: dense inference of `image` (a checked volume array), then
    the model's spatial smoothing (or `latent_smoothing`, checked by the configuration).

    Yields inference Progress; returns the (Z, Y, X, d) field, or None if `stop` was set.
    """
    from .inference import latent_field

    config = trained.config
    smoothing = config.with_overrides(latent_smoothing=latent_smoothing).latent_smoothing
    latents = yield from latent_field(trained.model, image, trained.stats, context=context, tile=tile,
                                      device=device, out=latents_out, stop=stop, precision=precision)
    if latents is None or smoothing <= 0:
        return latents
    if not latents.flags.writeable:
        latents = np.array(latents)
    return smooth_latent_field(latents, smoothing, geometry=config.geometry, curvature=float(config.curvature))


def kmeans_for(config, n_clusters: int, *, seed: int = 0, device="cpu", max_fit_samples: int = 200_000,
               geometry: str | None = None):
    """The k-means of the model's geometry (or of `geometry`): PoincareKMeans in the ball,
    EuclideanKMeans otherwise."""
    from .kmeans import EuclideanKMeans, PoincareKMeans

    if (geometry or config.geometry) == "hyperbolic":
        return PoincareKMeans(n_clusters, curvature=config.curvature, max_fit_samples=max_fit_samples,
                              random_state=seed, device=device)
    return EuclideanKMeans(n_clusters, max_fit_samples=max_fit_samples, random_state=seed)


def segment(trained, image, *, n_fine: int = 16, context: int | None = None, device: str = "auto",
            tile: int = 64, stop: threading.Event | None = None, seed: int = 0,
            max_fit_samples: int = 200_000, latents_out: str | Path | None = None, linkage: str | None = None,
            latent_smoothing: float | None = None, precision: str = "auto", hierarchy_scales=None,
            image_features: float | None = None) -> Generator[Progress, None, Segmentation | None]:
    """Segment `image` (Z, Y, X) with a TrainedModel once, finely, into `n_fine` clusters.

    Yields Progress for inference ("infer", per tile) then clustering ("cluster": the fit, then one
    step per chunk of voxels labelled). Returns the Segmentation, or None if `stop` was set.
    `latents_out` (.npy) keeps the latent field on disk (memory-mapped) instead of in RAM.
    `linkage` chooses the tree over the fine clusters (default: the geometry's, see hierarchy.py).
    `latent_smoothing`: sigma (voxels) of the Gaussian applied to the latent field before clustering
    (default: the model's `config.latent_smoothing`; 0 = off; see smooth_latent_field). The field
    kept in `latents_out` is the smoothed one. `hierarchy_scales`: (k, sigma) pairs deciding the coarse
    levels on wider context (default: the model's `config.hierarchy_scales`; () = a tree on the
    centroids alone; see HypsegConfig). `image_features`: weight of the hand-made image features
    clustered beside the latents (default: the model's `config.image_features`; 0 = the latents
    alone; see joint_features). `precision` of the encoder's convolutions: "auto"
    (bfloat16 where the hardware has it natively), "float32" or "bfloat16" (see device.inference_dtype).
    """
    from .device import resolve_device

    if isinstance(n_fine, bool) or not isinstance(n_fine, Integral) or not 1 <= n_fine <= MAX_FINE_CLUSTERS:
        raise ConfigError(f"n_fine must be an integer from 1 to {MAX_FINE_CLUSTERS}, got {n_fine!r}")
    volume = as_volume_array(image, "image")
    if volume.size < n_fine:
        raise VolumeError(f"the image has {volume.size} voxels, fewer than the {n_fine} fine clusters asked for")
    config = trained.config
    if linkage is not None and linkage not in LINKAGES[config.geometry]:
        raise ConfigError(f"linkage for a {config.geometry} model must be one of {LINKAGES[config.geometry]}, "
                          f"got {linkage!r}")
    settings = config.with_overrides(hierarchy_scales=None if hierarchy_scales is None else
                                     tuple(tuple(pair) for pair in hierarchy_scales), image_features=image_features)
    resolved = resolve_device(device)
    latents = yield from clustering_field(trained, volume, context=context, device=resolved, tile=tile, stop=stop,
                                          latents_out=latents_out, latent_smoothing=latent_smoothing,
                                          precision=precision)
    if latents is None:
        return None
    points = latents.reshape(-1, latents.shape[-1])
    joint = None
    if settings.image_features > 0:
        joint = joint_features(latents, volume, settings.image_features, geometry=config.geometry,
                               curvature=float(config.curvature))
        kmeans = kmeans_for(config, n_fine, seed=seed, device=resolved, max_fit_samples=max_fit_samples,
                            geometry="euclidean")
    else:
        kmeans = kmeans_for(config, n_fine, seed=seed, device=resolved, max_fit_samples=max_fit_samples)
    clustered = points if joint is None else joint.reshape(-1, joint.shape[-1])
    n_chunks = -(-len(points) // kmeans.chunk_size)
    yield Progress("cluster", 0, n_chunks + 1, message=f"fitting {n_fine} clusters")
    kmeans.fit(clustered)
    yield Progress("cluster", 1, n_chunks + 1, message="labelling voxels")
    # Fine ids by size in the fit sample, largest first: deterministic and meaningful.
    sample_counts = np.bincount(kmeans.labels_, minlength=n_fine)
    order = np.argsort(-sample_counts, kind="stable")
    fine_id = np.empty(n_fine, dtype=np.uint16)
    fine_id[order] = np.arange(1, n_fine + 1)
    fine_labels = np.empty(len(points), dtype=np.uint16)
    fine_counts = np.zeros(n_fine + 1, dtype=np.int64)
    for chunk in range(n_chunks):
        if stop is not None and stop.is_set():
            return None
        rows = slice(chunk * kmeans.chunk_size, (chunk + 1) * kmeans.chunk_size)
        fine_labels[rows] = fine_id[kmeans.predict(clustered[rows])]
        fine_counts += np.bincount(fine_labels[rows], minlength=n_fine + 1)
        yield Progress("cluster", chunk + 2, n_chunks + 1, message="labelling voxels")
    fine_labels = fine_labels.reshape(volume.shape)
    scales = [(k, sigma) for k, sigma in settings.hierarchy_scales if k < n_fine]
    if joint is None:
        centroids = kmeans.cluster_centers_[order]
        stages = []
    else:   # merges start in the joint space; heights and the disk view use the latent means
        centroids, *_ = regional_descriptors(latents, fine_labels, fine_counts, [0.0], geometry=config.geometry,
                                             curvature=float(config.curvature))
        stages = [(n_fine, kmeans.cluster_centers_[order], "euclidean")]
    descriptors = regional_descriptors(latents, fine_labels, fine_counts, [sigma for _, sigma in scales],
                                       geometry=config.geometry, curvature=float(config.curvature)) if scales else []
    stages += [(k, descriptor, config.geometry) for (k, _), descriptor in zip(scales, descriptors)]
    hierarchy = ClusterHierarchy.from_centroids(centroids, geometry=config.geometry, curvature=config.curvature,
                                                weights=fine_counts[1:], linkage=linkage, coarser=stages)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(kmeans.sample_indices_), min(SAMPLE_POINTS, len(kmeans.sample_indices_)),
                                replace=False))
    sample_points = np.asarray(points[kmeans.sample_indices_[chosen]], dtype=np.float32)   # latents, not features
    return Segmentation(
        fine_labels=fine_labels, hierarchy=hierarchy, centroids=centroids,
        fine_counts=fine_counts, sample_points=sample_points,
        sample_labels=fine_id[kmeans.labels_[chosen]].astype(np.int64), geometry=config.geometry,
        curvature=float(config.curvature), context=config.context if context is None else int(context))
