"""npe2 reader: opens MRC, TIFF, NIfTI and OME-Zarr volumes as Image layers with their physical scale.

An OME-Zarr image with several resolution levels opens as one multiscale layer (napari shows the
level that suits the zoom, read lazily chunk by chunk); the widgets work on its finest level.

Thin on purpose: all reading and checking happens in ``core.volume_io``. A file that cannot be
used raises its VolumeError from the returned function; napari shows that message to the user
(``viewer.open`` re-raises it, the File > Open dialog shows it) and keeps running.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .core.volume_io import KNOWN_UNITS, READ_SUFFIXES, ZARR_SUFFIXES, read_volume, suffix_of

LayerData = tuple[object, dict, str]


def get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerData]] | None:
    """Return a reader for one volume file, or for several of the same kind; else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    suffixes = {suffix_of(p) for p in paths}
    if not paths or len(suffixes) != 1 or suffixes.pop() not in READ_SUFFIXES:
        return None
    if any(Path(p).is_dir() and suffix_of(p) not in ZARR_SUFFIXES for p in paths):
        return None
    return read_layers


def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """One Image layer per file, scaled by its voxel spacing, with the source space in metadata."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [_image_layer(Path(p)) for p in paths]


def _image_layer(path: Path) -> LayerData:
    volume = read_volume(path)
    affine = None if volume.affine is None else volume.affine.tolist()
    kwargs = {
        "name": path.name.rstrip("/")[: -len(suffix_of(path))] or path.name,
        "scale": volume.spacing,
        "axis_labels": ("z", "y", "x"),
        "metadata": {
            "hypseg_volume": {
                "spacing": list(volume.spacing),
                "unit": volume.unit,
                "affine": affine,
                "source": str(path),
            }
        },
    }
    if volume.unit in KNOWN_UNITS:  # napari (pint) rejects unit names it does not know
        kwargs["units"] = (volume.unit,) * 3
    data = volume.data
    if suffix_of(path) in ZARR_SUFFIXES:
        from .core.zarr_io import zarr_levels

        if len(zarr_levels(path)) > 1:
            data = [volume.data] + [read_volume(path, level=i).data for i in range(1, len(zarr_levels(path)))]
            kwargs["multiscale"] = True
    return data, kwargs, "image"
