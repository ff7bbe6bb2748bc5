"""Objects of a cluster: its 3D connected components, filtered by size, and a table of their features.

A segmentation says which voxels belong to a cluster; a user who wants particle positions, object
volumes or surfaces needs the separate pieces of that cluster. :func:`cluster_objects` labels the
connected components of one cluster, keeps those within a size range, and measures each one:

=====================  ===================================================================
column                 meaning
=====================  ===================================================================
object_id              1..n, the value of the object in ``Objects.components``
cluster                the cluster the object belongs to
voxel_count            number of voxels
volume                 voxel_count × voxel volume, in ``unit``³ (voxels when unit is "pixel")
centroid_z/y/x_px      centre of mass in voxel indices (0 = centre of the first voxel)
centroid_z/y/x         the same in physical units (index × spacing)
bbox_z0 … bbox_x1      bounding box in voxel indices, half-open (``labels[z0:z1, y0:y1, x0:x1]``)
mean_intensity         mean of the image over the object (only when an image is given)
mean_latent_radius     mean distance of the object's latent points from the centre of the ball
                       (only with a latent field or a Segmentation; small = coarse structure)
unit                   the physical unit of ``volume`` and ``centroid_*``
=====================  ===================================================================

Measuring runs object by object on its bounding box, so a memory-mapped tomogram is only read where
objects are. Nothing here imports Qt or napari.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import HypsegError

if TYPE_CHECKING:
    import pandas as pd

    from .segmentation import Segmentation

AXES = ("z", "y", "x")
CONNECTIVITY = {6: 1, 18: 2, 26: 3}
"""Neighbourhoods by their number of neighbours -> scipy's structuring-element rank: 6 joins voxels
that share a face, 18 also an edge, 26 also a corner."""


class ObjectsError(HypsegError, ValueError):
    """A cluster that does not exist or is empty, a size filter that keeps nothing, inputs that do not
    match, a mesh of nothing, or an export that would replace a file."""


@dataclass(eq=False)
class Objects:
    """The kept components of one cluster and their features table (one row per object)."""

    components: np.ndarray
    """(Z, Y, X) int32: 0 outside the kept objects, object ids 1..n inside."""
    table: pd.DataFrame
    cluster: int
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str = "pixel"
    n_found: int = 0
    """Components of the cluster before the size filter."""
    dropped_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Voxel counts of the components the size filter removed."""

    def __len__(self) -> int:
        return len(self.table)

    @property
    def centroids_px(self) -> np.ndarray:
        """(n, 3) centroids (z, y, x) in voxel indices."""
        return self.table[[f"centroid_{a}_px" for a in AXES]].to_numpy(dtype=float).reshape(-1, 3)

    @property
    def centroids(self) -> np.ndarray:
        """(n, 3) centroids (z, y, x) in physical units."""
        return self.table[[f"centroid_{a}" for a in AXES]].to_numpy(dtype=float).reshape(-1, 3)

    def mask(self, object_ids: Sequence[int] | None = None) -> np.ndarray:
        """Boolean mask of the given objects (default: every kept object)."""
        if object_ids is None:
            return self.components > 0
        ids = [int(i) for i in object_ids]
        unknown = sorted(set(ids) - set(self.table["object_id"].tolist()))
        if unknown:
            raise ObjectsError(f"object id(s) {', '.join(map(str, unknown))} are not among the {len(self)} "
                               f"objects of cluster {self.cluster} (ids 1..{len(self)}).")
        return np.isin(self.components, ids)


def cluster_ids(labels: np.ndarray) -> list[int]:
    """The non-zero ids present in a label volume, ascending."""
    return [int(c) for c in np.unique(np.asarray(labels)) if c != 0]


def cluster_objects(
    labels,
    cluster: int,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    unit: str = "pixel",
    min_size: int | None = None,
    max_size: int | None = None,
    min_volume: float | None = None,
    max_volume: float | None = None,
    connectivity: int = 6,
    image=None,
    latents=None,
    segmentation: Segmentation | None = None,
    n_clusters: int | None = None,
) -> Objects:
    """Connected components of ``labels == cluster`` within a size range, and their features table.

    Sizes: ``min_size``/``max_size`` in voxels, ``min_volume``/``max_volume`` in ``unit``³ (voxel count
    × the product of ``spacing``); bounds are inclusive and every bound given applies. ``connectivity``
    is 6, 18 or 26 neighbours. ``image`` (same shape) adds ``mean_intensity``; ``latents`` (Z, Y, X, d)
    or a ``segmentation`` of this volume adds ``mean_latent_radius`` (with a Segmentation, each voxel
    counts the radius of its fine cluster's centroid). ``n_clusters``, when known (k of the cut), tells
    an empty cluster (1..k, no voxel) from one that does not exist.

    Raises ObjectsError when the cluster does not exist or has no voxel, when no component is left
    after the size filter, or when the inputs do not fit together.
    """
    import pandas as pd
    from scipy import ndimage

    labels = _as_labels(labels)
    spacing = _spacing(spacing)
    cluster = _cluster_id(cluster)
    if connectivity not in CONNECTIVITY:
        raise ObjectsError(f"connectivity must be 6, 18 or 26 neighbours, got {connectivity}.")
    voxel_volume = float(np.prod(spacing))
    low, high = _size_bounds(min_size, max_size, min_volume, max_volume, voxel_volume, unit)
    image = _matching(image, labels.shape, "image")
    radius_field = _radius_source(latents, segmentation, labels.shape)

    mask = labels == cluster
    if not mask.any():
        _raise_missing(labels, cluster, n_clusters)
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])
    found, n_found = ndimage.label(mask, structure=structure, output=np.int32)
    del mask
    sizes = np.bincount(found.reshape(-1), minlength=n_found + 1)
    sizes[0] = 0
    keep = (sizes >= low) & (sizes <= high)
    keep[0] = False
    kept_ids = np.flatnonzero(keep)
    dropped = sizes[1:][~keep[1:]]
    if len(kept_ids) == 0:
        raise ObjectsError(
            f"no object of cluster {cluster} is within the size filter ({_describe_bounds(low, high)}): "
            f"its {n_found} component(s) have {sizes[1:].min()}..{sizes[1:].max()} voxels. "
            "Widen the minimum/maximum size.")
    remap = np.zeros(n_found + 1, np.int32)
    remap[kept_ids] = np.arange(1, len(kept_ids) + 1, dtype=np.int32)
    slices = ndimage.find_objects(found)
    components = remap[found]
    del found

    rows = []
    for new_id, old_id in enumerate(kept_ids, start=1):
        box = slices[old_id - 1]
        inside = components[box] == new_id
        count = int(sizes[old_id])
        offsets = np.array([s.start for s in box], dtype=float)
        local = np.nonzero(inside)
        centroid = np.array([c.mean() for c in local]) + offsets
        row = {"object_id": new_id, "cluster": cluster, "voxel_count": count, "volume": count * voxel_volume}
        for axis, value in zip(AXES, centroid):
            row[f"centroid_{axis}_px"] = float(value)
        for axis, value, size in zip(AXES, centroid, spacing):
            row[f"centroid_{axis}"] = float(value) * size
        for axis, s in zip(AXES, box):
            row[f"bbox_{axis}0"] = int(s.start)
        for axis, s in zip(AXES, box):
            row[f"bbox_{axis}1"] = int(s.stop)
        if image is not None:
            row["mean_intensity"] = float(np.asarray(image[box], dtype=np.float64)[inside].mean())
        if radius_field is not None:
            row["mean_latent_radius"] = float(radius_field(box)[inside].mean())
        row["unit"] = unit
        rows.append(row)
    table = pd.DataFrame(rows)
    return Objects(components=components, table=table, cluster=cluster, spacing=spacing, unit=unit,
                   n_found=int(n_found), dropped_sizes=dropped)


def match_points(detected: np.ndarray, truth: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of detected and true positions (n, 3) within ``tolerance`` (same units).

    Pairs are chosen by the Hungarian algorithm on distance among pairs closer than the tolerance, so
    each true object counts at most one detection. Returns (detected indices, truth indices) of the pairs.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    detected = np.asarray(detected, float).reshape(-1, 3)
    truth = np.asarray(truth, float).reshape(-1, 3)
    if len(detected) == 0 or len(truth) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    distance = cdist(detected, truth)
    cost = np.where(distance <= tolerance, distance, 1e6 + distance)
    rows, cols = linear_sum_assignment(cost)
    ok = distance[rows, cols] <= tolerance
    return rows[ok], cols[ok]


# --- checks -------------------------------------------------------------------------------------


def _as_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    squeezed = labels.squeeze() if labels.ndim > 3 else labels
    if squeezed.ndim != 3:
        raise ObjectsError(f"labels must be a 3D volume (Z, Y, X); got an array of shape {labels.shape}.")
    if squeezed.dtype.kind not in "biu":
        if squeezed.dtype.kind == "f" and np.all(np.mod(squeezed, 1) == 0):
            return squeezed.astype(np.int64)
        raise ObjectsError(f"labels must hold integer cluster ids; got values of type {labels.dtype}. "
                           "Use a label volume written by `hypseg segment` or a Labels layer.")
    return squeezed


def _spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ObjectsError(f"voxel size must be three positive numbers (z, y, x); got {tuple(spacing)}.")
    return values


def _cluster_id(cluster) -> int:
    try:
        value = int(cluster)
    except (TypeError, ValueError):
        raise ObjectsError(f"cluster must be a whole number (a label id), got {cluster!r}.") from None
    if value != cluster or value < 1:
        raise ObjectsError(f"cluster must be a label id of 1 or more (0 is never a cluster), got {cluster!r}.")
    return value


def _size_bounds(min_size, max_size, min_volume, max_volume, voxel_volume: float, unit: str):
    """The size filter as an inclusive (low, high) range of voxel counts."""
    for name, value in (("minimum size", min_size), ("maximum size", max_size),
                        ("minimum volume", min_volume), ("maximum volume", max_volume)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise ObjectsError(f"{name} must be a number of 0 or more, got {value!r}.")
    low, high = 0.0, np.inf
    if min_size is not None:
        low = max(low, float(min_size))
    if max_size is not None:
        high = min(high, float(max_size))
    if min_volume is not None:
        low = max(low, float(min_volume) / voxel_volume)
    if max_volume is not None:
        high = min(high, float(max_volume) / voxel_volume)
    if low > high:
        raise ObjectsError(
            f"the minimum size is larger than the maximum ({_describe_bounds(low, high)}, a voxel is "
            f"{voxel_volume:g} {unit}³); choose a minimum at or below the maximum.")
    # float bounds on integer counts: a count c is kept when low <= c <= high (tiny slack for rounding)
    return low - 1e-9 * max(low, 1), high + 1e-9 * max(high, 1)


def _describe_bounds(low: float, high: float) -> str:
    low_text = f"{np.ceil(low - 1e-6):.0f}" if low > 0 else "0"
    high_text = "no maximum" if not np.isfinite(high) else f"{np.floor(high + 1e-6):.0f}"
    return f"{low_text}..{high_text} voxels" if np.isfinite(high) else f"at least {low_text} voxels"


def _matching(array, shape: tuple[int, ...], name: str):
    if array is None:
        return None
    array = np.asanyarray(array)
    if array.ndim > 3:
        array = array.squeeze()
    if array.shape != shape:
        raise ObjectsError(f"the {name} has shape {array.shape} but the labels have {shape}; use the {name} "
                           "the labels were made from.")
    if array.dtype.kind not in "biuf":
        raise ObjectsError(f"the {name} must hold numbers, got values of type {array.dtype}.")
    return array


def _radius_source(latents, segmentation, shape):
    """A function box -> per-voxel latent radius on that box, or None when neither source is given."""
    if latents is not None:
        latents = np.asanyarray(latents)
        if latents.ndim != 4 or latents.shape[:3] != shape:
            raise ObjectsError(f"the latent field has shape {latents.shape}; (Z, Y, X, d) with (Z, Y, X) = "
                               f"{shape}, the shape of the labels, is needed.")
        return lambda box: np.linalg.norm(np.asarray(latents[box], dtype=np.float64), axis=-1)
    if segmentation is not None:
        fine = segmentation.fine_labels
        if fine.shape != shape:
            raise ObjectsError(f"the segmentation has shape {fine.shape} but the labels have {shape}; use the "
                               "segmentation the labels were cut from.")
        radii = np.concatenate([[np.nan], np.linalg.norm(np.asarray(segmentation.centroids, float), axis=1)])
        return lambda box: radii[fine[box]]
    return None


def _raise_missing(labels: np.ndarray, cluster: int, n_clusters: int | None) -> None:
    present = cluster_ids(labels)
    listed = _id_list(present)
    if n_clusters is not None and 1 <= cluster <= n_clusters or present and cluster < max(present):
        raise ObjectsError(f"cluster {cluster} is empty: no voxel has this label. Clusters with voxels: "
                           f"{listed}.")
    if not present:
        raise ObjectsError("the labels are all 0: there is no cluster to take objects from.")
    raise ObjectsError(f"cluster {cluster} does not exist in these labels; choose one of {listed}.")


def _id_list(ids: list[int]) -> str:
    if len(ids) > 12:
        return ", ".join(map(str, ids[:12])) + f", … ({len(ids)} clusters)"
    return ", ".join(map(str, ids))
