"""train(): fit the hyperbolic VAE on volumes, as a generator of progress events (method.md §6).

Stoppable (a threading.Event, checked whenever the losses are read: every step on a CPU; the model
is saved and returned), resumable (a checkpoint carries weights, optimiser state, step and history),
and reproducible: every step draws
its batch and its posterior noise from generators seeded by (config.seed, step) alone, so a seed
reproduces a run on the same device, and a run resumed from a checkpoint continues exactly as the
uninterrupted run would have. Under torchrun, the processes share each step (core/distributed.py).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import torch

from .checkpoint import TrainedModel, read_checkpoint, require_sidecar_free, restore_weights, save_checkpoint
from .config import HypsegConfig, get_preset
from .device import describe_device, resolve_device, training_dtype
from .distributed import BatchShards
from .errors import CheckpointError, ConfigError, VolumeError
from .normalization import IntensityStats
from .progress import ETA_S, LOSS_TERMS, LR, PATCHES_PER_S, Progress
from .sampling import TripletSampler
from .volume_io import as_volume_array

__all__ = ["TrainedModel", "train"]

METRICS_EVERY_GPU = 10
"""Steps between reads of the losses on a GPU by default: a read waits for the device to finish its
queue, so reading every step would keep the host from queueing the next step ahead."""

RESUMABLE_CHANGES = ("steps", "checkpoint_every")
"""Settings a resumed run may change: how long to go on and how often to save, nothing that
changes what one step does."""


def train(
    volumes: Sequence[np.ndarray] | np.ndarray,
    config: HypsegConfig | None = None,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    stop: threading.Event | None = None,
    shards: int | None = None,
    precision: str = "float32",
    metrics_every: int | None = None,
) -> Generator[Progress, None, TrainedModel]:
    """Train on `volumes` (raw intensities; normalised here) for `config.steps` steps.

    Yields a Progress per step (metrics: total, recon, kl, triplet, texture, view, patches_per_s — 3 patches per
    triplet —, eta_s, lr); the first event names the device. With `checkpoint_path`, saves every
    `config.checkpoint_every` steps, at the end, on a stop request and when the generator is closed.
    `resume` continues a checkpoint's run (its configuration is used when `config` is None; a
    different one is refused, except for `steps` and `checkpoint_every`) with its intensity
    statistics and optimiser state. Returns the TrainedModel (in eval mode).

    Each step's batch is `shards` parts of `config.batch_size` triplets (default: one per process of
    the torch.distributed process group, 1 without one); in a process group each rank draws its own
    part and only rank 0 saves.

    `precision` is the arithmetic of the decoder's convolutions (device.training_dtype): "float32"
    (the default), "auto" (bfloat16 where the hardware has it natively) or "bfloat16".

    `metrics_every` is how many steps pass between reads of the losses on the host (default: 1 on a
    CPU, METRICS_EVERY_GPU on a GPU). Progress is yielded, and a stop request honoured, at those reads
    (and at every checkpoint and the last step); the history still has every step. A divergence found
    at a read is reported at its step; the checkpoint on disk is always from before it.
    """
    device = resolve_device(device)
    compute_dtype = training_dtype(device, precision)
    if metrics_every is None:
        metrics_every = 1 if device.type == "cpu" else METRICS_EVERY_GPU
    if isinstance(metrics_every, bool) or not isinstance(metrics_every, int) or metrics_every < 1:
        raise ConfigError(f"metrics_every must be a positive integer, got {metrics_every!r}")
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if checkpoint_path is not None:
        require_sidecar_free(checkpoint_path)
    resumed = read_checkpoint(resume, device=device) if resume is not None else None
    if config is None:
        config = resumed["config"] if resumed else get_preset()
    if not isinstance(config, HypsegConfig):
        raise ConfigError(f"config must be a HypsegConfig (see get_preset), got {type(config).__name__}")
    config = config.validate()
    if resumed:
        _require_same_run(resumed["config"], config, Path(resume))
    parts = BatchShards(shards)
    arrays = _checked_volumes(volumes)
    stats = resumed["stats"] if resumed else IntensityStats.fit(arrays)
    sampler = TripletSampler([stats.apply(a) for a in arrays], config, device=device, seed=config.seed)

    from .model import HypsegVAE

    model = HypsegVAE(config)
    if resumed:
        restore_weights(model, resumed["state_dict"], Path(resume))
    model.to(device).train()
    objective = parts.objective(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, amsgrad=True)
    if resumed and resumed.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(resumed["optimizer"])
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"the optimiser state in {resume} does not fit the model ({error}); "
                                  "the file is damaged — start a new training.") from None
    noise = torch.Generator(device=device)

    step = resumed["step"] if resumed else 0
    history: list[dict[str, float]] = list(resumed["history"]) if resumed else []
    same_file = resumed is not None and checkpoint_path is not None and \
        checkpoint_path.resolve() == Path(resume).resolve()
    saved_step = step if same_file else None
    patches_per_step = 3 * config.batch_size * parts.count

    def save() -> Path | None:
        nonlocal saved_step
        if checkpoint_path is None or not parts.writes:
            return None
        if saved_step != step:
            save_checkpoint(checkpoint_path, model, config, stats, step=step, history=history,
                            optimizer_state=optimizer.state_dict())
            saved_step = step
        return checkpoint_path

    def stopped() -> bool:
        return parts.any_stopped(stop is not None and stop.is_set(), device)

    first = f"training on {describe_device(device)}"
    if parts.grouped:
        first += f", one of {parts.world_size} processes"
    if resumed:
        first += f", resuming {resume} at step {step}"
    metrics: dict[str, float] = {}
    unread: list[tuple[int, float, torch.Tensor]] = []   # (step, lr, losses and gradient norm) not read yet
    try:
        yield Progress("train", step, config.steps, message=first)
        started, start_step = time.perf_counter(), step
        while True:
            if not unread and (step >= config.steps or stopped()):   # nothing (more) to do: done, or stopped
                message = f"stopped at step {step}" if step < config.steps else f"finished at step {step}"
                yield Progress("train", step, config.steps, message=message, metrics=metrics,
                               checkpoint=save())
                break
            lr = config.learning_rate * min(1.0, (step + 1) / config.warmup_steps) \
                if config.warmup_steps else config.learning_rate
            for group in optimizer.param_groups:
                group["lr"] = lr

            def shard_losses(shard: int) -> dict[str, torch.Tensor]:
                parent, positive, negative = sampler.sample(config.batch_size,
                                                            seed=_step_seed(config.seed, step, 0, shard))
                views = sampler.sample_views(config.batch_size) if config.view_weight > 0 else None
                pairs = sampler.sample_pairs(config.batch_size) if config.invariance_weight > 0 else None
                noise.manual_seed(_step_seed(config.seed, step, 1, shard))
                return objective(parent, positive, negative, views=views, pairs=pairs, generator=noise,
                                 compute_dtype=compute_dtype)

            losses = parts.losses(shard_losses)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            unread.append((step, lr, torch.cat([parts.reduced(losses), norm.detach().float().reshape(1)])))
            reading = (step + 1) % metrics_every == 0 or (step + 1) % config.checkpoint_every == 0 \
                or step + 1 >= config.steps
            if reading:   # one host read for every step since the last one, before this step's update
                last_saved = checkpoint_path if saved_step is not None else None
                for (at, at_lr, _), row in zip(unread, torch.stack([row for *_, row in unread]).tolist()):
                    values = dict(zip(losses, row[:-1]))
                    if not (math.isfinite(values["total"]) and math.isfinite(row[-1])):
                        raise _diverged(config, at, values, last_saved)
                    history.append({"step": at + 1, **values, LR: at_lr})
                unread.clear()
            optimizer.step()
            step += 1
            if not reading:
                continue

            elapsed = time.perf_counter() - started
            seconds_per_step = elapsed / (step - start_step)
            metrics = {key: values[key] for key in LOSS_TERMS}
            metrics.update({PATCHES_PER_S: patches_per_step / seconds_per_step,
                            ETA_S: seconds_per_step * (config.steps - step), LR: lr})
            finishing = step >= config.steps or stopped()
            due = finishing or step % config.checkpoint_every == 0
            message = ""
            if finishing:
                message = f"finished at step {step}" if step >= config.steps else f"stopped at step {step}"
            yield Progress("train", step, config.steps, message=message, metrics=dict(metrics),
                           checkpoint=save() if due else None)
            if finishing:
                break
    except GeneratorExit:
        save()   # closed by the consumer: keep what was learnt
        raise
    return TrainedModel(model=model.eval(), config=config, stats=stats, step=step, device=device,
                        checkpoint_path=checkpoint_path, history=history)


def _checked_volumes(volumes) -> list[np.ndarray]:
    if isinstance(volumes, np.ndarray):
        volumes = [volumes]
    volumes = list(volumes)
    if not volumes:
        raise VolumeError("no volumes to train on; give at least one 3D volume")
    return [as_volume_array(v, name=f"volume {i}" if len(volumes) > 1 else "the volume")
            for i, v in enumerate(volumes)]


def _require_same_run(stored: HypsegConfig, requested: HypsegConfig, path: Path) -> None:
    old, new = stored.to_dict(), requested.to_dict()
    differ = [key for key in old if old[key] != new[key] and key not in RESUMABLE_CHANGES]
    if differ:
        details = ", ".join(f"{key}: {old[key]!r} in the checkpoint, {new[key]!r} now" for key in differ)
        raise CheckpointError(f"cannot resume {path}: it was trained with other settings ({details}). "
                              "Resume with the checkpoint's settings (only steps and checkpoint_every "
                              "may change) or start a new training.")


def _step_seed(seed: int, step: int, stream: int, shard: int = 0) -> int:
    """A seed for one random stream of one part of one step's batch, depending on nothing but (seed,
    step, stream, shard); part 0 keeps the seeds of single-process runs, so they reproduce as before."""
    entropy = [seed % 2**64, step, stream] + ([shard] if shard else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _diverged(config: HypsegConfig, step: int, values: dict[str, float], saved: Path | None) -> ConfigError:
    terms = ", ".join(f"{key} {values[key]:.4g}" for key in LOSS_TERMS if key in values)
    where = f" The last checkpoint ({saved}) is from before the divergence." if saved else ""
    return ConfigError(
        f"training diverged at step {step + 1}: the loss or its gradient is not finite ({terms}). "
        f"Train again with a lower learning rate (now {config.learning_rate:g}; try "
        f"{config.learning_rate / 4:g}) or more warm-up steps (now {config.warmup_steps}).{where}")
