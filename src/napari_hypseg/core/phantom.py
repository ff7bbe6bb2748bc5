"""A brain-like MRI phantom: thin, folded, intensity-defined tissue with partial volume.

The toy dataset (synthetic.py) tells its classes apart by shape and texture; in a T1 MRI volume the
tissues are told apart by brightness, and grey matter is a folded ribbon one or two voxels thick, so
most of its voxels mix with white matter or fluid. This phantom has that structure, so settings for
MRI-like data can be chosen on volumes other than the real ones that are reported (the MNI152
template of benchmarks/quality.py): a lumpy ellipsoidal brain cut by sulci (thin sheets along the
zero surface of a band-pass noise field); grey matter within a given depth of that folded surface (a
distance transform, so the ribbon keeps its thickness on the walls of the folds), white matter beneath it,
fluid in the sulci, in a thin outer rim and in two ventricles. Tissue is drawn on a grid twice as
fine and averaged, which gives the partial-volume voxels; then a smooth bias field, a slight blur and
a little noise, as a template has.

The truth follows the MNI152 protocol of benchmarks/quality.py: level 1 background / brain
(brightness above a fifth of the maximum), level 2 background / grey matter / white matter / other,
each voxel of the brain taking the tissue with the largest fraction ("other": neither grey nor white).
Every random choice comes from ``numpy.random.default_rng(seed)``, so a seed is a volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import ConfigError
from .region import bin_volume
from .synthetic import TextureSpec, texture_field
from .validation import real

PHANTOM_LEVELS: dict[int, tuple[str, ...]] = {
    1: ("background", "brain"),
    2: ("background", "grey matter", "white matter", "other"),
}
"""Class names per truth level (the MNI152 protocol's); the index is the label id."""
PHANTOM_LEVEL_K = {1: 2, 2: 4}

_FLUID, _GREY, _WHITE = 1, 2, 3          # tissue ids on the fine grid (0: outside the head)


@dataclass
class PhantomVolume:
    image: np.ndarray
    """float32 (Z, Y, X) T1-like brightness: white > grey > fluid > background."""
    truth: dict[int, np.ndarray]
    """Level -> uint8 labels, ids as in PHANTOM_LEVELS."""


def make_brain_phantom(seed: int, shape: tuple[int, int, int] = (48, 56, 48), *,
                       cortex_thickness: float = 1.5, fold_depth: float = 5.0) -> PhantomVolume:
    """One phantom volume; `cortex_thickness` and `fold_depth` are in voxels of `shape`."""
    cortex_thickness = real("cortex_thickness", cortex_thickness, positive=True)
    fold_depth = real("fold_depth", fold_depth, minimum=0)
    if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 16 for s in shape):
        raise ConfigError(f"shape must be three whole sizes of at least 16 voxels, got {shape}")
    rng = np.random.default_rng(seed)
    fine = 2                                                  # tissue drawn at twice the resolution
    grid = tuple(fine * s for s in shape)
    axes = np.array(grid, dtype=float) / 2 * rng.uniform(0.78, 0.88, size=3)
    z, y, x = (np.arange(n, dtype=float) - (n - 1) / 2 for n in grid)
    ellipsoid = _ellipsoid_radius((z, y, x), np.zeros(3), axes)
    radius = axes.mean()
    lumps = texture_field(grid, TextureSpec(0.012, 0.006, 1.0), rng)
    depth = (1 - ellipsoid) * radius + 0.04 * radius * lumps  # fine voxels below the hull (< 0 outside)

    # Sulci: thin sheets of fluid along the zero surface of a band-pass field, from the surface down.
    folds = texture_field(grid, TextureSpec(rng.uniform(0.06, 0.075), 0.01, 1.0), rng)
    sulci = (np.abs(folds) < 0.15) & (depth < fine * fold_depth * rng.uniform(0.8, 1.2))
    tissue = (depth > 0) & ~sulci                             # grey + white
    inside = ndimage.distance_transform_edt(tissue)
    white = inside > fine * cortex_thickness * rng.uniform(0.85, 1.15)
    for side in (-1, 1):                                      # two ventricles, fluid inside the white
        centre = np.array([0.05, 0.1, side * 0.18]) * np.array(grid)
        size = np.array([0.07, 0.16, 0.035]) * np.array(grid) * rng.uniform(0.8, 1.2)
        ventricle = _ellipsoid_radius((z, y, x), centre, size) < 1
        white &= ~ventricle
        tissue &= ~(ventricle & (inside > fine * cortex_thickness * 2))
    tissues = np.zeros(grid, dtype=np.uint8)
    tissues[depth > -fine * rng.uniform(0.8, 1.5)] = _FLUID   # the head: fluid unless tissue
    tissues[tissue] = _GREY
    tissues[white] = _WHITE

    fractions = np.stack([bin_volume(tissues == t, fine) for t in (_FLUID, _GREY, _WHITE)])
    brightness = np.array([0.25, 0.6, 1.0]) * rng.uniform(0.95, 1.05, size=3)
    image = np.tensordot(brightness, fractions, axes=1)
    bias = 1 + 0.08 * texture_field(shape, TextureSpec(0.0, 0.02, 1.0), rng)
    image = ndimage.gaussian_filter(image * bias, 0.5) + rng.normal(0, rng.uniform(0.01, 0.03), size=shape)

    brain = image > 0.2 * image.max()
    grey, white_fraction = fractions[1], fractions[2]
    tissue_class = np.argmax(np.stack([grey, white_fraction, np.clip(1 - grey - white_fraction, 0, 1)]), axis=0) + 1
    truth = {1: brain.astype(np.uint8), 2: np.where(brain, tissue_class, 0).astype(np.uint8)}
    return PhantomVolume(image.astype(np.float32), truth)


def _ellipsoid_radius(axes_coordinates, centre, semi_axes) -> np.ndarray:
    """Distance of each grid point from `centre` in units of the ellipsoid's `semi_axes` (1 on its
    surface), from the coordinates along z, y and x."""
    z, y, x = (c - o for c, o in zip(axes_coordinates, centre))
    return np.sqrt((z[:, None, None] / semi_axes[0]) ** 2 + (y[None, :, None] / semi_axes[1]) ** 2
                   + (x[None, None, :] / semi_axes[2]) ** 2)
