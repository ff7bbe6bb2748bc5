"""The synthetic hierarchical dataset of the paper (method.md §9), regular and irregular shapes.

A 50³ volume holds one large "cell" sphere; inside it "vesicle" spheres and "mitochondrion" cubes;
inside those, small spheres (in vesicles) and small cubes (in mitochondria). Every object has its
own mean intensity ~N(0, 1), so intensity alone does not tell the kinds apart; every kind of shape
has its own texture; pink (1/f) noise covers the whole volume. The truth therefore has three nested
levels, which is what the hierarchical method has to recover without labels.

Objects are placed exactly, not by blind rejection: the centres where a shape fits (inside its
parent's eroded mask, away from its siblings) are found at once by one FFT correlation of the
forbidden voxels with the shape, and a centre is drawn uniformly among them. That keeps generation
well under a second and guarantees the nesting by construction, for deformed shapes too.

Every random choice comes from one ``numpy.random.default_rng(seed)``, so a seed is a volume.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import fft, ndimage, signal

from .errors import ConfigError, VolumeError

BACKGROUND, CELL, VESICLE, MITOCHONDRION, SMALL_SPHERE, SMALL_CUBE = range(6)

LEVEL_CLASSES: dict[int, tuple[str, ...]] = {
    1: ("background", "cell"),
    2: ("background", "cell", "vesicle", "mitochondrion"),
    3: ("background", "cell", "vesicle", "mitochondrion", "small sphere", "small cube"),
}
"""Class names per truth level; the index is the label id in that level's truth array."""

LEVEL_MAPS: dict[int, np.ndarray] = {
    1: np.array([0, 1, 1, 1, 1, 1], dtype=np.uint8),
    2: np.array([0, 1, 2, 3, 2, 3], dtype=np.uint8),
    3: np.arange(6, dtype=np.uint8),
}
"""Lookup tables from level-3 ids to each level: small objects join their parent's class."""


@dataclass(frozen=True)
class TextureSpec:
    """A band-pass filtered Gaussian noise field, fresh (random phase) in every volume.

    The pass band is a Gaussian shell of radius ``frequency`` around the origin of frequency space
    (isotropic grain) or, with an ``orientation``, a Gaussian blob at ±frequency·orientation
    (stripes perpendicular to that direction). The field is scaled to standard deviation
    ``amplitude``. Kinds differ by grain size, orientation and strength, not by mean.
    """

    frequency: float
    """Centre of the pass band in cycles per voxel (Nyquist is 0.5)."""
    bandwidth: float
    """Standard deviation of the Gaussian pass band, cycles per voxel."""
    amplitude: float
    """Standard deviation of the texture."""
    orientation: tuple[float, float, float] | None = None
    """(z, y, x) direction of the stripes' wave vector; None for an isotropic texture."""


DEFAULT_TEXTURES: tuple[TextureSpec, ...] = (
    TextureSpec(0.30, 0.06, 0.5),                          # background: fine isotropic grain
    TextureSpec(0.06, 0.03, 0.4),                          # cell: soft blotches
    TextureSpec(0.16, 0.03, 0.5, orientation=(1, 0, 0)),   # vesicle: stripes across z
    TextureSpec(0.22, 0.03, 0.5, orientation=(0, 1, 1)),   # mitochondrion: oblique "cristae"
    TextureSpec(0.42, 0.05, 0.5),                          # small sphere: speckle near Nyquist
    TextureSpec(0.30, 0.03, 0.6, orientation=(0, 0, 1)),   # small cube: fine stripes across x
)
"""Textures by level-3 class id (frequency, bandwidth, amplitude[, orientation])."""


@dataclass(frozen=True)
class ToyConfig:
    """Every parameter of the recipe. Defaults follow the paper where it gives a value (method.md §9).

    Sizes are drawn from normal distributions truncated at ±3 standard deviations (and at one voxel),
    so no draw is absurd. Counts are drawn uniformly from ``(low, high)`` inclusive; an object that
    finds no room once its siblings are placed is left out, but every volume has at least one object
    of every kind.
    """

    shape: int = 50
    """Side of the cubic volume, voxels."""
    cell_radius: tuple[float, float] = (25.0, 1.0)
    """Mean and standard deviation of the cell sphere's radius. The paper's cell fills the volume:
    at radius 25 in a 50³ cube it touches the faces, and the background is the corners."""
    cell_center_jitter: float = 1.0
    """Standard deviation (voxels) of the cell centre around the volume centre."""
    vesicle_radius: tuple[float, float] = (8.0, 0.5)
    mitochondrion_half_side: tuple[float, float] = (8.0, 0.5)
    """Cubes of side 2·N(8, 0.5), axis-aligned."""
    small_sphere_radius: tuple[float, float] = (2.0, 0.2)
    small_cube_half_side: tuple[float, float] = (3.0, 0.15)
    n_vesicles: tuple[int, int] = (2, 3)
    n_mitochondria: tuple[int, int] = (1, 2)
    """Cubes of side 16 fill a radius-25 cell fast: a second one finds room in about 60 % of the
    layouts that ask for it (docs/dataset.md has the realised counts)."""
    n_small_per_parent: tuple[int, int] = (1, 3)
    parent_wall: int = 1
    """Voxels of parent that always separate a child from the parent's outside (26-connected)."""
    sibling_gap: int = 1
    """Voxels that always separate two siblings (26-connected): objects never touch."""
    intensity: tuple[float, float] = (0.0, 1.0)
    """Mean and standard deviation of each object's mean intensity (background included)."""
    textures: tuple[TextureSpec, ...] = field(default=DEFAULT_TEXTURES)
    """One texture per level-3 class id (background, cell, vesicle, mitochondrion, small sphere,
    small cube); each volume draws fresh random phases."""
    noise_magnitude: float = 0.25
    """Standard deviation of the pink noise over the whole volume."""
    noise_exponent: float = 1.0
    """Power spectrum ∝ 1/f^exponent (1 = pink)."""
    deform_amplitude: float = 0.25
    """Irregular variant: largest displacement of a shape, as a fraction of its radius/half-side."""
    deform_wavelength: float = 3.0
    """Irregular variant: wavelength of the displacement field, in radii/half-sides."""
    deform_modes: int = 3
    """Irregular variant: random sinusoidal modes summed per displacement component."""

    def validate(self) -> ToyConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.shape >= 16, f"shape must be >= 16 voxels, got {self.shape}")
        for name in ("cell_radius", "vesicle_radius", "mitochondrion_half_side",
                     "small_sphere_radius", "small_cube_half_side"):
            mean, std = getattr(self, name)
            need(mean > 0 and std >= 0, f"{name} needs a mean > 0 and a std >= 0, got {(mean, std)}")
        for name in ("n_vesicles", "n_mitochondria", "n_small_per_parent"):
            low, high = getattr(self, name)
            need(1 <= low <= high, f"{name} must be (low, high) with 1 <= low <= high, got {(low, high)}")
        need(self.parent_wall >= 0 and self.sibling_gap >= 0, "parent_wall and sibling_gap must be >= 0")
        need(self.intensity[1] >= 0, f"intensity std must be >= 0, got {self.intensity[1]}")
        need(len(self.textures) == 6,
             f"textures needs one TextureSpec per level-3 class (6), got {len(self.textures)}")
        for spec in self.textures:
            need(0 <= spec.frequency <= 0.5 and spec.bandwidth > 0 and spec.amplitude >= 0,
                 f"texture needs 0 <= frequency <= 0.5, bandwidth > 0, amplitude >= 0, got {spec}")
        need(self.noise_magnitude >= 0, f"noise_magnitude must be >= 0, got {self.noise_magnitude}")
        need(self.deform_modes >= 1 and self.deform_wavelength > 0 and self.deform_amplitude >= 0,
             "deform_modes >= 1, deform_wavelength > 0 and deform_amplitude >= 0 are needed")
        # x -> x + D(x) stays one-to-one (shapes stay single blobs) while |grad D| < 1; each of the
        # three components has gradient norm <= 2π·amplitude/wavelength.
        need(2 * math.pi * math.sqrt(3) * self.deform_amplitude / self.deform_wavelength < 1,
             "deform_amplitude / deform_wavelength must stay below 1/(2π√3) ≈ 0.092 so that deformed "
             "shapes do not fold or split; lower the amplitude or raise the wavelength")
        return self


@dataclass
class ToyVolume:
    """One synthetic volume: the image and its truth at the three levels."""

    image: np.ndarray
    """(Z, Y, X) float32."""
    truth: dict[int, np.ndarray]
    """Level (1, 2, 3) -> (Z, Y, X) uint8 labels, ids as in LEVEL_CLASSES[level]."""


def make_toy_volume(seed: int, config: ToyConfig = ToyConfig(), *, irregular: bool = False) -> ToyVolume:
    """Generate the volume of this seed; the same seed and config always give the same arrays."""
    config.validate()
    rng = np.random.default_rng(seed)
    objects, classes = _build_objects(rng, config, irregular)
    image = _paint(objects, classes, rng, config)
    level3 = classes[objects]
    truth = {level: LEVEL_MAPS[level][level3] for level in (1, 2, 3)}
    return ToyVolume(image=image, truth=truth)


# --- shapes -----------------------------------------------------------------------------------------

def _truncated_normal(rng: np.random.Generator, mean: float, std: float) -> float:
    """A size draw clipped at ±3 std and at one voxel: the tails would only produce absurd objects."""
    return float(np.clip(rng.normal(mean, std), max(mean - 3 * std, 1.0), mean + 3 * std))


def _displacement(coords: np.ndarray, size: float, rng: np.random.Generator, config: ToyConfig) -> np.ndarray:
    """A smooth random displacement field (sum of sinusoids) evaluated at ``coords`` (3, ...).

    Each component's gradient is bounded by 2π·amplitude/wavelength (validated < 1/√3), so the
    deformed shape is the image of the regular one under a diffeomorphism: one blob, no holes.
    """
    amplitude = config.deform_amplitude * size / config.deform_modes
    wavenumber = 2 * math.pi / (config.deform_wavelength * size)
    shift = np.zeros_like(coords)
    for component in range(3):
        for _ in range(config.deform_modes):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            phase = rng.uniform(0, 2 * math.pi)
            shift[component] += amplitude * np.sin(
                wavenumber * np.tensordot(direction, coords, axes=1) + phase)
    return shift


def _shape_mask(kind: str, size: float, coords: np.ndarray) -> np.ndarray:
    """Voxels whose centre lies inside a sphere of radius ``size`` or a cube of half-side ``size``."""
    if kind == "sphere":
        return np.sqrt(np.sum(coords ** 2, axis=0)) < size
    return np.max(np.abs(coords), axis=0) < size


def _object_box(kind: str, size: float, rng: np.random.Generator, config: ToyConfig,
                irregular: bool) -> np.ndarray:
    """The object's mask in its own odd-sided box, centred with a random sub-voxel offset."""
    reach = size * (math.sqrt(3) if kind == "cube" else 1.0)
    if irregular:  # each displacement component is at most deform_amplitude·size
        reach += math.sqrt(3) * config.deform_amplitude * size
    half = int(math.ceil(reach)) + 1
    axis = np.arange(-half, half + 1, dtype=np.float64)
    offset = rng.uniform(-0.5, 0.5, size=(3, 1, 1, 1))
    coords = np.stack(np.meshgrid(axis, axis, axis, indexing="ij")) - offset
    if irregular:
        coords = coords + _displacement(coords, size, rng, config)
    return _shape_mask(kind, size, coords)


def _cell_mask(rng: np.random.Generator, config: ToyConfig, irregular: bool) -> np.ndarray:
    """The large cell, drawn on the whole volume (it may touch the faces, as in the paper)."""
    radius = _truncated_normal(rng, *config.cell_radius)
    centre = (config.shape - 1) / 2 + rng.normal(0, config.cell_center_jitter, size=(3, 1, 1, 1))
    axis = np.arange(config.shape, dtype=np.float64)
    coords = np.stack(np.meshgrid(axis, axis, axis, indexing="ij")) - centre
    if irregular:
        coords = coords + _displacement(coords, radius, rng, config)
    return _shape_mask("sphere", radius, coords)


# --- placement --------------------------------------------------------------------------------------

_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


def _grow(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, _CONNECTIVITY, iterations=voxels) if voxels else mask


def _shrink(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndimage.binary_erosion(mask, _CONNECTIVITY, iterations=voxels) if voxels else mask


def _place(allowed: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int] | None:
    """Corner (in ``allowed``) of a drawn position where ``box``'s mask lies inside ``allowed``, or
    None when there is no such position.

    Correlating the forbidden voxels (outside counts as forbidden) with the shape counts, for every
    centre at once, how many shape voxels would fall on forbidden ground; zero means it fits. The
    centre is drawn uniformly from the rim of the valid centres, where the object touches the wall or
    a sibling (at the required distance): contact packing leaves the most room for the objects that
    follow, whereas a centre in the middle of the cell often blocks the second big cube.
    """
    half = box.shape[0] // 2
    forbidden = np.pad(~allowed, half, constant_values=True).astype(np.float32)
    overlap = signal.fftconvolve(forbidden, box[::-1, ::-1, ::-1].astype(np.float32), mode="valid")
    valid = overlap < 0.5
    centres = np.flatnonzero(valid & ~ndimage.binary_erosion(valid))
    if centres.size == 0:
        return None
    centre = np.unravel_index(centres[rng.integers(centres.size)], allowed.shape)
    return tuple(int(c) - half for c in centre)


def _stamp(labels: np.ndarray, box: np.ndarray, corner: tuple[int, int, int], value: int) -> None:
    """Write ``value`` where the box's mask lies, the box's corner at ``corner`` of ``labels``
    (parts of the box outside ``labels`` are empty by construction of the placement)."""
    lo = [max(c, 0) for c in corner]
    hi = [min(c + s, n) for c, s, n in zip(corner, box.shape, labels.shape)]
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = box[tuple(slice(a - c, b - c) for a, b, c in zip(lo, hi, corner))]
    labels[window][sub] = value


_SHAPE_OF = {CELL: "sphere", VESICLE: "sphere", MITOCHONDRION: "cube",
             SMALL_SPHERE: "sphere", SMALL_CUBE: "cube"}
_SIZE_OF = {VESICLE: "vesicle_radius", MITOCHONDRION: "mitochondrion_half_side",
            SMALL_SPHERE: "small_sphere_radius", SMALL_CUBE: "small_cube_half_side"}
_CHILD_OF = {VESICLE: SMALL_SPHERE, MITOCHONDRION: SMALL_CUBE}


class _NoRoom(Exception):
    """A child that every volume must show found no room in this layout."""


_MAX_LAYOUTS = 20


def _place_children(objects: np.ndarray, parent_id: int, plan: list[int], classes: list[int],
                    rng: np.random.Generator, config: ToyConfig, irregular: bool) -> list[int]:
    """Place one child per class id in ``plan`` inside object ``parent_id``; returns the new ids.

    Children keep ``parent_wall`` voxels from the parent's outside and ``sibling_gap`` voxels from
    each other. A child that finds no room is left out, except the first of its class (every volume
    shows every class): then the whole layout is redrawn.
    """
    parent = objects == parent_id
    window = ndimage.find_objects(parent.astype(np.uint8))[0]
    room = _shrink(parent[window], config.parent_wall)
    local = objects[window]  # a view: stamping into it writes the volume
    placed: list[int] = []
    for index, class_id in enumerate(plan):
        size = _truncated_normal(rng, *getattr(config, _SIZE_OF[class_id]))
        box = _object_box(_SHAPE_OF[class_id], size, rng, config, irregular)
        corner = _place(room, box, rng)
        if corner is None:
            if class_id not in plan[:index]:
                raise _NoRoom(f"a {LEVEL_CLASSES[3][class_id]} of size {size:.1f} inside a "
                              f"{LEVEL_CLASSES[3][classes[parent_id]]}")
            continue
        object_id = len(classes)
        classes.append(class_id)
        _stamp(local, box, corner, object_id)
        room &= ~_grow(local == object_id, config.sibling_gap)
        placed.append(object_id)
    return placed


def _count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _organelle_plan(n_mitochondria: int, n_vesicles: int) -> list[int]:
    """One mitochondrion and one vesicle first (they must fit), then the rest alternately.

    Big cubes are the hardest to fit, so each pair starts with one; alternating keeps either kind
    from taking all the room.
    """
    extra_m = [MITOCHONDRION] * (n_mitochondria - 1)
    extra_v = [VESICLE] * (n_vesicles - 1)
    rest = [c for pair in itertools.zip_longest(extra_m, extra_v) for c in pair if c is not None]
    return [MITOCHONDRION, VESICLE, *rest]


def _build_objects(rng: np.random.Generator, config: ToyConfig,
                   irregular: bool) -> tuple[np.ndarray, np.ndarray]:
    """An object-id volume (0 = background, 1 = cell, then one id per object) and each id's class."""
    for _ in range(_MAX_LAYOUTS):
        try:
            return _layout(rng, config, irregular)
        except _NoRoom as reason:
            last = reason
    raise ConfigError(f"{last} never found room in {_MAX_LAYOUTS} layouts; make the parents larger or "
                      "the children, parent_wall or sibling_gap smaller in the ToyConfig")


def _layout(rng: np.random.Generator, config: ToyConfig, irregular: bool) -> tuple[np.ndarray, np.ndarray]:
    objects = np.zeros((config.shape,) * 3, dtype=np.int32)
    objects[_cell_mask(rng, config, irregular)] = 1
    classes = [BACKGROUND, CELL]
    plan = _organelle_plan(_count(rng, config.n_mitochondria), _count(rng, config.n_vesicles))
    for parent_id in _place_children(objects, 1, plan, classes, rng, config, irregular):
        child = _CHILD_OF[classes[parent_id]]
        _place_children(objects, parent_id, [child] * _count(rng, config.n_small_per_parent),
                        classes, rng, config, irregular)
    return objects, np.asarray(classes, dtype=np.uint8)


# --- intensities ------------------------------------------------------------------------------------

def _frequency_grids(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies (cycles/voxel) of the rfftn grid along z, y, x, broadcastable against each other."""
    fz = fft.fftfreq(shape[0])[:, None, None]
    fy = fft.fftfreq(shape[1])[None, :, None]
    fx = fft.rfftfreq(shape[2])[None, None, :]
    return fz, fy, fx


def _filtered_noise(shape: tuple[int, int, int], gain: np.ndarray, std: float,
                    rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise shaped by ``gain`` in frequency space, zero mean, scaled to ``std``."""
    field = fft.irfftn(fft.rfftn(rng.standard_normal(shape)) * gain, s=shape)
    field -= field.mean()
    spread = field.std()
    return field * (std / spread) if spread > 0 else field


def texture_field(shape: tuple[int, int, int], spec: TextureSpec, rng: np.random.Generator) -> np.ndarray:
    """A fresh random-phase texture of this kind over the whole volume (float64, std = amplitude)."""
    fz, fy, fx = _frequency_grids(shape)
    if spec.orientation is None:
        distance2 = (np.sqrt(fz ** 2 + fy ** 2 + fx ** 2) - spec.frequency) ** 2
        gain = np.exp(-distance2 / (2 * spec.bandwidth ** 2))
    else:
        u = np.asarray(spec.orientation, dtype=np.float64)
        u = u / np.linalg.norm(u) * spec.frequency
        gain = sum(np.exp(-((fz - s * u[0]) ** 2 + (fy - s * u[1]) ** 2 + (fx - s * u[2]) ** 2)
                          / (2 * spec.bandwidth ** 2)) for s in (1, -1))
    return _filtered_noise(shape, gain, spec.amplitude, rng)


def pink_noise(shape: tuple[int, int, int], rng: np.random.Generator, magnitude: float = 0.25,
               exponent: float = 1.0) -> np.ndarray:
    """Noise whose power spectrum falls as 1/f^exponent (pink for 1), zero mean, std = magnitude."""
    fz, fy, fx = _frequency_grids(shape)
    radius = np.sqrt(fz ** 2 + fy ** 2 + fx ** 2)
    radius[0, 0, 0] = np.inf  # no DC component: the noise has zero mean
    return _filtered_noise(shape, radius ** (-exponent / 2), magnitude, rng)


def _paint(objects: np.ndarray, classes: np.ndarray, rng: np.random.Generator,
           config: ToyConfig) -> np.ndarray:
    """Each object's own mean, plus its kind's texture, plus pink noise everywhere."""
    means = rng.normal(*config.intensity, size=len(classes))
    image = means[objects]
    voxel_class = classes[objects]
    for class_id, spec in enumerate(config.textures):
        texture = texture_field(objects.shape, spec, rng)
        inside = voxel_class == class_id
        image[inside] += texture[inside]
    image += pink_noise(objects.shape, rng, config.noise_magnitude, config.noise_exponent)
    return image.astype(np.float32)


# --- files ------------------------------------------------------------------------------------------

def toy_file_names(index: int) -> dict[str, str]:
    """File names of volume ``index`` of a dataset: the image and the truth at each level."""
    stem = f"toy_{index:03d}"
    levels = {f"level{level}": f"{stem}_level{level}.tif" for level in (1, 2, 3)}
    return {"image": f"{stem}_image.tif", **levels}


def write_toy_dataset(outdir, n: int, seed: int, *, irregular: bool = False, config: ToyConfig = ToyConfig(),
                      overwrite: bool = False) -> list[dict[str, Path]]:
    """Write ``n`` volumes to ``outdir``; volume k is ``make_toy_volume(seed + k)``.

    Per volume: ``toy_KKK_image.tif`` (float32 ImageJ TIFF) and ``toy_KKK_level{1,2,3}.tif`` (uint8
    label TIFFs, ids as in LEVEL_CLASSES). Existing files are refused before anything is written,
    unless ``overwrite``, so a typo in the folder never half-replaces a dataset.
    """
    import tifffile

    from .validation import writable_folder
    from .volume_io import write_labels

    if n < 1:
        raise ConfigError(f"the number of volumes must be >= 1, got {n}")
    config.validate()
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise VolumeError(f"{outdir} is a file; choose a folder for the dataset")
    writable_folder(outdir, what="dataset", create=True)
    written = [{key: outdir / name for key, name in toy_file_names(k).items()} for k in range(n)]
    existing = [path for files in written for path in files.values() if path.exists()]
    if existing and not overwrite:
        raise VolumeError(f"{len(existing)} dataset file(s) already exist in {outdir} (e.g. "
                          f"{existing[0].name}); choose another folder or allow overwriting (--overwrite)")
    for k, files in enumerate(written):
        volume = make_toy_volume(seed + k, config, irregular=irregular)
        tifffile.imwrite(files["image"], volume.image, imagej=True, metadata={"axes": "ZYX"})
        for level in (1, 2, 3):
            write_labels(files[f"level{level}"], volume.truth[level], overwrite=overwrite)
    return written
