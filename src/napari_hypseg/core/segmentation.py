"""Volume + trained model -> fine clusters -> a hierarchy of coarser segmentations (method.md §7).

`segment` computes every voxel's latent point (inference.latent_field), smooths that field spatially
(a Gaussian of `config.latent_smoothing` voxels; latent_fields.py), clusters a sample of them
finely with k-means in the model's geometry (Poincaré ball or Euclidean; or beside image features in
a joint Euclidean space, `config.image_features`, by k-means or a Gaussian mixture,
`config.fine_clustering`), labels every voxel by its cluster, and
builds the ClusterHierarchy over the fine clusters. A `Segmentation` then
answers any level -- k clusters or a ball radius -- with one table lookup per voxel.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from numbers import Integral
from pathlib import Path

import numpy as np

from .errors import ConfigError, VolumeError
from .hierarchy import LINKAGES, ClusterHierarchy
from .latent_fields import JointFeatures, clustering_field, neighbour_descriptors, regional_descriptors
from .lookup import CHUNK_VOXELS, apply_lookup
from .progress import Progress, voxel_rate
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
                                                    coarser=self.hierarchy.coarser, ward_top=self.hierarchy.ward_top)
        return replace(self, hierarchy=hierarchy, _intensity_sums=(None, None))

    def placed(self, region) -> Segmentation:
        """This segmentation of a region's volume (core/region.py) as one of the whole volume on the
        region's grid: fine id 0 ("not labelled") outside the box and the mask, voxel counts of what is
        left; the tree is unchanged. A layer or file of the whole volume then lines up with its image."""
        from .region import full_labels

        if region.mask is None and region.box_shape == region.shape:
            return self   # the whole volume, binned or not: already its grid
        fine_labels = full_labels(self.fine_labels, region)
        return replace(self, fine_labels=fine_labels, fine_counts=fine_counts_of(fine_labels, self.n_fine),
                       _intensity_sums=(None, None))

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
            image_features: float | None = None, fine_clustering: str | None = None, hierarchy_neighbours=None,
            inference_stride: int | None = None, ward_top: int | None = None,
            boundary_refinement: float | None = None, latent_scaling: str | None = None
            ) -> Generator[Progress, None, Segmentation | None]:
    """Segment `image` (Z, Y, X) with a TrainedModel once, finely, into `n_fine` clusters.

    Yields Progress for inference ("infer", per tile) then clustering ("cluster": the fit, then one
    step per chunk of voxels labelled). Returns the Segmentation, or None if `stop` was set.
    `latents_out` (.npy) keeps the latent field on disk (memory-mapped) instead of in RAM.
    `linkage` chooses the tree over the fine clusters (default: the model's `config.linkage`, see
    hierarchy.py); `ward_top`: from that many groups up, the tree merges by Ward's criterion (default:
    the model's `config.ward_top`; 0 = `linkage` throughout).
    `latent_smoothing`: sigma (voxels) of the Gaussian applied to the latent field before clustering
    (default: the model's `config.latent_smoothing`; 0 = off; see smooth_latent_field). The field
    kept in `latents_out` is the smoothed one. `hierarchy_scales`: (k, sigma) pairs deciding the coarse
    levels on wider context (default: the model's `config.hierarchy_scales`; () = a tree on the
    centroids alone; see HypsegConfig). `hierarchy_neighbours`: (k, sigma) pairs deciding the top
    levels on which fine clusters surround a group (default: the model's; () = off).
    `image_features`: weight of the hand-made image features clustered beside the latents (default:
    the model's `config.image_features`; 0 = the latents alone; see latent_fields.JointFeatures);
    `latent_scaling`: "channel" or "shared", how the latents are scaled beside them (default: the
    model's `config.latent_scaling`).
    `fine_clustering`: "kmeans" or "gaussian_mixture" for the fine clusters of that joint space
    (default: the model's `config.fine_clustering`). `precision` of the encoder's convolutions: "auto"
    (bfloat16 where the hardware has it natively), "float32" or "bfloat16" (see device.inference_dtype).
    `inference_stride`: latents computed at every n-th point of the encoder's grid and interpolated
    between (default: the model's `config.inference_stride`; see inference.latent_field).
    `boundary_refinement`: sigma of the intensity the fine clusters' boundary voxels are re-decided on
    (default: the model's `config.boundary_refinement`; 0 = off; see core/refinement.py).
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
    stage_overrides = {name: None if value is None else tuple(tuple(pair) for pair in value)
                       for name, value in (("hierarchy_scales", hierarchy_scales),
                                           ("hierarchy_neighbours", hierarchy_neighbours))}
    settings = config.with_overrides(**stage_overrides, image_features=image_features,
                                     fine_clustering=fine_clustering, ward_top=ward_top,
                                     boundary_refinement=boundary_refinement, latent_scaling=latent_scaling)
    if settings.image_features == 0:
        # both only shape the joint space of latents and image features; silently ignoring them misleads
        for name, value in (("latent_scaling", latent_scaling), ("fine_clustering", fine_clustering)):
            if value is not None:
                raise ConfigError(f"{name} {value!r} applies to the latents clustered beside the image features, "
                                  f"and image_features is 0 (the latents alone): leave {name} out, or give "
                                  "image_features > 0")
    resolved = resolve_device(device)
    latents = yield from clustering_field(trained, volume, context=context, device=resolved, tile=tile, stop=stop,
                                          latents_out=latents_out, latent_smoothing=latent_smoothing,
                                          precision=precision, inference_stride=inference_stride)
    if latents is None:
        return None
    points = latents.reshape(-1, latents.shape[-1])
    joint = None
    if settings.image_features > 0:
        joint = JointFeatures(latents, volume, settings.image_features, geometry=config.geometry,
                              curvature=float(config.curvature), latent_scaling=settings.latent_scaling)
    result = yield from _cluster_and_tree(trained, latents, points, joint, volume.shape, n_fine, settings,
                                          linkage=linkage, seed=seed, device=resolved,
                                          max_fit_samples=max_fit_samples, stop=stop, context=context)
    if result is None or settings.boundary_refinement == 0:
        return result
    from .refinement import refine_boundaries

    fine_labels = yield from refine_boundaries(result.fine_labels, volume, n_fine, settings.boundary_refinement,
                                               stop=stop)
    if fine_labels is None:
        return None
    return replace(result, fine_labels=fine_labels, fine_counts=fine_counts_of(fine_labels, n_fine))


def fine_counts_of(fine_labels: np.ndarray, n_fine: int) -> np.ndarray:
    """Voxels per fine id 1..n_fine (index 0, "not labelled", counted as none)."""
    counts = np.bincount(fine_labels.ravel(), minlength=n_fine + 1).astype(np.int64)
    counts[0] = 0
    return counts


def _cluster_and_tree(trained, latents, points, joint, shape, n_fine, settings, *, linkage, seed, device,
                      max_fit_samples, stop, context) -> Generator[Progress, None, Segmentation | None]:
    """The fine clusters (in the ball, or in the joint space when `joint`, a JointFeatures, is given)
    and the tree."""
    config = trained.config
    if joint is not None and settings.fine_clustering == "gaussian_mixture":
        from .mixture import GaussianMixtureClusters

        clusterer = GaussianMixtureClusters(n_fine, max_fit_samples=max_fit_samples, random_state=seed)
    else:
        clusterer = kmeans_for(config, n_fine, seed=seed, device=device, max_fit_samples=max_fit_samples,
                                geometry=None if joint is None else "euclidean")
    if joint is None:
        fitted_rows = None
        clustered = points
        n_blocks = -(-len(points) // clusterer.chunk_size)
        blocks = ((start, points[start:start + clusterer.chunk_size])
                  for start in range(0, len(points), clusterer.chunk_size))
    else:   # the estimator's own sample, drawn here so the joint rows are gathered in one pass
        from .kmeans import fit_sample_rows

        fitted_rows = fit_sample_rows(len(points), max_fit_samples, np.random.default_rng(seed))
        clustered = yield from joint.measure(fitted_rows, stop)
        if clustered is None:
            return None
        n_blocks = joint.n_slabs
        blocks = joint.slabs()
    yield Progress("cluster", 0, n_blocks + 1, message=f"fitting {n_fine} clusters")
    clusterer.fit(clustered)
    yield Progress("cluster", 1, n_blocks + 1, message="labelling voxels")
    # Fine ids by size in the fit sample, largest first: deterministic and meaningful.
    sample_counts = np.bincount(clusterer.labels_, minlength=n_fine)
    order = np.argsort(-sample_counts, kind="stable")
    fine_id = np.empty(n_fine, dtype=np.uint16)
    fine_id[order] = np.arange(1, n_fine + 1)
    fine_labels = np.empty(len(points), dtype=np.uint16)
    fine_counts = np.zeros(n_fine + 1, dtype=np.int64)
    began = time.monotonic()
    for index, (first, block) in enumerate(blocks):
        if stop is not None and stop.is_set():
            return None
        rows = slice(first, first + len(block))
        fine_labels[rows] = fine_id[clusterer.predict(block)]
        fine_counts += np.bincount(fine_labels[rows], minlength=n_fine + 1)
        yield Progress("cluster", index + 2, n_blocks + 1, message="labelling voxels",
                       metrics=voxel_rate(rows.stop, len(points), time.monotonic() - began))
    fine_labels = fine_labels.reshape(shape)
    neighbour_scales = [(k, sigma) for k, sigma in settings.hierarchy_neighbours if k < n_fine]
    replaced = {k for k, _ in neighbour_scales}     # a neighbourhood stage replaces a latent one at its k
    scales = [(k, sigma) for k, sigma in settings.hierarchy_scales if k < n_fine and k not in replaced]
    if joint is None:
        centroids = clusterer.cluster_centers_[order]
        stages = []
    else:   # merges start in the joint space; heights and the disk view use the latent means
        centroids, *_ = regional_descriptors(latents, fine_labels, fine_counts, [0.0], geometry=config.geometry,
                                             curvature=float(config.curvature))
        stages = [(n_fine, clusterer.cluster_centers_[order], "euclidean")]
    descriptors = regional_descriptors(latents, fine_labels, fine_counts, [sigma for _, sigma in scales],
                                       geometry=config.geometry, curvature=float(config.curvature)) if scales else []
    stages += [(k, descriptor, config.geometry) for (k, _), descriptor in zip(scales, descriptors)]
    stages += [(k, neighbour_descriptors(fine_labels, fine_counts, sigma), "euclidean")
               for k, sigma in neighbour_scales]
    stages.sort(key=lambda stage: -stage[0])
    hierarchy = ClusterHierarchy.from_centroids(centroids, geometry=config.geometry, curvature=config.curvature,
                                                weights=fine_counts[1:], linkage=linkage or settings.linkage,
                                                coarser=stages, ward_top=settings.ward_top)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(clusterer.sample_indices_), min(SAMPLE_POINTS, len(clusterer.sample_indices_)),
                                replace=False))
    rows = clusterer.sample_indices_[chosen] if fitted_rows is None else fitted_rows[clusterer.sample_indices_[chosen]]
    sample_points = np.asarray(points[rows], dtype=np.float32)   # latents, not features
    return Segmentation(
        fine_labels=fine_labels, hierarchy=hierarchy, centroids=centroids,
        fine_counts=fine_counts, sample_points=sample_points,
        sample_labels=fine_id[clusterer.labels_[chosen]].astype(np.int64), geometry=config.geometry,
        curvature=float(config.curvature), context=config.context if context is None else int(context))
