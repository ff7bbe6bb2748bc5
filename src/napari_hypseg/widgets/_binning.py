"""The "binning" field of the Train and Segment widgets and what it does in their worker threads.

Binning averages blocks of 2³ or 4³ voxels before training or segmenting (core/region.py), in the
worker thread, slab by slab: napari stays responsive and a memory-mapped or Zarr volume is never
loaded whole. A segmentation of a binned image is shown on the binned grid, placed over the image:
its layer's scale is the voxel size times the factor, shifted by half a block minus half a voxel.
"""

from __future__ import annotations

import threading
from typing import Any

from qtpy.QtWidgets import QComboBox

from ..core.region import BIN_FACTORS

TOOLTIP = ("Average blocks of 2×2×2 or 4×4×4 voxels first (as tomograms are usually processed): 8 or 64 "
           "times fewer voxels, each covering a larger neighbourhood. Segment with the binning the model "
           "was trained with.")


def binning_field() -> QComboBox:
    box = QComboBox()
    for factor in BIN_FACTORS:
        box.addItem("none" if factor == 1 else f"{factor} ({factor}³ voxels → 1)", factor)
    box.setToolTip(TOOLTIP)
    return box


def binned(data: Any, factor: int) -> Any:
    """The volume the core works on: `data` itself, or its block means (float32)."""
    if factor == 1:
        return data
    from ..core.region import plan_region, region_volume

    return region_volume(data, plan_region(data.shape, factor=factor))


def in_memory(data: Any) -> Any:
    """Training holds its volumes in memory: a lazy (dask/Zarr) volume is read here, in the worker."""
    import numpy as np

    return np.asarray(data)


def binned_segment_job(trained: Any, image: Any, *, factor: int, holder: dict, n_fine: int, device: str, seed: int,
                       stop: threading.Event):
    """Worker body: bin (in this thread), then the core's segmentation; the binned image is left in
    `holder["image"]` for the features table."""
    from ..core.progress import Progress
    from ..core.segmentation import segment

    if factor > 1:
        yield Progress("bin", 0, 1, message=f"binning by {factor}")
    holder["image"] = binned(image, factor)
    return (yield from segment(trained, holder["image"], n_fine=n_fine, device=device, stop=stop, seed=seed))


def binned_segment_jobs(trained: Any, images: list, *, factor: int, holders: list[dict], n_fine: int, device: str,
                        seed: int, stop: threading.Event):
    """Worker body for several images, one after the other (a Progress of stage "images" before each
    when there are several); returns the segmentations of those finished, all of them unless stopped."""
    from ..core.progress import Progress

    done = []
    for index, (image, holder) in enumerate(zip(images, holders)):
        if len(images) > 1:
            yield Progress("images", index, len(images))
        segmentation = yield from binned_segment_job(trained, image, factor=factor, holder=holder, n_fine=n_fine,
                                                     device=device, seed=seed, stop=stop)
        if segmentation is None or stop.is_set():
            break
        done.append(segmentation)
    return done


def binned_placement(scale: Any, translate: Any, factor: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, translate) of a layer on the binned grid of an image layer with this scale and translate."""
    scale = tuple(float(s) for s in scale)
    return (tuple(s * factor for s in scale),
            tuple(float(t) + (factor - 1) / 2 * s for t, s in zip(translate, scale)))
