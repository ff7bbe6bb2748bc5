"""The "binning" and "region" fields of the Train and Segment widgets and what they do in their
worker threads.

Binning averages blocks of 2³ or 4³ voxels before training or segmenting (core/region.py), in the
worker thread, slab by slab: napari stays responsive and a memory-mapped or Zarr volume is never
loaded whole. A segmentation of a binned image is shown on the binned grid, placed over the image:
its layer's scale is the voxel size times the factor, shifted by half a block minus half a voxel.

A region is a Labels layer drawn over the image (nonzero = inside), as `--mask` is in the CLI:
training patches stay within the bounding box of its voxels, and segmentation clusters that box and
labels only the voxels inside; the result still covers the whole image (0 = not labelled), so it
lines up with the image and exports as a mask of the whole volume.
"""

from __future__ import annotations

import threading
from typing import Any

from napari.layers import Labels
from qtpy.QtWidgets import QComboBox

from ..core.region import BIN_FACTORS
from ._common import LayerPicker, volume_of

TOOLTIP = ("Average blocks of 2×2×2 or 4×4×4 voxels first (as tomograms are usually processed): 8 or 64 "
           "times fewer voxels, each covering a larger neighbourhood. Segment with the binning the model "
           "was trained with.")


def binning_field() -> QComboBox:
    box = QComboBox()
    for factor in BIN_FACTORS:
        box.addItem("none" if factor == 1 else f"{factor} ({factor}³ voxels → 1)", factor)
    box.setToolTip(TOOLTIP)
    return box


REGION_TOOLTIP = ("Optional: a Labels layer of the image's size marking where to work (nonzero voxels). Training "
                  "draws patches only within their bounding box; segmentation labels only them. Empty: the "
                  "whole image.")


def region_field(viewer: Any) -> LayerPicker:
    return LayerPicker(viewer, Labels, multiple=False, nullable=True, tooltip=REGION_TOOLTIP)


def region_mismatch(region: Any, images: list) -> str | None:
    """Why the region layer cannot be used with these image layers (None when it can): checked before
    a run starts, so a wrong layer is a message, not a failed run."""
    if region is None:
        return None
    shape = tuple(volume_of(region).shape[-3:])
    for image in images:
        image_shape = tuple(volume_of(image).shape)
        if shape != image_shape:
            return (f"The region layer {region.name!r} has shape {shape} but the image {image.name!r} "
                    f"{image_shape}; draw the region on that image (Layers › New Labels layer over it) or "
                    "leave 'region' empty.")
    return None


def binned(data: Any, factor: int, mask: Any = None) -> Any:
    """The volume the core works on: `data` itself, or the box of `mask` (nonzero voxels) and/or its
    block means (float32)."""
    if factor == 1 and mask is None:
        return data
    from ..core.region import plan_region, region_volume

    return region_volume(data, plan_region(data.shape, mask=mask, factor=factor))


def in_memory(data: Any) -> Any:
    """Training holds its volumes in memory: a lazy (dask/Zarr) volume is read here, in the worker."""
    import numpy as np

    return np.asarray(data)


def binned_segment_job(trained: Any, image: Any, *, factor: int, holder: dict, n_fine: int, device: str, seed: int,
                       stop: threading.Event, mask: Any = None):
    """Worker body: bin (in this thread), then the core's segmentation of the region's box, placed back
    in the whole (binned) image; the binned image is left in `holder["image"]` for the features table."""
    from ..core.progress import Progress
    from ..core.region import plan_region
    from ..core.segmentation import segment

    region = plan_region(image.shape, mask=mask, factor=factor)
    if factor > 1:
        yield Progress("bin", 0, 1, message=f"binning by {factor}")
    holder["image"] = binned(image, factor)
    segmentation = yield from segment(trained, holder["image"][region.binned_box], n_fine=n_fine, device=device,
                                      stop=stop, seed=seed)
    return None if segmentation is None else segmentation.placed(region)


def binned_segment_jobs(trained: Any, images: list, *, factor: int, holders: list[dict], n_fine: int, device: str,
                        seed: int, stop: threading.Event, mask: Any = None):
    """Worker body for several images, one after the other (a Progress of stage "images" before each
    when there are several); returns the segmentations of those finished, all of them unless stopped."""
    from ..core.progress import Progress

    done = []
    for index, (image, holder) in enumerate(zip(images, holders)):
        if len(images) > 1:
            yield Progress("images", index, len(images))
        segmentation = yield from binned_segment_job(trained, image, factor=factor, holder=holder, n_fine=n_fine,
                                                     device=device, seed=seed, stop=stop, mask=mask)
        if segmentation is None or stop.is_set():
            break
        done.append(segmentation)
    return done


def binned_placement(scale: Any, translate: Any, factor: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, translate) of a layer on the binned grid of an image layer with this scale and translate."""
    scale = tuple(float(s) for s in scale)
    return (tuple(s * factor for s in scale),
            tuple(float(t) + (factor - 1) / 2 * s for t, s in zip(translate, scale)))
