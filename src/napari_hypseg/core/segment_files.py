"""Many volume files, one model: segment each file and write its labels, here or on dask.distributed.

A SegmentTask is one volume file and the label files it becomes; it holds only paths and numbers,
so it travels to a dask worker, which reads the model and the volume itself (a task never ships a
volume). `segment_files` runs tasks in this process, one after the other, or as dask tasks on a
local cluster or on a running scheduler (started on SLURM, PBS or Kubernetes by dask-jobqueue and
friends, see docs/distributed.md). A volume whose label files all exist is skipped unless
`overwrite`; a volume that fails is reported and the others go on.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, HypsegError, OutputError
from .progress import Progress, run_to_completion


@dataclass(frozen=True)
class SegmentTask:
    """One volume file, the model, and the label files to write (one per cut: a k of `ks`, or `radius`)."""

    volume: Path
    outputs: tuple[Path, ...]
    model: Path
    ks: tuple[int, ...] | None = None
    radius: float | None = None
    n_fine: int = 16
    context: int | None = None
    linkage: str | None = None
    ward_top: int | None = None
    latent_smoothing: float | None = None
    boundary_refinement: float | None = None
    latent_scaling: str | None = None
    tile: int = 64
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    level: int = 0
    roi: str | None = None
    mask: Path | None = None
    bin_factor: int = 1
    full_resolution: bool = False
    latents: Path | None = None
    overwrite: bool = False
    inference_stride: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one task: "written", "skipped" (its label files exist) or "failed", and why."""

    task: SegmentTask
    status: str
    detail: str = ""


def segment_file(task: SegmentTask, *, stop: threading.Event | None = None
                 ) -> Generator[Progress, None, list[str] | None]:
    """Segment one volume file and write its label files; returns a line per file written (None if
    stopped). The segment progress events pass through."""
    from .checkpoint import load_checkpoint
    from .region import full_labels, latent_file, plan_region, region_volume
    from .segmentation import segment
    from .volume_io import read_volume, write_labels

    trained = load_checkpoint(task.model, device=task.device)
    check_radius(trained.config, task.radius)
    volume = read_volume(task.volume, level=task.level)
    mask = None if task.mask is None else read_volume(task.mask).data
    region = plan_region(volume.data.shape, roi=task.roi, mask=mask, factor=task.bin_factor)
    try:
        with latent_file(task.latents, beside=task.outputs[0]) as latents_out:
            segmentation = yield from segment(
                trained, region_volume(volume.data, region), n_fine=task.n_fine, context=task.context,
                device=task.device, tile=task.tile, seed=task.seed, latents_out=latents_out,
                linkage=task.linkage, ward_top=task.ward_top, latent_smoothing=task.latent_smoothing,
                precision=task.precision,
                inference_stride=task.inference_stride, boundary_refinement=task.boundary_refinement,
                latent_scaling=task.latent_scaling, stop=stop)
    except (KeyboardInterrupt, GeneratorExit):
        if task.latents is not None:
            task.latents.unlink(missing_ok=True)   # a partial latent file would look complete
        raise
    if segmentation is None:
        return None
    full = task.full_resolution
    spacing = volume.spacing if full else region.spacing(volume.spacing)
    hierarchy = segmentation.hierarchy
    cuts = ([(k, hierarchy.lookup_at_k(k)) for k in task.ks] if task.ks is not None
            else [(hierarchy.k_at_radius(task.radius), hierarchy.lookup_at_radius(task.radius))])
    lines = []
    for path, (k, lookup) in zip(task.outputs, cuts):
        labels = full_labels(segmentation.labels_from_lookup(lookup), region, full_resolution=full)
        write_labels(path, labels, spacing=spacing, unit=volume.unit,
                     affine=region.affine(volume.affine, full_resolution=full), overwrite=task.overwrite)
        lines.append(f"labels written to {path} ({k} cluster{'s' if k != 1 else ''} of {segmentation.n_fine} "
                     "fine ones)")
    if task.radius is not None:
        low, high = hierarchy.radius_range
        lines.append(f"merge radii of {task.volume.name} span {low:.3f}..{high:.3f}")
    if task.latents is not None:
        lines.append(f"latents written to {task.latents}")
    return lines


def check_radius(config, radius: float | None) -> None:
    """A cut radius must lie in the Poincaré ball for a hyperbolic model (config: its HypsegConfig)."""
    if radius is not None and config.geometry == "hyperbolic" and radius > 1:
        raise ConfigError(f"--radius {radius} is outside the Poincaré ball: give a radius from 0 to 1")


def run_task(task: SegmentTask) -> Outcome:
    """One task to its end, as a dask worker runs it: any failure becomes a "failed" Outcome."""
    try:
        lines = run_to_completion(segment_file(task))
    except Exception as error:   # one broken volume must not end the others
        return _failure(task, error)
    return Outcome(task, "written", "; ".join(lines))


def segment_files(tasks: Sequence[SegmentTask], *, scheduler: str | None = None, workers: int | None = None,
                  stop: threading.Event | None = None) -> Generator[Progress, None, list[Outcome]]:
    """Run `tasks` and return their Outcomes (in the order of `tasks`).

    `scheduler`: None runs them here one after the other (their segment progress passes through);
    "local" starts a dask LocalCluster of `workers` processes (dask's default when None); anything
    else is the address of a running dask scheduler. Yields a Progress of stage "volumes" as each
    volume ends, its message saying what became of it. Stopping ends the run after (here: inside)
    the current volumes; those not finished are left out of the result.
    """
    outcomes: dict[int, Outcome] = {}
    pending = []
    for index, task in enumerate(tasks):
        existing = [path for path in task.outputs if path.exists()]
        if existing and not task.overwrite:
            outcomes[index] = (Outcome(task, "skipped", "its labels exist") if len(existing) == len(task.outputs)
                               else Outcome(task, "failed", f"{existing[0]} exists but not all of its labels; "
                                                            "pass --overwrite to replace them"))
        else:
            pending.append(index)

    def report(index: int, outcome: Outcome) -> Progress:
        outcomes[index] = outcome
        return Progress("volumes", len(outcomes), len(tasks), message=_describe(outcome))

    for index in range(len(tasks)):
        if index not in pending:
            yield report(index, outcomes[index])
    if scheduler is None:
        for index in pending:
            try:
                lines = yield from segment_file(tasks[index], stop=stop)
            except Exception as error:
                yield report(index, _failure(tasks[index], error))
                continue
            if lines is None:   # stopped
                break
            yield report(index, Outcome(tasks[index], "written", "; ".join(lines)))
    elif pending:
        for index, outcome in _on_dask(tasks, pending, scheduler, workers, stop):
            yield report(index, outcome)
    return [outcomes[index] for index in sorted(outcomes)]


def _on_dask(tasks, pending, scheduler, workers, stop):
    """(index, Outcome) of each pending task as dask.distributed finishes it."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install distributed") from None
    cluster = None
    try:
        if scheduler == "local":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
            address = cluster
        else:
            address = scheduler
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError, ValueError) as error:
            raise OutputError(f"cannot reach the dask scheduler at {scheduler} ({error}); start one "
                              "(dask scheduler, or dask-jobqueue's cluster.scheduler_address) and give its "
                              "address, e.g. tcp://host:8786, or use --scheduler local.") from None
        run = uuid.uuid4().hex[:8]   # dask treats equal keys as one task: two runs on one scheduler must not share
        with client:
            futures = {client.submit(run_task, tasks[index], pure=False,
                                     key=f"segment-{index}-{tasks[index].volume.name}-{run}"): index
                       for index in pending}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    outcome = future.result()
                except Exception as error:   # the worker itself died (out of memory, killed)
                    outcome = _failure(tasks[index], error)
                yield index, outcome
                if stop is not None and stop.is_set():
                    client.cancel(list(futures))
                    break
    finally:
        if cluster is not None:
            cluster.close()


def _failure(task: SegmentTask, error: BaseException) -> Outcome:
    reason = str(error) if isinstance(error, HypsegError) else f"{type(error).__name__}: {error}"
    return Outcome(task, "failed", reason)


def _describe(outcome: Outcome) -> str:
    name = outcome.task.volume
    if outcome.status == "written":
        return f"{name}: {outcome.detail}"
    if outcome.status == "skipped":
        return f"{name}: skipped, {outcome.detail} ({', '.join(str(p) for p in outcome.task.outputs)})"
    return f"{name}: FAILED: {outcome.detail}"


def summary(outcomes: Sequence[Outcome], total: int) -> str:
    """One line: how many volumes were written, skipped and failed (and how many never ran)."""
    counts = {status: sum(o.status == status for o in outcomes) for status in ("written", "skipped", "failed")}
    text = f"{counts['written']} of {total} volume{'s' if total != 1 else ''} segmented"
    if counts["skipped"]:
        text += f", {counts['skipped']} skipped (labels exist; --overwrite replaces them)"
    if counts["failed"]:
        text += f", {counts['failed']} failed: " + ", ".join(str(o.task.volume) for o in outcomes
                                                            if o.status == "failed")
    if len(outcomes) < total:
        text += f", {total - len(outcomes)} not run (stopped)"
    return text
