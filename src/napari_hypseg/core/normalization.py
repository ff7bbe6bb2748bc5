"""Intensity normalisation shared by training and inference: percentile clip, then z-score.

Volumes come in arbitrary units (MRC densities, MRI signal, 8/16-bit TIFF); the network sees values
of order one. The statistics are fitted once on the training volumes and stored in the checkpoint so
inference transforms a new volume exactly as training did. Fitting reads a strided subsample, so a
4 GB memory-mapped tomogram costs a few megabytes of reads, not a full load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, VolumeError

MAX_FIT_SAMPLES = 2_000_000
# apply() converts this many voxels at a time, so a big memmap never needs a float64 temporary.
_APPLY_CHUNK_VOXELS = 1 << 24


@dataclass(frozen=True)
class IntensityStats:
    """Clip to [low, high] (intensity percentiles), then subtract mean and divide by std."""

    low: float
    high: float
    mean: float
    std: float

    @classmethod
    def fit(
        cls,
        arrays: Sequence[np.ndarray] | np.ndarray,
        *,
        low_percentile: float = 0.5,
        high_percentile: float = 99.5,
        max_samples: int = MAX_FIT_SAMPLES,
    ) -> IntensityStats:
        """Statistics of all arrays together, from at most ~max_samples voxels read by strides.

        Each array contributes in proportion to its size, so one large volume is not drowned out by
        several small ones (nor the reverse).
        """
        if isinstance(arrays, np.ndarray):
            arrays = [arrays]
        if len(arrays) == 0:
            raise VolumeError("no volumes to fit intensity statistics on; give at least one volume")
        if not 0 <= low_percentile < high_percentile <= 100:
            raise ConfigError(f"need 0 <= low_percentile < high_percentile <= 100, got "
                              f"{low_percentile}, {high_percentile}")
        total = sum(int(a.size) for a in arrays)
        samples = [_strided_sample(a, max(1, max_samples * a.size // max(total, 1))) for a in arrays]
        values = np.concatenate(samples)
        if not np.all(np.isfinite(values)):
            raise VolumeError("a volume contains NaN or infinite values; replace them (e.g. with the "
                              "median intensity) before training")
        low, high = np.percentile(values, [low_percentile, high_percentile])
        clipped = np.clip(values, low, high)
        std = float(clipped.std())
        # A constant volume has std 0; dividing by 1 keeps it finite (it then maps to zeros).
        return cls(low=float(low), high=float(high), mean=float(clipped.mean()), std=std if std > 0 else 1.0)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The normalised volume as a new float32 array (the input, possibly a memmap, is untouched)."""
        out = np.empty(array.shape, dtype=np.float32)
        rows = max(1, _APPLY_CHUNK_VOXELS // max(1, math.prod(array.shape[1:])))
        for start in range(0, array.shape[0], rows):
            chunk = np.array(array[start:start + rows], dtype=np.float32)   # a copy: never edit the input
            np.clip(chunk, self.low, self.high, out=chunk)
            chunk -= np.float32(self.mean)
            chunk /= np.float32(self.std)
            out[start:start + rows] = chunk
        return out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IntensityStats:
        names = ("low", "high", "mean", "std")
        missing = [name for name in names if name not in values]
        if missing:
            raise ConfigError(f"intensity statistics lack {missing}")
        stats = cls(**{name: float(values[name]) for name in names})
        if not all(math.isfinite(v) for v in (stats.low, stats.high, stats.mean, stats.std)) or stats.std <= 0 \
                or stats.low > stats.high:
            raise ConfigError(f"invalid intensity statistics {stats.to_dict()}")
        return stats


def _strided_sample(array: np.ndarray, budget: int) -> np.ndarray:
    """At most `budget` voxels on a regular grid through the whole array, as float64.

    A common stride on every axis keeps the sample spread over the volume; slicing a memmap with
    strides only touches the pages that hold the chosen voxels.
    """
    if array.size == 0:
        raise VolumeError(f"an empty volume (shape {array.shape}) cannot be used")
    stride = max(1, math.floor((array.size / budget) ** (1.0 / max(array.ndim, 1))))
    while math.prod(-(-n // stride) for n in array.shape) > budget:
        stride += 1
    view = array[tuple(slice((n - 1) % stride // 2, None, stride) for n in array.shape)]  # grid centred
    return np.asarray(view, dtype=np.float64).ravel()
