"""Multi-scale triplet sampling on the fly (method.md §5): the self-supervision of the hierarchy.

Each example is a parent cube (the anchor), a concentric smaller cube (the positive child: the same
subtree) and a cube of the child's size centred outside the parent (the negative), all three resized
to the network input. Fresh sizes and places are drawn for every batch, instead of the released
code's fixed precomputed triplets.

Geometry, in voxel-index coordinates where voxel i spans [i - 1/2, i + 1/2]:
- the parent side r is drawn among the odd sides in [parent_min, parent_max] (uniformly, or
  log-uniformly with `log_uniform_parent`), capped so that it fits the volume and leaves room for a
  negative beside it, and the parent is placed uniformly where it fits;
- the child side is drawn in U{child_min … min(child_max, r − 1) − 1} and is *not* forced odd: a
  cube is resampled over its continuous extent [centre − side/2, centre + side/2], so an even side
  is still exactly concentric with the parent;
- the negative's centre is drawn uniformly among the voxels outside the parent whose cube of the
  child's side lies inside the volume.

With `intensity_jitter`, each of the three patches then gets its own random brightness offset, so
that parent and child have to be matched by texture, not by mean intensity alone.

All cubes of a batch are resampled in one `grid_sample` call per volume on the training device.
Sample points are the centres of input_size³ equal cells of the cube, which is what trilinear
`F.interpolate(crop, size=input_size, align_corners=False)` uses; where a cube is upsampled, points
within half an output cell of its faces interpolate with the voxels just outside it (instead of
repeating the edge voxel) — the same values a dense, fully convolutional pass over a resized volume
sees at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import HypsegConfig
from .device import resolve_device
from .errors import VolumeError

PAIR_CONTRAST = 0.25
"""Standard deviation of the log contrast factor of each invariance view (sample_pairs)."""
PAIR_NOISE = 0.1
"""Standard deviation of the Gaussian noise added to each invariance view (normalised intensity units)."""


@dataclass
class TripletBoxes:
    """Where each example of a batch came from (voxel indices (z, y, x)); sides are in voxels."""

    volume: np.ndarray            # (B,) index into the sampler's volumes
    parent_centre: np.ndarray     # (B, 3); also the positive child's centre
    parent_side: np.ndarray       # (B,) odd
    child_side: np.ndarray        # (B,) side of the positive and of the negative
    negative_centre: np.ndarray   # (B, 3)


def _largest_odd_at_most(value: torch.Tensor | int):
    return value - 1 + value % 2


class TripletSampler:
    """Draws (parent, positive, negative) batches of shape (B, 1, S, S, S), S = config.input_size.

    `volumes` are already normalised (see IntensityStats); they are moved to `device` once.
    Deterministic given `seed`: the geometry is drawn on the CPU with a torch.Generator, so a seed
    gives the same boxes on every device.
    """

    def __init__(self, volumes: Sequence[np.ndarray | torch.Tensor], config: HypsegConfig, *,
                 device: str | torch.device = "cpu", seed: int = 0):
        self.config = config.validate()
        self.device = resolve_device(device)
        self.input_size = config.input_size
        if len(volumes) == 0:
            raise VolumeError("no volumes to sample from; give at least one 3D volume")
        self._parent_lo = config.parent_min + 1 - config.parent_min % 2
        self._parent_hi = max(self._parent_lo, _largest_odd_at_most(config.parent_max))
        # The negative needs a free voxel at least child_min // 2 from the border beside any parent.
        negative_room = 2 * (config.child_min // 2) + 1
        self.volumes: list[torch.Tensor] = []
        for index, volume in enumerate(volumes):
            if isinstance(volume, np.ndarray) and not volume.flags.writeable:
                volume = np.array(volume)  # torch refuses to share read-only memory
            tensor = torch.as_tensor(volume)
            if tensor.ndim != 3:
                raise VolumeError(f"volume {index} has shape {tuple(tensor.shape)}; the sampler needs 3D "
                                  "(Z, Y, X) volumes")
            shape = tuple(tensor.shape)
            if min(shape) < self._parent_lo or max(shape) < self._parent_lo + negative_room:
                raise VolumeError(
                    f"volume {index} of shape {shape} is too small to sample training patches from: it "
                    f"needs at least {self._parent_lo} voxels on every axis (the smallest parent cube, "
                    f"parent_min={config.parent_min}) and {self._parent_lo + negative_room} on its longest "
                    f"axis (room for a negative child of side child_min={config.child_min} beside it). "
                    "Use a larger volume or lower parent_min / child_min.")
            self.volumes.append(tensor.to(device=self.device, dtype=torch.float32).contiguous()[None, None])
        shapes = torch.tensor([tuple(v.shape[2:]) for v in self.volumes], dtype=torch.int64)
        self._shapes = shapes
        self._weights = shapes.prod(dim=1).to(torch.float64)
        longest = shapes.max(dim=1).values
        self._parent_cap = torch.minimum(_largest_odd_at_most(shapes.min(dim=1).values),
                                         _largest_odd_at_most(longest - negative_room))
        self.generator = torch.Generator().manual_seed(seed)
        offsets = (torch.arange(self.input_size, dtype=torch.float32) + 0.5) / self.input_size - 0.5
        self._offsets = offsets.to(self.device)

    def sample(self, batch_size: int, *, seed: int | None = None, return_boxes: bool = False):
        """A batch (parent, positive, negative), each (B, 1, S, S, S) float32 on the device.

        `seed` reseeds the generator first (training passes one per step, so a resumed run draws
        the same batches as an uninterrupted one). With `return_boxes`, also the TripletBoxes.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        boxes = self._draw_boxes(batch_size)
        centres = torch.stack([boxes["parent_centre"], boxes["parent_centre"], boxes["negative_centre"]], dim=1)
        sides = torch.stack([boxes["parent_side"], boxes["child_side"], boxes["child_side"]], dim=1)
        batch = self._cubes(boxes["volume"], centres, sides)
        if not return_boxes:
            return batch
        return batch + (TripletBoxes(**{key: value.numpy() for key, value in boxes.items()}),)

    def sample_views(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A same-scale batch (anchor, positive, negative), each (B, 1, S, S, S): cubes of side
        config.context, the positive up to config.view_shift voxels from the anchor per axis, the
        negative anywhere (a random voxel lies near the anchor rarely enough), each with its own
        brightness offset. Continues the generator's stream (call it after `sample`)."""
        return self._same_scale_cubes(batch_size, with_negative=True)

    def sample_pairs(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views of one place, each (B, 1, S, S, S): cubes of side config.context up to
        config.view_shift voxels apart per axis, each with its own brightness offset
        (intensity_jitter), contrast (a factor exp(N(0, PAIR_CONTRAST^2))) and Gaussian noise of
        standard deviation PAIR_NOISE, for the invariance term. Continues the generator's stream."""
        views = torch.cat(self._same_scale_cubes(batch_size, with_negative=False), dim=1)   # (B, 2, S, S, S)
        contrast = torch.exp(PAIR_CONTRAST * torch.randn((batch_size, 2), generator=self.generator))
        noise = PAIR_NOISE * torch.randn(views.shape, generator=self.generator)
        views = views * self._on_device(contrast)[:, :, None, None, None] + self._on_device(noise)
        return views[:, :1].contiguous(), views[:, 1:].contiguous()

    def _same_scale_cubes(self, batch_size: int, *, with_negative: bool) -> tuple[torch.Tensor, ...]:
        config = self.config
        volume = torch.multinomial(self._weights, batch_size, replacement=True, generator=self.generator)
        shape = self._shapes[volume]
        margin = torch.clamp((shape - 1) // 2, max=config.context // 2)   # cubes inside where they fit

        def anywhere() -> torch.Tensor:
            return margin + self._uniform_int(shape - 2 * margin)

        anchor = anywhere()
        shift = self._uniform_int(torch.full_like(shape, 2 * config.view_shift + 1)) - config.view_shift
        positive = torch.minimum(torch.maximum(anchor + shift, margin), shape - 1 - margin)
        centres = [anchor, positive] + ([anywhere()] if with_negative else [])
        return self._cubes(volume, torch.stack(centres, dim=1), torch.full((batch_size, len(centres)), config.context))

    def _cubes(self, volume: torch.Tensor, centres: torch.Tensor, sides: torch.Tensor):
        """n cubes per example (centres (B, n, 3), sides (B, n)) resampled to the input size, with
        the brightness jitter: a tuple of n (B, 1, S, S, S) tensors."""
        (batch_size, count), size = sides.shape, self.input_size
        out = torch.empty((batch_size, count, size, size, size), dtype=torch.float32, device=self.device)
        for index in torch.unique(volume).tolist():
            rows = torch.nonzero(volume == index).flatten()
            grid = self._grid(centres[rows].reshape(-1, 3), sides[rows].reshape(-1), self.volumes[index].shape[2:])
            patches = F.grid_sample(self.volumes[index], grid, mode="bilinear", padding_mode="border",
                                    align_corners=False)
            out[self._on_device(rows)] = patches.reshape(len(rows), count, size, size, size)
        if self.config.intensity_jitter > 0:
            offsets = self.config.intensity_jitter * torch.randn((batch_size, count), generator=self.generator)
            out += self._on_device(offsets)[:, :, None, None, None]
        return tuple(out[:, kind:kind + 1].contiguous() for kind in range(count))

    def _uniform_int(self, count: torch.Tensor) -> torch.Tensor:
        """One integer in [0, count) per entry (float64, so large counts stay exact)."""
        draw = torch.rand(count.shape, dtype=torch.float64, generator=self.generator)
        return torch.minimum((draw * count).floor().to(torch.int64), count - 1)

    def _draw_boxes(self, batch_size: int) -> dict[str, torch.Tensor]:
        config, generator, uniform_int = self.config, self.generator, self._uniform_int

        volume = torch.multinomial(self._weights, batch_size, replacement=True, generator=generator)
        shape = self._shapes[volume]                                   # (B, 3)
        n_parent_sides = torch.full((batch_size,), (self._parent_hi - self._parent_lo) // 2 + 1)
        if config.log_uniform_parent:
            u = torch.rand(batch_size, dtype=torch.float64, generator=generator)
            side = torch.exp(np.log(self._parent_lo) + u * (np.log(self._parent_hi + 1) - np.log(self._parent_lo)))
            step = torch.minimum((side.floor().to(torch.int64) - self._parent_lo) // 2, n_parent_sides - 1)
        else:
            step = uniform_int(n_parent_sides)
        parent_side = torch.minimum(self._parent_lo + 2 * step, self._parent_cap[volume])
        parent_half = parent_side // 2

        room = shape.max(dim=1).values - parent_side
        child_hi = torch.clamp(torch.minimum(parent_side - 1, torch.tensor(config.child_max)) - 1,
                               max=_largest_odd_at_most(room)).clamp(min=config.child_min)
        child_side = config.child_min + uniform_int(child_hi - config.child_min + 1)

        parent_centre = parent_half[:, None] + uniform_int(shape - 2 * parent_half[:, None])
        negative_centre = self._outside_parent(shape, parent_centre, parent_half, child_side // 2, uniform_int)
        return {"volume": volume, "parent_centre": parent_centre, "parent_side": parent_side,
                "child_side": child_side, "negative_centre": negative_centre}

    def _outside_parent(self, shape, parent_centre, parent_half, child_half, uniform_int) -> torch.Tensor:
        """Uniform centres among the voxels outside the parent where a child cube fits the volume.

        The allowed set (a box minus the parent box) is split into six disjoint boxes — below and
        above the parent along z, then along y within the parent's z range, then along x within its
        z and y range — one is picked in proportion to its size, then a voxel uniformly inside it.
        """
        lo = child_half[:, None].expand(-1, 3)
        hi = shape - 1 - lo
        inside_lo = torch.maximum(parent_centre - parent_half[:, None], lo)
        inside_hi = torch.minimum(parent_centre + parent_half[:, None], hi)
        full = torch.stack([lo, hi], dim=-1)                           # (B, 3, 2) per axis [start, end]
        inside = torch.stack([inside_lo, inside_hi], dim=-1)
        below = torch.stack([lo, inside_lo - 1], dim=-1)
        above = torch.stack([inside_hi + 1, hi], dim=-1)
        slabs = []
        for axis in range(3):
            for part in (below, above):
                ranges = [inside[:, a] for a in range(axis)] + [part[:, axis]] + \
                         [full[:, a] for a in range(axis + 1, 3)]
                slabs.append(torch.stack(ranges, dim=1))               # (B, 3, 2)
        slabs = torch.stack(slabs, dim=1)                              # (B, 6, 3, 2)
        lengths = (slabs[..., 1] - slabs[..., 0] + 1).clamp(min=0)     # (B, 6, 3)
        sizes = lengths.prod(dim=-1).to(torch.float64)                 # (B, 6), each row > 0 by construction
        choice = torch.multinomial(sizes, 1, generator=self.generator).flatten()
        chosen = slabs[torch.arange(len(choice)), choice]              # (B, 3, 2)
        return chosen[..., 0] + uniform_int(chosen[..., 1] - chosen[..., 0] + 1)

    def _on_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host tensor (drawn by the CPU generator: every device gets the same boxes) on the device; on a
        GPU copied from pinned memory without waiting for the device's queue, so sampling the next step
        does not hold the host until the last one has run."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _grid(self, centres: torch.Tensor, sides: torch.Tensor, shape) -> torch.Tensor:
        """grid_sample grid (1, n·S, S, S, 3) of the cell centres of n cubes, normalised (x, y, z)."""
        centres = self._on_device(centres.to(torch.float32))
        sides = self._on_device(sides.to(torch.float32))
        points = centres[:, :, None] + sides[:, None, None] * self._offsets      # (n, 3, S) voxel coords
        extent = self._on_device(torch.tensor(tuple(shape), dtype=torch.float32))
        normalised = (2 * points + 1) / extent[None, :, None] - 1                # align_corners=False
        n, size = len(centres), self.input_size
        z = normalised[:, 0, :, None, None].expand(n, size, size, size)
        y = normalised[:, 1, None, :, None].expand(n, size, size, size)
        x = normalised[:, 2, None, None, :].expand(n, size, size, size)
        return torch.stack([x, y, z], dim=-1).reshape(1, n * size, size, size, 3)
