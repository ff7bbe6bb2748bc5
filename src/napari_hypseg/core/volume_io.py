"""Read 3D volumes (MRC, TIFF, NIfTI) and write label volumes back in the same space.

Every front end opens files through here, so a corrupt file, a 2D image or a colour stack gives the
same :class:`VolumeError` message in napari, the CLI and the Python API. MRC tomograms are
memory-mapped: a 4 GB tomogram opens without being copied into RAM.

Axis convention: ``Volume.data`` is always ``(Z, Y, X)`` and ``spacing`` is ``(z, y, x)``.
NIfTI arrays are ``(i, j, k)`` in nibabel; they are transposed to ``(k, j, i)`` on reading (a view,
no copy) and back on writing, and the file's affine is kept, so labels drawn on a NIfTI image are
written in exactly the voxel space of that image.

Label dtypes per format (a round trip keeps the dtype wherever the format has it):

- NIfTI: every integer dtype, kept exactly.
- TIFF (ImageJ hyperstack): uint8, uint16, int16 kept exactly; other integer dtypes are stored as
  the smallest of uint8/uint16/int16 that holds their values (read back as that dtype).
- MRC: int8, int16, uint16 kept exactly; other integer dtypes (uint8 included: MRC has no unsigned
  8-bit mode) are stored as the smallest of int8/uint16/int16 that holds their values, so uint8
  labels up to 127 read back as int8 and larger ones as uint16.

Labels whose values fit none of a format's dtypes raise a :class:`VolumeError` that suggests NIfTI.

Hostile files: every header is checked against the file's size before anything is mapped or
allocated, a .nii.gz stream is read to its end so its CRC is verified, complex data is refused, and
a voxel size that is zero, negative or not finite becomes 1 on that axis with a :class:`SpacingWarning`
(MRC's 0, "unknown", stays silent). Whatever a corrupt file makes a format library raise becomes a
:class:`VolumeError` naming the file.

Spacing precision: MRC and NIfTI store voxel sizes as float32 (MRC as cell size / voxel count), so
spacing is read back rounded to 6 significant digits: 0.37 written reads back as 0.37, not
0.36999997. TIFF x/y spacing is stored as a 32-bit rational built from the decimal, z as text.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import struct
import stat
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .atomic import replaced_atomically
from .errors import VolumeError
from .pages import release_pages
from .zarr_io import is_zarr_path, read_zarr

MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st")
TIFF_SUFFIXES = (".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ZARR_SUFFIXES = (".zarr",)    # OME-Zarr / Zarr folders, see zarr_io.py
READ_SUFFIXES: tuple[str, ...] = MRC_SUFFIXES + TIFF_SUFFIXES + NIFTI_SUFFIXES + ZARR_SUFFIXES
WRITE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".mrc", ".nii", ".nii.gz", ".zarr")

LENGTH_UNIT_EXPONENTS = {"angstrom": -10, "nanometer": -9, "micrometer": -6, "mm": -3, "meter": 0}
"""Canonical length units and their power of ten in meters (powers, so conversions stay exact)."""
KNOWN_UNITS = ("pixel", *LENGTH_UNIT_EXPONENTS)

_UNIT_ALIASES = {
    "": "pixel", "pixel": "pixel", "pixels": "pixel", "px": "pixel",
    "a": "angstrom", "å": "angstrom", "\\u00c5": "angstrom", "angstrom": "angstrom",
    "angstroms": "angstrom", "ångström": "angstrom",
    "nm": "nanometer", "nanometer": "nanometer", "nanometre": "nanometer", "nanometers": "nanometer",
    "µm": "micrometer", "μm": "micrometer", "um": "micrometer", "\\u00b5m": "micrometer",
    "micron": "micrometer", "microns": "micrometer", "micrometer": "micrometer",
    "micrometre": "micrometer", "micrometers": "micrometer",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "millimeters": "mm",
    "m": "meter", "meter": "meter", "metre": "meter", "meters": "meter",
}
_IMAGEJ_UNIT = {"micrometer": "micron", "nanometer": "nm"}
_NIFTI_UNIT_CODE = {"mm": "mm", "micrometer": "micron", "meter": "meter"}
_FINITE_CHECK_BYTES = 32 << 20
_GZIP_CHUNK = 16 << 20


class _CorruptHeader(ValueError):
    """A header that contradicts itself or the file's size; read_volume names the file and format."""


class SpacingWarning(UserWarning):
    """A file's voxel size was unusable (zero, negative, NaN) and 1 was used on that axis instead."""


@dataclass(eq=False)
class Volume:
    """A 3D image and where its voxels are in space; ``data`` may be a read-only np.memmap."""

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str = "pixel"
    affine: np.ndarray | None = None
    source: Path | None = None


def suffix_of(path: str | os.PathLike) -> str:
    """The lower-case format suffix of ``path``; ``.nii.gz`` counts as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def canonical_unit(unit: object) -> str:
    """Map the many spellings of a unit (ImageJ, OME, pint, NIfTI) to one name; unknown ones kept."""
    text = str(unit).strip()
    return _UNIT_ALIASES.get(text.lower(), text)


def as_volume_array(array, name: str = "volume") -> np.ndarray:
    """Check that ``array`` is one finite, real-valued 3D volume; return it squeezed to (Z, Y, X).

    Callers use this before training or inference. The NaN/inf scan runs slab by slab, so a
    memory-mapped tomogram is never copied into RAM (the result is a view of ``array``).
    """
    if _is_lazy(array):   # dask / zarr: checked chunk by chunk, never loaded whole (zarr_io.py)
        from .zarr_io import checked_lazy_volume

        return checked_lazy_volume(array, name)
    array = np.asanyarray(array)
    if array.dtype.kind not in "biuf":
        raise VolumeError(
            f"{name} has data type {array.dtype}; a grey-value volume of integers or floats is "
            "expected (convert complex or colour data to one real channel first)."
        )
    volume = _squeeze_to_3d(array, name)
    if volume.dtype.kind == "f":
        _require_finite(volume, name)
    return volume


def read_volume(path: str | os.PathLike, *, level: int = 0) -> Volume:
    """Read one 3D volume; every problem with the file is a VolumeError naming the file.

    ``level``: resolution level of a multiscale OME-Zarr image (0 = full resolution; see zarr_io.py).
    """
    path = Path(path)
    suffix = suffix_of(path)
    if _is_zarr(path):
        return read_zarr(path, level=level)
    require_level(path, level)
    if suffix not in READ_SUFFIXES:
        raise VolumeError(
            f"Cannot open {path}: unsupported file type {suffix or '(no suffix)'!r}. "
            f"Supported: {', '.join(READ_SUFFIXES)}."
        )
    _require_regular_file(path)
    kind, reader = _READERS[suffix]
    try:
        volume = reader(path)
    except VolumeError:
        raise
    except MemoryError as exc:
        raise VolumeError(f"Cannot read {path}: it does not fit in memory ({exc or 'out of memory'}).") from exc
    except Exception as exc:  # a format library parsing hostile bytes may raise anything: the file is bad
        detail = str(exc) if isinstance(exc, _CorruptHeader) else f"{type(exc).__name__}: {str(exc)[:200]}"
        raise VolumeError(
            f"Cannot read {path} as {kind}: the file is corrupt, truncated or not {kind} ({detail})."
        ) from exc
    if volume.data.dtype.kind not in "biuf":
        raise VolumeError(
            f"Cannot use {path}: its voxels are {volume.data.dtype} numbers; a grey-value volume of "
            "integers or real numbers is expected (convert complex data to its magnitude first)."
        )
    volume.spacing = _usable_spacing(volume.spacing, path)
    volume.source = path
    return volume


def require_level(path: str | os.PathLike, level: int) -> None:
    """Refuse a resolution level other than 0 for a file that has one level (only multiscale OME-Zarr
    images have more); cheap, so a CLI checks it before any volume is read. Zarr levels are checked
    when the image is opened (zarr_io.read_zarr)."""
    if level != 0 and not _is_zarr(Path(path)):
        raise VolumeError(f"level {level} was asked for, but {path} has one resolution level (0); levels "
                          "exist in multiscale OME-Zarr images only: use level 0 (leave --level out)")


def _is_zarr(path: Path) -> bool:
    return suffix_of(path) in ZARR_SUFFIXES or (path.is_dir() and is_zarr_path(path))


def _require_regular_file(path: Path) -> None:
    """A file with bytes in it: not missing, not a folder, not a device such as /dev/zero."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VolumeError(f"Cannot open {path}: it does not exist; choose a volume file.") from None
    except OSError as exc:
        raise VolumeError(f"Cannot open {path}: {exc.strerror or exc}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise VolumeError(f"Cannot open {path}: it is a folder; choose a volume file.")
    if not stat.S_ISREG(info.st_mode):
        raise VolumeError(
            f"Cannot open {path}: it is not a regular file (a device, pipe or socket); choose a volume file."
        )
    if info.st_size == 0:
        raise VolumeError(f"Cannot open {path}: the file is empty (0 bytes).")
    if not os.access(path, os.R_OK):
        raise VolumeError(f"Cannot open {path}: permission denied; make the file readable.")


def _usable_spacing(spacing: Sequence[float], path: Path) -> tuple[float, float, float]:
    """The file's voxel size with 1 on every axis whose value is zero, negative or not finite."""
    values = tuple(float(s) for s in spacing)
    usable = tuple(v if math.isfinite(v) and v > 0 else 1.0 for v in values)
    if usable != values:
        warnings.warn(
            f"{path} gives the voxel size {values} (z, y, x); the unusable values were replaced by 1. "
            "Set the voxel size in the file (e.g. Fiji: Image > Properties) if distances matter.",
            SpacingWarning,
            stacklevel=3,
        )
    return usable  # type: ignore[return-value]


def _require_size(what: str, needed: int, available: int) -> None:
    if needed > available:
        raise _CorruptHeader(f"its header describes {what}, {needed:,} bytes, but it holds {available:,}")


def _require_dimensions(shape: Sequence[int]) -> None:
    if not shape or any(int(n) <= 0 for n in shape):
        raise _CorruptHeader(f"its header gives the dimensions {tuple(int(n) for n in shape)}, "
                             "and every size must be positive")


def write_labels(
    path: str | os.PathLike,
    labels,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    unit: str = "pixel",
    affine: np.ndarray | Sequence[Sequence[float]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a (Z, Y, X) label volume as TIFF, MRC or NIfTI, atomically, and return its path.

    ``affine`` is used by NIfTI only (the source image's affine puts labels in its space; without
    one, the affine is built from ``spacing``). The file is written to a temporary file beside the
    target and moved into place, so a failed write never destroys an existing file.
    """
    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in WRITE_SUFFIXES:
        raise VolumeError(
            f"Cannot write labels to {path}: unsupported file type {suffix or '(no suffix)'!r}. "
            f"Supported: {', '.join(WRITE_SUFFIXES)}."
        )
    if path.exists() and not overwrite:
        raise VolumeError(f"{path} already exists; choose another name or allow overwriting it.")
    if not path.parent.is_dir():
        raise VolumeError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    labels = _label_array(labels)
    spacing = _checked_spacing(spacing)
    unit = canonical_unit(unit)
    if suffix in ZARR_SUFFIXES:
        from .zarr_io import write_zarr_labels

        return write_zarr_labels(path, labels, spacing=spacing, unit=unit, overwrite=overwrite)
    writer = {".mrc": _write_mrc, ".nii": _write_nifti, ".nii.gz": _write_nifti}.get(suffix, _write_tiff)
    # A fresh name created by the format library itself, so the file gets the usual permissions.
    with replaced_atomically(path, VolumeError, suffix=suffix) as temporary:
        writer(temporary, labels, spacing, unit, affine)
    return path


# --- shape and value checks -------------------------------------------------------------------


def _squeeze_to_3d(array: np.ndarray, name: str, axes: str | None = None) -> np.ndarray:
    """Drop singleton axes; anything but one 3D grey volume is an error that says what to do."""
    found = f"{name} has shape {tuple(array.shape)}" + (f" (axes {axes})" if axes else "")
    if array.size == 0:
        raise VolumeError(f"{found}: it holds no voxels.")
    if array.dtype.names or (axes and "S" in axes):
        raise VolumeError(
            f"{found}: it is an RGB/RGBA colour image. A single grey-value 3D volume (Z, Y, X) is "
            "expected: convert it to greyscale or split the colour channels first."
        )
    volume = np.squeeze(array)
    if volume.ndim == 3:
        return volume
    if volume.ndim < 3:
        raise VolumeError(
            f"{found}, a {volume.ndim}D image. A single 3D volume (Z, Y, X) is expected: "
            "open a z-stack, tomogram or MRI volume."
        )
    raise VolumeError(
        f"{found}, a {volume.ndim}D stack. A single 3D volume (Z, Y, X) is expected: split the "
        "channels or time points first (Fiji: Image > Color > Split Channels, or Image > Stacks > "
        "Tools > Reduce Dimensionality; numpy: stack[t] or stack[:, c]) and open one 3D volume."
    )


def _is_lazy(array) -> bool:
    """A chunked array (dask, zarr) that numpy would load whole: shape, dtype and slicing, no buffer."""
    return (not isinstance(array, np.ndarray) and hasattr(array, "shape") and hasattr(array, "dtype")
            and hasattr(array, "__getitem__") and (hasattr(array, "chunks") or hasattr(array, "dask")))


def _require_finite(volume: np.ndarray, name: str) -> None:
    """Scan a float volume for NaN/inf in slabs of ~32 MB, so a memmap is never loaded whole."""
    step = max(1, _FINITE_CHECK_BYTES // max(1, volume[0].nbytes))
    for start in range(0, volume.shape[0], step):
        bad = ~np.isfinite(volume[start : start + step])
        release_pages(volume)
        if bad.any():
            z, y, x = np.argwhere(bad)[0]
            raise VolumeError(
                f"{name} contains NaN or infinite values (the first at z={start + z}, y={y}, x={x}). "
                "Replace them (e.g. numpy.nan_to_num) or crop them out before using the volume."
            )


def _label_array(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        raise VolumeError(
            f"Labels have data type {labels.dtype}; integer labels are expected "
            "(round and cast them, e.g. labels.astype(numpy.uint16))."
        )
    return _squeeze_to_3d(labels, "labels")


def _checked_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise VolumeError(
            f"Spacing {tuple(spacing)} is not three positive numbers (z, y, x); "
            "give one voxel size per axis, e.g. (1.0, 1.0, 1.0)."
        )
    return values  # type: ignore[return-value]


def _storable(labels: np.ndarray, native: tuple[str, ...], fallback: tuple[str, ...], fmt: str):
    """Keep ``labels`` if ``fmt`` has its dtype, else cast to the first lossless ``fallback`` dtype."""
    if labels.dtype.name in native:
        return labels
    low, high = (int(labels.min()), int(labels.max()))
    for name in fallback:
        info = np.iinfo(name)
        if info.min <= low and high <= info.max:
            return labels.astype(name)
    raise VolumeError(
        f"Labels range from {low} to {high}, which {fmt} cannot store (it holds "
        f"{', '.join(native)}); save them as .nii.gz, which keeps every integer type."
    )


def _float32_decimal(value: float) -> float:
    """A float32-stored voxel size as the decimal that was meant (6 significant digits)."""
    return float(f"{float(value):.6g}")


def _convert(values: Sequence[float], unit: str, to_unit: str) -> tuple[float, ...]:
    power = LENGTH_UNIT_EXPONENTS[unit] - LENGTH_UNIT_EXPONENTS[to_unit]
    return tuple(v * 10.0**power for v in values)


# --- MRC ----------------------------------------------------------------------------------------


def _read_mrc(path: Path) -> Volume:
    import mrcfile
    from mrcfile.utils import data_dtype_from_header

    _require_mrc_extended_header_fits(path)
    with mrcfile.open(path, mode="r", permissive=False, header_only=True) as mrc:
        header = mrc.header
        shape = (int(header.nz), int(header.ny), int(header.nx))
        _require_dimensions(shape)
        needed = 1024 + int(header.nsymbt) + math.prod(shape) * data_dtype_from_header(header).itemsize
    _require_size(f"{shape} voxels", needed, path.stat().st_size)
    # The memmap stays valid after the file object closes; only its writeable flag is dropped.
    with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
        data = mrc.data
        voxel = mrc.voxel_size
    sizes = (float(voxel.z), float(voxel.y), float(voxel.x))
    volume = _squeeze_to_3d(data, str(path))
    if sizes == (0.0, 0.0, 0.0):  # MRC writes 0 when the voxel size is unknown
        return Volume(volume)
    return Volume(volume, tuple(_float32_decimal(s) for s in sizes), "angstrom")


def _require_mrc_extended_header_fits(path: Path) -> None:
    """Check the extended header's size (NSYMBT, word 24) against the file before mrcfile reads that
    many bytes: a corrupt header could otherwise make it allocate gigabytes for a tiny file."""
    with open(path, "rb") as handle:
        header = handle.read(1024)
    if len(header) < 1024:
        return   # mrcfile names this one itself
    little = struct.unpack("<i", header[92:96])[0]
    big = struct.unpack(">i", header[92:96])[0]
    extended = big if header[212] == 0x11 else little   # the machine stamp: 0x11 for big-endian files
    _require_size(f"an extended header of {extended:,} bytes", 1024 + max(extended, 0), path.stat().st_size)


def _write_mrc(tmp: Path, labels, spacing, unit, affine) -> None:
    import mrcfile

    data = _storable(labels, ("int8", "int16", "uint16"), ("int8", "uint16", "int16"), "MRC")
    if unit == "pixel":
        sizes = (0.0, 0.0, 0.0) if spacing == (1.0, 1.0, 1.0) else spacing
    elif unit in LENGTH_UNIT_EXPONENTS:
        sizes = _convert(spacing, unit, "angstrom")
    else:
        raise VolumeError(f"MRC stores voxel sizes in Å; the unit {unit!r} cannot be converted to Å.")
    with mrcfile.new(tmp) as mrc:
        mrc.set_data(np.ascontiguousarray(data))
        mrc.voxel_size = (sizes[2], sizes[1], sizes[0])


# --- TIFF ---------------------------------------------------------------------------------------


@contextmanager
def _log_only_on_success(name: str) -> Iterator[None]:
    """Hold a format library's log records while it reads: a file that fails gets one error line (the
    VolumeError says what is wrong), not the library's notes on each broken tag before it."""
    logger, held = logging.getLogger(name), []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield
    finally:
        logger.removeFilter(hold)
    for record in held:
        logger.handle(record)


def _read_tiff(path: Path) -> Volume:
    import tifffile

    with _log_only_on_success("tifffile"), tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        _require_dimensions(series.shape)
        spacing, unit = _tiff_spacing(tif, series)
        nbytes = math.prod(series.shape) * series.dtype.itemsize
        if series.dataoffset is not None:  # stored contiguously: mapped, so it must all be in the file
            _require_size(f"{tuple(series.shape)} voxels", series.dataoffset + nbytes,
                          path.stat().st_size)
            data = tifffile.memmap(path, mode="r")
        else:  # compressed or scattered: decoded into memory, so it must fit there
            _require_memory(path, nbytes)
            _require_decodable(path, nbytes, {int(page.compression) for page in series.pages if page is not None})
            data = series.asarray()
    return Volume(_squeeze_to_3d(data, str(path), axes), spacing, unit)


MAX_COMPRESSION_RATIO = {8: 1100, 32946: 1100, 32773: 130}
"""TIFF compression tag -> the most its decoded data can outgrow the file: Deflate (8, 32946) at most
1032:1 (zlib's limit), PackBits (32773) 128:1. Others are bounded by the machine's memory only."""


def _require_decodable(path: Path, nbytes: int, compressions: set[int]) -> None:
    """Refuse a header promising more decoded bytes than its compression could hold in this file."""
    ratios = [MAX_COMPRESSION_RATIO.get(code) for code in compressions]
    if not ratios or None in ratios:
        return
    ratio, available = max(ratios), path.stat().st_size
    if nbytes > ratio * available:
        raise _CorruptHeader(f"its header describes {nbytes:,} bytes of voxels, which its compression "
                             f"(at most {ratio}:1) cannot hold in the {available:,} bytes of the file")


def _require_memory(path: Path, nbytes: int) -> None:
    """Refuse before decoding what a header says would exceed this machine's memory."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if nbytes > physical:
        raise VolumeError(
            f"Cannot read {path}: its header describes {nbytes / 2**30:.1f} GiB of decoded voxels, more "
            f"than this machine's memory ({physical / 2**30:.1f} GiB); the header is corrupt, or save "
            "the volume uncompressed (it is then memory-mapped)."
        )


def _tiff_spacing(tif, series) -> tuple[tuple[float, float, float], str]:
    """Spacing from OME physical sizes, else ImageJ metadata + resolution tags, else pixels."""
    if tif.is_ome and tif.ome_metadata:
        found = _ome_spacing(tif.ome_metadata)
        if found is not None:
            return found
    imagej = tif.imagej_metadata
    if imagej is None:
        return (1.0, 1.0, 1.0), "pixel"
    tags = series.keyframe.tags
    y, x = (_inverse_resolution(tags.get(name)) for name in ("YResolution", "XResolution"))
    return (float(imagej.get("spacing", 1.0)), y, x), canonical_unit(imagej.get("unit", "pixel"))


def _inverse_resolution(tag) -> float:
    """Pixel size from a (numerator, denominator) pixels-per-unit tag; exact for short decimals."""
    if tag is None:
        return 1.0
    numerator, denominator = tag.value
    return denominator / numerator if numerator and denominator else 1.0


def _ome_spacing(xml: str) -> tuple[tuple[float, float, float], str] | None:
    pixels = next((el for el in ET.fromstring(xml).iter() if el.tag.split("}")[-1] == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    unit = canonical_unit(pixels.get("PhysicalSizeXUnit", "µm"))
    spacing = []
    for axis in "ZYX":
        value = float(pixels.get(f"PhysicalSize{axis}", 1.0))
        axis_unit = canonical_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if axis_unit != unit and {axis_unit, unit} <= LENGTH_UNIT_EXPONENTS.keys():
            (value,) = _convert([value], axis_unit, unit)
        spacing.append(value)
    return (spacing[0], spacing[1], spacing[2]), unit


def _write_tiff(tmp: Path, labels, spacing, unit, affine) -> None:
    import tifffile

    data = _storable(labels, ("uint8", "uint16", "int16"), ("uint8", "uint16", "int16"), "ImageJ TIFF")
    metadata: dict[str, object] = {"axes": "ZYX", "spacing": spacing[0]}
    if unit != "pixel":
        metadata["unit"] = _IMAGEJ_UNIT.get(unit, unit)
    resolution = tuple(_resolution(s) for s in (spacing[2], spacing[1]))
    tifffile.imwrite(tmp, data, imagej=True, resolution=resolution, metadata=metadata)


def _resolution(size: float) -> tuple[int, int]:
    """Pixels per unit as a 32-bit rational taken from the decimal, so 0.37 reads back as 0.37."""
    ratio = 1 / Fraction(repr(size))
    limit = 2**32 - 1
    if ratio.numerator > limit or ratio.denominator > limit:
        ratio = ratio.limit_denominator(max(1, min(limit, int(limit / ratio))))
    return ratio.numerator, ratio.denominator


# --- NIfTI --------------------------------------------------------------------------------------


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    if suffix_of(path) == ".nii.gz":
        available = _verified_gzip_length(path)
    else:
        available = path.stat().st_size
    image = nib.load(path, mmap="r")  # reads the header only
    header = image.header
    shape = header.get_data_shape()
    _require_dimensions(shape)
    needed = int(header.get_data_offset()) + math.prod(shape) * header.get_data_dtype().itemsize
    _require_size(f"{tuple(int(n) for n in shape)} voxels", needed, available)
    # .nii is memory-mapped; .nii.gz is decompressed.
    raw = np.asanyarray(image.dataobj)
    data = _squeeze_to_3d(raw.T, str(path))  # (i, j, k) -> (k, j, i) = (z, y, x), a view
    zooms = _stored_zooms(path, header)[:3]
    spacing = tuple(_float32_decimal(z) for z in reversed(zooms))
    xyz_unit = header.get_xyzt_units()[0]
    unit = "mm" if xyz_unit == "unknown" else canonical_unit(xyz_unit)
    return Volume(data, spacing, unit, np.array(image.affine, dtype=float))


def _stored_zooms(path: Path, header) -> tuple[float, ...]:
    """The voxel size as the file stores it: nibabel turns a zero into 1 while loading, with a log
    line that does not name the file, so that SpacingWarning says it, as for the other formats."""
    opener = gzip.open if suffix_of(path) == ".nii.gz" else open
    with opener(path, "rb") as handle:
        return type(header).from_fileobj(handle, check=False).get_zooms()


def _verified_gzip_length(path: Path) -> int:
    """Decompress the whole stream once, discarding it, so a CRC or length mismatch anywhere in it
    (a flipped bit, zeroed bytes) is found; nibabel stops reading where the voxels end."""
    total = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(_GZIP_CHUNK):
            total += len(chunk)
    return total


def _write_nifti(tmp: Path, labels, spacing, unit, affine) -> None:
    import nibabel as nib

    code = _NIFTI_UNIT_CODE.get(unit, "unknown")
    if affine is None:
        sizes = spacing
        if code == "unknown" and unit in LENGTH_UNIT_EXPONENTS:
            sizes, code = _convert(spacing, unit, "micrometer"), "micron"
        affine = np.diag([sizes[2], sizes[1], sizes[0], 1.0])
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise VolumeError(f"The NIfTI affine must be a finite 4x4 matrix; got shape {affine.shape}.")
    image = nib.Nifti1Image(labels.T, affine, dtype=labels.dtype)
    image.header.set_xyzt_units(xyz=code)
    nib.save(image, tmp)


_READERS: dict[str, tuple[str, Callable[[Path], Volume]]] = {
    **{suffix: ("an MRC file", _read_mrc) for suffix in MRC_SUFFIXES},
    **{suffix: ("a TIFF file", _read_tiff) for suffix in TIFF_SUFFIXES},
    **{suffix: ("a NIfTI file", _read_nifti) for suffix in NIFTI_SUFFIXES},
}
