"""npe2 writer: saves a Labels layer as TIFF, MRC or NIfTI with the layer's physical scale.

Labels made on a NIfTI image carry that image's affine in their metadata (the reader puts it
there), so they are written back into exactly the voxel space of the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layer_labels import coarse_labels
from .core.errors import VolumeError
from .core.volume_io import write_labels as write_label_volume


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: (path, layer data, layer attributes) -> [written path].

    Overwrites: napari's save dialog has already asked the user before calling a writer.
    A layer showing a hierarchy level through its colour table is written as shown (coarse labels).
    """
    data, attributes = coarse_labels(data, attributes)
    scale = attributes.get("scale") or (1.0, 1.0, 1.0)
    units = {str(unit) for unit in attributes.get("units") or ("pixel",)}
    if len(units) > 1:
        raise VolumeError(
            f"The layer has a different unit per axis ({', '.join(sorted(units))}); "
            "set one unit for all axes before saving."
        )
    source = (attributes.get("metadata") or {}).get("hypseg_volume") or {}
    affine = source.get("affine")
    written = write_label_volume(
        path,
        np.asarray(data),
        spacing=tuple(scale)[-3:],
        unit=units.pop(),
        affine=None if affine is None else np.asarray(affine, dtype=float),
        overwrite=True,
    )
    return [str(written)]
