"""OME-Zarr / Zarr volumes: read one resolution level lazily, write label volumes as OME-Zarr.

Reading uses zarr's own store and the OME-NGFF ``multiscales`` metadata (version 0.4, in the group's
attributes, or 0.5, under ``attributes["ome"]``): ``datasets[level]`` names the array of that
resolution level and its ``coordinateTransformations`` ``scale`` (times the multiscale's own
``scale``, if any) gives the voxel size; the ``axes`` give the unit. Axes other than z, y, x (time,
channel) must have one element. A plain Zarr array (no multiscales) reads with spacing 1 (pixel).

The data come back as a dask array over the Zarr chunks: nothing is read until a region is asked for,
so a tomogram of any size opens at once, napari displays it chunk by chunk and inference reads it tile
by tile.

Writing makes an OME-Zarr 0.4 image (Zarr format 2, which every current OME-Zarr reader opens) with
one resolution level and the voxel size as its ``scale``, written chunk by chunk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import replaced_atomically
from .errors import VolumeError

ZARR_SUFFIX = ".zarr"
SPATIAL_AXES = ("z", "y", "x")
LABEL_CHUNKS = (64, 256, 256)


def is_zarr_path(path: str | os.PathLike) -> bool:
    """A path that names a Zarr store: a ``.zarr`` name, or a folder holding Zarr metadata."""
    path = Path(path)
    if path.name.lower().rstrip("/").endswith(ZARR_SUFFIX):
        return True
    return path.is_dir() and any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


def _open(path: Path):
    import zarr

    if not path.exists():
        raise VolumeError(f"Cannot open {path}: it does not exist; choose a volume file or .zarr folder.")
    if not path.is_dir():
        raise VolumeError(f"Cannot open {path}: a Zarr store is a folder, and this is a file.")
    try:
        return zarr.open(store=str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        raise VolumeError(f"Cannot read {path} as Zarr: no Zarr group or array was found there ({exc}).") from exc


def _multiscales(attrs: dict) -> list | None:
    if "multiscales" in attrs:
        return attrs["multiscales"]
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"]
    return None


def _scale_of(transforms: Sequence[dict] | None, ndim: int) -> np.ndarray:
    scale = np.ones(ndim)
    for transform in transforms or ():
        if transform.get("type") == "scale" and "scale" in transform:
            scale = scale * np.asarray(transform["scale"], dtype=float)
    return scale


def zarr_levels(path: str | os.PathLike) -> list[tuple[int, ...]]:
    """Shapes of the resolution levels of a (multiscale) Zarr image, finest first."""
    path = Path(path)
    node = _open(path)
    multiscales = _multiscales(dict(node.attrs))
    if multiscales is None:
        return [tuple(node.shape)] if hasattr(node, "shape") else []
    return [tuple(node[d["path"]].shape) for d in multiscales[0]["datasets"]]


def read_zarr(path: str | os.PathLike, *, level: int = 0):
    """A :class:`~napari_hypseg.core.volume_io.Volume` whose data is a lazy dask array (Z, Y, X)."""
    import dask.array as da

    from .volume_io import Volume, canonical_unit

    path = Path(path)
    node = _open(path)
    attrs = dict(node.attrs)
    multiscales = _multiscales(attrs)
    if multiscales is None:
        if not hasattr(node, "shape"):
            arrays = sorted(name for name, _ in node.arrays()) if hasattr(node, "arrays") else []
            raise VolumeError(
                f"Cannot open {path}: it is a Zarr group without OME-NGFF 'multiscales' metadata"
                + (f"; open one of its arrays instead, e.g. {path / arrays[0]}" if arrays else
                   " and without arrays; choose an OME-Zarr image or a Zarr array") + ".")
        if level != 0:
            raise VolumeError(f"{path} is a single Zarr array with one resolution level; use level 0.")
        array, axes, scale = node, None, np.ones(node.ndim)
    else:
        image = multiscales[0]
        datasets = image.get("datasets") or []
        if not 0 <= level < len(datasets):
            raise VolumeError(f"{path} has {len(datasets)} resolution level(s), 0..{len(datasets) - 1}; "
                              f"level {level} does not exist. Choose one of those.")
        dataset = datasets[level]
        array = node[dataset["path"]]
        axes = image.get("axes")
        scale = _scale_of(dataset.get("coordinateTransformations"), array.ndim)
        scale = scale * _scale_of(image.get("coordinateTransformations"), array.ndim)
    data = da.from_zarr(array)
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes] if axes else None
    if names is None or len(names) != data.ndim:
        names = [None] * (data.ndim - 3) + list(SPATIAL_AXES) if data.ndim >= 3 else [None] * data.ndim
    spatial = [i for i, name in enumerate(names) if name in SPATIAL_AXES]
    index = []
    for i, size in enumerate(data.shape):
        if i in spatial:
            index.append(slice(None))
        elif size == 1:
            index.append(0)
        else:
            raise VolumeError(
                f"{path} has shape {tuple(data.shape)} (axes {', '.join(str(n) for n in names)}): axis "
                f"{names[i] or i} has {size} elements. A single 3D volume (Z, Y, X) is expected: write one "
                "channel or time point per Zarr image.")
    data = data[tuple(index)]
    if data.ndim != 3:
        raise VolumeError(f"{path} holds a {data.ndim}D image of shape {tuple(data.shape)}; a 3D volume "
                          "(Z, Y, X) is expected.")
    if data.dtype.kind not in "biuf":
        raise VolumeError(f"{path} has data type {data.dtype}; a grey-value volume of integers or floats is "
                          "expected.")
    spacing = tuple(float(s) for s in scale[spatial]) if len(spatial) == 3 else (1.0, 1.0, 1.0)
    unit = "pixel"
    if axes and len(spatial) == 3:
        units = {canonical_unit(axes[i].get("unit", "")) for i in spatial if isinstance(axes[i], dict)}
        if len(units) == 1:
            unit = units.pop()
    return Volume(data, spacing, unit, None, path)


def write_zarr_labels(path: str | os.PathLike, labels, *, spacing: Sequence[float], unit: str,
                      overwrite: bool = False) -> Path:
    """Write (Z, Y, X) integer labels as a one-level OME-Zarr 0.4 image; a temporary folder is moved
    into place, so a failed write never leaves half a store under the name."""
    import zarr

    path = Path(path)
    if path.exists() and not overwrite:
        raise VolumeError(f"{path} already exists; choose another name or allow overwriting it.")
    if not path.parent.is_dir():
        raise VolumeError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    axes = [{"name": n, "type": "space"} for n in SPATIAL_AXES]
    if unit != "pixel":
        ngff_unit = {"mm": "millimeter"}.get(unit, unit)
        for axis in axes:
            axis["unit"] = ngff_unit
    with replaced_atomically(path, VolumeError) as temporary:
        root = zarr.open_group(str(temporary), mode="w", zarr_format=2)
        chunks = tuple(min(c, s) for c, s in zip(LABEL_CHUNKS, labels.shape))
        array = root.create_array("0", shape=labels.shape, dtype=labels.dtype, chunks=chunks, fill_value=0)
        rows = chunks[0]
        for start in range(0, labels.shape[0], rows):
            array[start:start + rows] = np.asarray(labels[start:start + rows])
        root.attrs["multiscales"] = [{
            "version": "0.4",
            "name": path.name[: -len(ZARR_SUFFIX)] if path.name.endswith(ZARR_SUFFIX) else path.name,
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [float(s) for s in spacing]}]}],
        }]
        if path.exists() and not path.is_dir():
            path.unlink()
    return path


def checked_lazy_volume(array, name: str = "volume"):
    """as_volume_array for chunked arrays (dask, zarr): the same checks, chunk by chunk, and a dask
    array (Z, Y, X) back, still lazy. A NaN/inf scan reads each chunk once."""
    import dask.array as da

    if not isinstance(array, da.Array):
        array = da.from_array(array, chunks=getattr(array, "chunks", "auto"))
    if array.dtype.kind not in "biuf":
        raise VolumeError(f"{name} has data type {array.dtype}; a grey-value volume of integers or floats is "
                          "expected (convert complex or colour data to one real channel first).")
    if array.size == 0:
        raise VolumeError(f"{name} has shape {tuple(array.shape)}: it holds no voxels.")
    array = array[tuple(0 if size == 1 else slice(None) for size in array.shape)]
    if array.ndim != 3:
        raise VolumeError(f"{name} has shape {tuple(array.shape)} without its singleton axes, a {array.ndim}D "
                          "image. A single 3D volume (Z, Y, X) is expected.")
    if array.dtype.kind == "f":
        bad_slices = np.asarray((~da.isfinite(array)).any(axis=(1, 2)).compute())
        if bad_slices.any():
            z = int(np.argmax(bad_slices))
            y, x = np.argwhere(~np.isfinite(np.asarray(array[z])))[0]
            raise VolumeError(
                f"{name} contains NaN or infinite values (the first at z={z}, y={y}, x={x}). Replace them "
                "(e.g. numpy.nan_to_num) or crop them out before using the volume.")
    return array
