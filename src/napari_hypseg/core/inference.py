"""Dense per-voxel latents of a whole volume, tile by tile (method.md §7).

Each voxel's latent is the posterior mean of the cube of side `context` (voxels of the volume)
centred on it, resized to the encoder's patch size P as in training (sampling.py samples a cube of
side r at the centres of P³ equal cells, i.e. on a grid of spacing r / P through its centre).
Instead of one encoder pass per voxel, each tile is resampled once onto the grid of spacing
h = context / P (trilinear; skipped when context == P), `model.dense_mean` runs over it — the encoder
is fully convolutional and unpadded, so every output is the mean of one P³ window, centred on a grid
point — and the latents are interpolated (trilinearly) back to the voxel centres.

Exactness across tiles. The resampling grid is global (points m·h, m integer, with positions and
weights computed in integers), each tile carries a halo wide enough for every window and every
interpolation it needs, and every tile has the same shape (the last tile along an axis is shifted
back to end at the border). A voxel's latent is therefore the same, up to float rounding in the
convolutions, whatever the tile size. Normalisation (`stats.apply`) is per tile.

Borders: the volume is extended by reflection (numpy's "reflect": d c b | a b c d | c b a), so a
voxel at the border sees a mirrored neighbourhood rather than a constant; training replicates the
edge instead, but only where a cube pokes half a cell outside the volume.

Memory: the encoder's activations dominate (hundreds of bytes per resampled voxel). Tiles are
grouped into passes of at most `batch_size` whose estimated activations fit a budget (CPU_MEMORY_BUDGET
on CPU and MPS, half the free memory on CUDA); a tile too big for the budget alone is shrunk, which
changes nothing in the result (see above).

Precision: where the hardware has native bfloat16 (recent x86 CPUs, most CUDA GPUs) the
convolutions run in it by default, 2-3x faster on such a CPU; `precision="float32"` gives the exact
path. Tile invariance holds for either, up to that precision's rounding.

Stop: `stop.is_set()` is checked before each batch of tiles; a stopped run returns None (a partial
field would look valid but is not), and the `out` file it was writing is removed.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch

from .device import inference_dtype, resolve_device
from .errors import ConfigError, VolumeError
from .normalization import IntensityStats
from .pages import release_pages
from .progress import Progress, voxel_rate
from .validation import integer
from .volume_io import as_volume_array

CPU_MEMORY_BUDGET = 1.5 * 2**30
"""Bytes of encoder activations one pass may hold on the CPU (and Apple MPS, whose memory is shared)."""
_MIN_TILE = 8


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """numpy's 'reflect' padding as an index map, for any distance outside [0, size)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


class _AxisPlan:
    """Along one axis: tile starts, and for a tile at `start` which source voxels it reads and how
    they are resampled and mapped back. Grid point m sits at m * context / patch voxels; latents are
    computed at every `stride`-th grid point (q * stride). All positions are integers over P."""

    def __init__(self, size: int, tile: int, context: int, patch: int, stride: int = 1):
        self.size, self.context, self.patch, self.stride = size, context, patch, stride
        self.tile = min(tile, size)
        self.starts = list(range(0, size - self.tile, self.tile)) + [size - self.tile]
        self.resample = context != patch
        self.interpolate = self.resample or stride > 1
        self.halo = (patch - 1) // 2
        # Output (latent) points a tile needs: the same count for every start.
        self.n_out = (self.tile - 1) * patch // (context * stride) + 3 if self.interpolate else self.tile
        self.n_in = (self.n_out - 1) * stride + patch
        """Grid points of the encoder input of a tile."""

    def first_output(self, start: int) -> int:
        return start * self.patch // (self.context * self.stride) if self.interpolate else start

    def source(self, start: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(source voxel indices to read, unreflected), and the resampling (left index into them,
        weight of the right neighbour) of each input grid point; the last two None without resampling."""
        m = np.arange(self.n_in) + self.first_output(start) * self.stride - self.halo
        if not self.resample:
            return m, None, None
        numerator = m * self.context                   # position m*h = numerator / P voxels
        left = numerator // self.patch
        weight = (numerator - left * self.patch) / self.patch
        first = int(left[0])
        voxels = np.arange(first, int(left[-1]) + 2)
        return voxels, left - first, weight

    def back(self, start: int) -> tuple[np.ndarray, np.ndarray] | None:
        """For each voxel of the tile: index of its left output point (relative to the tile's first)
        and the weight of the right one; None when the outputs are the voxels."""
        if not self.interpolate:
            return None
        spacing = self.context * self.stride                        # output spacing, in voxels x P
        numerator = np.arange(start, start + self.tile) * self.patch     # voxel v at grid position v*P/C
        left = numerator // spacing
        weight = (numerator - left * spacing) / spacing
        return left - self.first_output(start), weight


def _lerp(tensor: torch.Tensor, axis: int, left: np.ndarray, weight: np.ndarray) -> torch.Tensor:
    """Linear interpolation along `axis`: tensor[left] * (1 - w) + tensor[left + 1] * w."""
    device, dtype = tensor.device, tensor.dtype
    index = torch.as_tensor(left, device=device)
    w = torch.as_tensor(weight, dtype=dtype, device=device)
    shape = [1] * tensor.dim()
    shape[axis] = len(weight)
    w = w.reshape(shape)
    return tensor.index_select(axis, index) * (1 - w) + tensor.index_select(axis, index + 1) * w


def latent_field(model: torch.nn.Module, image, stats: IntensityStats, *, context: int | None = None,
                 tile: int = 64, batch_size: int = 4, device: str | torch.device = "auto",
                 out: str | os.PathLike | None = None, stop: threading.Event | None = None,
                 precision: str = "auto", stride: int = 1) -> Generator[Progress, None, np.ndarray | None]:
    """Per-voxel latent field (Z, Y, X, d) float32 of `image` (Z, Y, X; a read-only memmap is fine).

    context: side in voxels of the neighbourhood each latent describes (default: the model's
    `config.context`). tile: side of the cubes of voxels computed per encoder pass; batch_size: tiles
    per pass. The model is moved to `device` and run in eval mode. With `out` (a .npy path) the field
    is written to a memory-mapped .npy file and returned as that memmap, so it never sits in RAM.
    precision: "auto" (bfloat16 convolutions where the hardware has them natively, see
    device.inference_dtype), "float32" or "bfloat16". stride: latents are computed exactly at every
    stride-th point of the encoder's grid (spacing stride * context / P voxels) and interpolated
    to the voxels between; 2 costs about half of 1 (the encoder's last, widest layers run on 1/8 of
    the points), and the field is smoothed over more than that spacing before it is clustered.
    Yields Progress(stage="infer", step=tiles done, total=tiles); returns None if stopped.
    """
    volume = as_volume_array(image, "image")
    patch = int(model.patch_size)
    context = integer("context", model.config.context if context is None else context, minimum=1)
    tile = integer("tile", tile, minimum=1)
    batch_size = integer("batch_size", batch_size, minimum=1)
    stride = integer("stride", stride, minimum=1)
    if min(volume.shape) < context:
        raise VolumeError(
            f"the image (shape {tuple(volume.shape)}) is smaller than the model's context of {context} "
            f"voxels along an axis; each voxel's latent describes a {context}³ neighbourhood, so every "
            f"side must be at least {context} voxels (or choose a smaller context).")
    device = resolve_device(device)
    compute_dtype = inference_dtype(device, precision)
    # oneDNN's convolutions (CPU, and bfloat16 anywhere) are fastest on channels-last activations
    # and weights: 1.5x in float32 on a CPU, and its fused ReLUs need them (model._convolve).
    memory_format = torch.channels_last_3d if device.type == "cpu" or compute_dtype != torch.float32 \
        else torch.contiguous_format
    budget = _memory_budget(device)
    bytes_per_voxel = _activation_bytes_per_voxel(model.config)
    while True:
        plans = [_AxisPlan(size, tile, context, patch, stride) for size in volume.shape]
        tile_bytes = bytes_per_voxel * math.prod(plan.n_in for plan in plans)
        if tile_bytes <= budget or tile <= _MIN_TILE:
            break
        tile = max(_MIN_TILE, int(tile * 0.8))
    batch_size = int(max(1, min(batch_size, budget // tile_bytes)))
    starts = [(z, y, x) for z in plans[0].starts for y in plans[1].starts for x in plans[2].starts]
    latent_dim = int(model.config.latent_dim)
    shape = (*volume.shape, latent_dim)
    if out is not None:
        out = Path(out)
        if out.suffix != ".npy":
            raise ConfigError(f"latents are written as a .npy file; give a path ending in .npy, got {out}")
        field = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
    else:
        field = np.empty(shape, dtype=np.float32)

    was_training = model.training
    model.to(device, memory_format=memory_format).eval()
    began = time.monotonic()
    try:
        yield Progress("infer", 0, len(starts), message=f"{len(starts)} tiles of up to {tile}³ voxels, "
                                                           f"{batch_size} per pass, on {device}")
        for first in range(0, len(starts), batch_size):
            if stop is not None and stop.is_set():
                if out is not None:
                    del field
                    out.unlink(missing_ok=True)
                return None
            batch = starts[first:first + batch_size]
            with torch.inference_mode():
                inputs = torch.stack([_resampled_tile(volume, stats, plans, start, device) for start in batch])
                inputs = inputs[:, None].contiguous(memory_format=memory_format)
                means = model.dense_mean(inputs, compute_dtype=compute_dtype, stride=stride)
                for latents, start in zip(means, batch):
                    for axis, (plan, s) in enumerate(zip(plans, start)):
                        mapping = plan.back(s)
                        if mapping is not None:
                            latents = _lerp(latents, axis + 1, *mapping)
                    z, y, x = start
                    field[z:z + plans[0].tile, y:y + plans[1].tile, x:x + plans[2].tile] = \
                        latents.permute(1, 2, 3, 0).cpu().numpy()
            release_pages(volume, field)
            done = first + len(batch)
            elapsed = time.monotonic() - began
            tile_voxels = math.prod(p.tile for p in plans)
            yield Progress("infer", done, len(starts),
                           metrics=voxel_rate(done * tile_voxels, len(starts) * tile_voxels, elapsed))
    finally:
        model.to(memory_format=torch.contiguous_format).train(was_training)
    if out is not None:
        field.flush()
    return field


def _activation_bytes_per_voxel(config) -> float:
    """Peak bytes per encoder input voxel: float32 input and output of the widest layer (a Conv3d's
    input and output, or a ReLU's copy), plus a third for convolution workspace and interpolation."""
    channels = (1, *config.encoder_channels, config.hidden, config.hidden, config.latent_dim)
    widest = max(max(a + b for a, b in zip(channels[:-1], channels[1:])), 2 * max(channels))
    return 4.0 * widest * 4 / 3


def _memory_budget(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2
    return CPU_MEMORY_BUDGET


def _resampled_tile(volume: np.ndarray, stats: IntensityStats, plans: list[_AxisPlan],
                    start: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """The encoder input of one tile: its source voxels (reflected at the borders) normalised, then
    resampled onto the global grid of spacing context / P."""
    sources = [plan.source(s) for plan, s in zip(plans, start)]
    reflected = [_reflect(voxels, plan.size) for (voxels, _, _), plan in zip(sources, plans)]
    # Read the bounding box of the needed voxels in one slice (memmap-friendly), then pick.
    box = tuple(slice(int(r.min()), int(r.max()) + 1) for r in reflected)
    block = np.asarray(volume[box])[np.ix_(*(r - int(r.min()) for r in reflected))]
    tensor = torch.from_numpy(stats.apply(block)).to(device)
    for axis, (_, left, weight) in enumerate(sources):
        if left is not None:
            tensor = _lerp(tensor, axis, left, weight)
    return tensor
