"""Which part of a volume is used, and on which grid: region of interest, mask and binning.

Tomograms are segmented binned and often only in part. A :class:`Region` says, for a volume of a
given shape, which box is read (a ``--roi`` box, the bounding box of a ``--mask``, or both
intersected; aligned to the binning factor so that binned voxels of the box are binned voxels of the
whole volume), how many voxels are averaged into one (``--bin``), and which voxels are inside the mask.

- :func:`region_volume` returns the box of a volume, binned by block means (the last block of an axis
  averages the voxels it has), read slab by slab: a memory-mapped or lazy (Zarr) volume is never
  loaded whole, and the result holds the binned box only.
- :func:`full_labels` puts labels computed on the binned box back into a whole volume, on the binned
  grid or (``full_resolution``) on the original one, each binned voxel repeated over the voxels it
  averaged; everything outside the box or the mask is 0 ("not labelled").

Training uses the box (mask or ROI) of each volume: no patch is drawn outside it. Segmentation
clusters the box and labels nothing outside the box or the mask.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, VolumeError

BIN_FACTORS = (1, 2, 4)
_SLAB_BYTES = 64 << 20
_ROI_PART = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*$")


def parse_roi(text: str) -> tuple[tuple[int | None, int | None], ...]:
    """``"z0:z1,y0:y1,x0:x1"`` -> three (start, stop) pairs (None = open end), as numpy slices read them."""
    parts = str(text).split(",")
    pairs = [_ROI_PART.match(part) for part in parts]
    if len(parts) != 3 or not all(pairs):
        raise ConfigError(f"--roi {text!r} is not a box z0:z1,y0:y1,x0:x1 (voxel indices of the full volume, "
                          "ends excluded; leave a bound empty for the edge, e.g. 10:90,:,200:)")
    return tuple(tuple(int(v) if v not in ("", "-") else None for v in m.groups()) for m in pairs)


@dataclass(frozen=True)
class Region:
    """A box of a volume of ``shape`` (original voxels, aligned to ``factor``), a binning factor, and an
    optional boolean mask of the box (original grid)."""

    shape: tuple[int, int, int]
    box: tuple[slice, slice, slice]
    factor: int = 1
    mask: np.ndarray | None = None

    @property
    def box_shape(self) -> tuple[int, int, int]:
        return tuple(s.stop - s.start for s in self.box)

    @property
    def binned_shape(self) -> tuple[int, int, int]:
        """Shape of the region's volume (the box, binned)."""
        return tuple(-(-n // self.factor) for n in self.box_shape)

    @property
    def binned_box(self) -> tuple[slice, slice, slice]:
        """The box on the binned grid of the whole volume (the box is aligned to the factor)."""
        f = self.factor
        return tuple(slice(b.start // f, -(-b.stop // f)) for b in self.box)

    @property
    def whole(self) -> bool:
        """True when the region is the whole volume at full resolution (nothing to do)."""
        return self.factor == 1 and self.mask is None and self.box_shape == tuple(self.shape)

    def spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """Voxel size of the binned grid."""
        return tuple(float(s) * self.factor for s in spacing)

    def affine(self, affine: np.ndarray | None, *, full_resolution: bool = False) -> np.ndarray | None:
        """A NIfTI affine (x, y, z columns) for labels written by :func:`full_labels`: the binned grid's
        voxel (i) is the centre of original voxels f*i .. f*i + f - 1."""
        if affine is None or full_resolution or self.factor == 1:
            return affine
        f = self.factor
        step = np.diag([f, f, f, 1.0])
        step[:3, 3] = (f - 1) / 2
        return np.asarray(affine, dtype=float) @ step

    def translate(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """Where the region's first voxel centre lies, in the volume's physical coordinates (napari's
        ``translate`` of a layer holding the region's volume)."""
        return tuple((s.start + (self.factor - 1) / 2) * float(d) for s, d in zip(self.box, spacing))

    def binned_mask(self) -> np.ndarray | None:
        """The mask on the binned grid: a binned voxel is inside when at least half its voxels are."""
        if self.mask is None:
            return None
        if self.factor == 1:
            return self.mask
        return bin_volume(self.mask, self.factor) >= 0.5


def plan_region(shape: Sequence[int], *, roi: str | Sequence | None = None, mask=None, factor: int = 1) -> Region:
    """Check and combine a ROI box, a mask (same shape as the volume; nonzero = inside) and a factor."""
    shape = tuple(int(n) for n in shape)
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor not in BIN_FACTORS:
        raise ConfigError(f"binning must be one of {', '.join(map(str, BIN_FACTORS))}, got {factor!r}")
    factor = int(factor)
    box = [slice(0, n) for n in shape]
    if roi is not None:
        pairs = parse_roi(roi) if isinstance(roi, str) else roi
        for axis, ((start, stop), n) in enumerate(zip(pairs, shape)):
            # numpy would clip a bound past the edge: a box meant for a bigger volume must not shrink unnoticed
            if any(v is not None and not -n <= v <= n for v in (start, stop)):
                raise ConfigError(f"--roi {_roi_text(pairs)} reaches outside the volume along {'zyx'[axis]} "
                                  f"(it has {n} voxels there); give bounds from 0 to {n} (or -{n} to -1 from "
                                  "the end)")
            s = slice(start, stop).indices(n)
            if s[1] - s[0] < 1:
                raise ConfigError(f"--roi {_roi_text(pairs)} is empty along {'zyx'[axis]} (the volume has {n} "
                                  f"voxels there, indices 0..{n - 1}); give start < stop within the volume")
            box[axis] = slice(s[0], s[1])
    full_mask = None
    if mask is not None:
        mask_array = np.asarray(mask)
        mask_array = np.squeeze(mask_array) if mask_array.ndim > 3 else mask_array
        if mask_array.shape != shape:
            raise VolumeError(f"the mask has shape {mask_array.shape} but the volume {shape}; give a mask drawn on "
                              "this volume (same size, nonzero inside)")
        full_mask = mask_array != 0
        inside = [np.flatnonzero(full_mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
        if any(len(i) == 0 for i in inside):
            raise VolumeError("the mask is empty (no nonzero voxel); mark the region to segment with nonzero values")
        box = [slice(max(b.start, int(i[0])), min(b.stop, int(i[-1]) + 1)) for b, i in zip(box, inside)]
        if any(b.stop <= b.start for b in box):
            raise ConfigError("the --roi box and the mask do not overlap; nothing would be segmented")
    exact = tuple(box)
    # Align to the binning grid of the whole volume; voxels the alignment adds are outside the region.
    box = tuple(slice(b.start - b.start % factor, min(n, -(-b.stop // factor) * factor)) for b, n in zip(box, shape))
    cropped_mask = None if full_mask is None else full_mask[box]
    if roi is not None and (exact != box or cropped_mask is not None):
        keep = np.zeros(tuple(b.stop - b.start for b in box), dtype=bool)
        keep[tuple(slice(e.start - b.start, e.stop - b.start) for e, b in zip(exact, box))] = True
        cropped_mask = keep if cropped_mask is None else cropped_mask & keep
    return Region(shape, box, factor, cropped_mask)


def _roi_text(pairs) -> str:
    return ",".join(f"{'' if a is None else a}:{'' if b is None else b}" for a, b in pairs)


def bin_volume(data, factor: int) -> np.ndarray:
    """Block means of ``factor``³ voxels (float32), read slab by slab; the last block of an axis
    averages the voxels it has."""
    shape = tuple(int(n) for n in data.shape)
    if factor == 1:
        return np.asarray(data, dtype=np.float32)
    out = np.empty(tuple(-(-n // factor) for n in shape), dtype=np.float32)
    starts_y, starts_x = np.arange(0, shape[1], factor), np.arange(0, shape[2], factor)
    counts_y = np.minimum(factor, shape[1] - starts_y)
    counts_x = np.minimum(factor, shape[2] - starts_x)
    rows = max(1, _SLAB_BYTES // max(1, 8 * math.prod(shape[1:]) * factor)) * factor
    for start in range(0, shape[0], rows):
        slab = np.asarray(data[start:start + rows], dtype=np.float64)
        starts_z = np.arange(0, slab.shape[0], factor)
        counts_z = np.minimum(factor, slab.shape[0] - starts_z)
        summed = np.add.reduceat(np.add.reduceat(np.add.reduceat(slab, starts_z, 0), starts_y, 1), starts_x, 2)
        counts = counts_z[:, None, None] * counts_y[None, :, None] * counts_x[None, None, :]
        out[start // factor:start // factor + len(starts_z)] = summed / counts
    return out


def region_volume(data, region: Region):
    """The region's volume: the box of ``data``, binned; the box alone is a view (lazy for Zarr)."""
    box = data[region.box]
    return box if region.factor == 1 else bin_volume(box, region.factor)


def full_labels(labels: np.ndarray, region: Region, *, full_resolution: bool = False) -> np.ndarray:
    """Labels of the region's volume placed in the whole volume; 0 outside the box and the mask.

    On the binned grid of the whole volume by default; with ``full_resolution`` on the original grid,
    each binned voxel repeated over the voxels it averaged (and the mask applied at full resolution)."""
    labels = np.asarray(labels)
    if labels.shape != region.binned_shape:
        raise VolumeError(f"labels of shape {labels.shape} do not match the region's grid {region.binned_shape}")
    f = region.factor
    if region.whole:
        return labels
    if not full_resolution or f == 1:
        mask = region.binned_mask()
        grid = tuple(-(-n // f) for n in region.shape)
        out = np.zeros(grid, dtype=labels.dtype)
        target = tuple(slice(b.start // f, b.start // f + n) for b, n in zip(region.box, labels.shape))
        out[target] = labels if mask is None else np.where(mask, labels, 0)
        return out
    out = np.zeros(region.shape, dtype=labels.dtype)
    box_shape = region.box_shape
    rows = max(1, _SLAB_BYTES // max(1, labels.itemsize * math.prod(box_shape[1:])) // f)
    for start in range(0, labels.shape[0], rows):
        block = labels[start:start + rows]
        block = np.repeat(np.repeat(np.repeat(block, f, 0), f, 1), f, 2)
        z0 = start * f
        block = block[:box_shape[0] - z0, :box_shape[1], :box_shape[2]]
        if region.mask is not None:
            block = np.where(region.mask[z0:z0 + len(block)], block, 0)
        out[region.box[0].start + z0:region.box[0].start + z0 + len(block), region.box[1], region.box[2]] = block
    return out


@contextmanager
def latent_file(path: str | os.PathLike | None, *, beside: str | os.PathLike):
    """Where a latent field is written while it is needed: ``path`` if given (kept), else a temporary
    .npy in a hidden folder beside ``beside`` (removed afterwards). A latent field on disk keeps the
    memory of segmenting a big volume bounded: it is (Z, Y, X, d) float32, d times the volume's size."""
    if path is not None:
        yield Path(path)
        return
    folder = Path(tempfile.mkdtemp(prefix=".hypseg-latents-", dir=Path(beside).parent))
    try:
        yield folder / "latents.npy"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
