"""One model trained by several processes (GPUs, nodes) with PyTorch's DistributedDataParallel.

Each step's batch is drawn in `shards` parts of `config.batch_size` triplets, part s from random
streams seeded by (seed, step, s) alone. A run of N processes (started by `torchrun`) draws part
`rank` on each rank; the gradients are averaged across ranks (NCCL on GPUs, gloo on CPUs), so every
rank takes the same optimiser step. One process given `shards=N` draws all N parts and averages
their losses: the same step, which is what makes a distributed run checkable on one machine.
Only rank 0 writes checkpoints and reports progress; a stop requested on any rank stops all of them
after the same step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from .errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun (and `torch.distributed.run`) set in the environment of every process it starts."""


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


@contextmanager
def torchrun_processes(device_name: str | torch.device = "auto") -> Iterator[tuple[torch.device, bool]]:
    """Yields (this process's device, whether it writes): outside torchrun, the device and True.
    Under torchrun, joins its process group — NCCL for CUDA, gloo otherwise — for the block; "auto"
    and "cuda" then mean this process's GPU on its node (cuda:LOCAL_RANK), and only rank 0 writes."""
    from .device import resolve_device

    device = resolve_device(device_name)
    if not launched_by_torchrun():
        yield device, True
        return
    import torch.distributed as dist

    if device.type == "cuda" and ":" not in str(device_name):
        device = resolve_device(f"cuda:{os.environ['LOCAL_RANK']}")
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield device, dist.get_rank() == 0
    finally:
        dist.destroy_process_group()


class BatchShards:
    """The parts of each step's batch this process draws, and how their losses meet across processes."""

    def __init__(self, shards: int | None = None):
        import torch.distributed as dist

        self.grouped = dist.is_available() and dist.is_initialized()
        self.world_size = dist.get_world_size() if self.grouped else 1
        self.rank = dist.get_rank() if self.grouped else 0
        count = self.world_size if shards is None else shards
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"shards must be a positive integer, got {shards!r}")
        if self.grouped and count != self.world_size:
            raise ConfigError(f"shards={count} in a process group of {self.world_size} processes: each process "
                              "draws one part of the batch; leave shards unset.")
        self.count = count
        self.local = (self.rank,) if self.grouped else tuple(range(count))

    @property
    def writes(self) -> bool:
        """Whether this process writes checkpoints and reports progress (rank 0, or a lone process)."""
        return self.rank == 0

    def objective(self, model: torch.nn.Module) -> Callable[..., dict[str, torch.Tensor]]:
        """`model.loss`, through DistributedDataParallel in a process group so its backward pass
        averages the gradients across ranks."""
        if not self.grouped:
            return model.loss
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [model_device(model)] if model_device(model).type == "cuda" else None
        return DistributedDataParallel(_Objective(model), device_ids=device_ids)

    def losses(self, loss_of_shard: Callable[[int], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The mean of this process's shards' losses (one shard per rank in a process group)."""
        parts = [loss_of_shard(shard) for shard in self.local]
        if len(parts) == 1:
            return parts[0]
        return {key: sum(part[key] for part in parts) / len(parts) for key in parts[0]}

    def reduced(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The losses stacked in one tensor on the device, averaged over all ranks (every rank reports
        and checks the same values); read on the host only when the caller asks."""
        stacked = torch.stack([value.detach().float() for value in losses.values()])
        if self.grouped:
            import torch.distributed as dist

            dist.all_reduce(stacked)
            stacked /= self.world_size
        return stacked

    def any_stopped(self, stopped: bool, device: torch.device) -> bool:
        """True on every rank when a stop was requested on any of them, so all stop after the same step."""
        if not self.grouped:
            return stopped
        import torch.distributed as dist

        flag = torch.tensor([float(stopped)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class _Objective(torch.nn.Module):
    """The model's loss as a forward pass, which is what DistributedDataParallel synchronises."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, parent, positive, negative, *, views=None, pairs=None, generator=None,
                compute_dtype=torch.float32):
        return self.model.loss(parent, positive, negative, views=views, pairs=pairs, generator=generator,
                               compute_dtype=compute_dtype)
