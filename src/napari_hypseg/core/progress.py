"""One event type for all long work, so the GUI, the CLI and the tests share one loop."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Progress:
    """A report from long work: where it is, and the numbers worth showing."""

    stage: str
    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


@dataclass(frozen=True)
class MetricSpec:
    """What one metric of a Progress event is, so the CLI line, the widgets' labels and the loss
    plot show it alike: its label, its unit and its kind ("loss": a term of the training objective,
    plotted; "rate", "time" and "setting" are shown, not plotted)."""

    label: str
    unit: str
    kind: str
    precision: str = ".4g"

    def format(self, value: float) -> str:
        if self.kind == "time":
            return f"{self.label} {format_duration(value)}"
        if self.kind == "rate":
            return f"{value:{self.precision}} {self.label}"
        return f"{self.label} {value:{self.precision}}"


PATCHES_PER_S = "patches_per_s"
VOXELS_PER_S = "voxels_per_s"
ETA_S = "eta_s"
LR = "lr"

METRICS: dict[str, MetricSpec] = {
    "total": MetricSpec("total", "nats per patch", "loss"),
    "recon": MetricSpec("recon", "nats per patch", "loss"),
    "kl": MetricSpec("kl", "nats per patch", "loss"),
    "triplet": MetricSpec("triplet", "squared Poincaré distance", "loss"),
    "texture": MetricSpec("texture", "half squared error per patch", "loss"),
    "view": MetricSpec("view", "squared Poincaré distance", "loss"),
    "invariance": MetricSpec("invariance", "VICReg loss per pair", "loss"),
    PATCHES_PER_S: MetricSpec("patches/s", "patches per second", "rate", ".0f"),
    VOXELS_PER_S: MetricSpec("voxels/s", "voxels per second", "rate", ",.0f"),
    ETA_S: MetricSpec("ETA", "seconds", "time"),
    LR: MetricSpec("lr", "learning rate", "setting", ".3g"),
}
"""Every metric long work reports (training: LOSS_TERMS and TRAINING_PACE; inference and
clustering: VOXEL_PACE), by its key in Progress.metrics."""

LOSS_TERMS = tuple(name for name, spec in METRICS.items() if spec.kind == "loss")
TRAINING_PACE = (PATCHES_PER_S, ETA_S, LR)
"""What a training step reports beside its losses, in the order the widgets show it."""
VOXEL_PACE = (VOXELS_PER_S, ETA_S)
"""What work that goes through voxels reports (voxel_rate), in the order the widgets show it."""


def voxel_rate(voxels_done: int, voxels_total: int, elapsed_s: float) -> dict[str, float]:
    """VOXEL_PACE of work that goes through voxels at a steady rate (inference, clustering)."""
    elapsed_s = max(elapsed_s, 1e-9)
    return {VOXELS_PER_S: voxels_done / elapsed_s,
            ETA_S: elapsed_s / max(voxels_done, 1) * max(voxels_total - voxels_done, 0)}


def format_metric(name: str, value: float) -> str:
    """One metric as the user sees it, e.g. "ETA 1:05", "343 patches/s", "kl 3.13"."""
    spec = METRICS.get(name)
    return spec.format(value) if spec is not None else f"{name} {value:.4g}"


def format_duration(seconds: float) -> str:
    """Seconds as m:ss or h:mm:ss, for ETAs in the CLI and the widgets."""
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def run_to_completion(
    work: Generator[Progress, Any, T], on_progress: Callable[[Progress], None] | None = None
) -> T:
    """Drive a progress generator to its end and return its result.

    A KeyboardInterrupt that arrives between steps is thrown into the work, so it ends as if
    interrupted inside: without running what it does when a consumer merely closes it (training
    saves then), which an abort must not do.
    """
    try:
        while True:
            try:
                event = next(work)
            except StopIteration as done:
                return done.value
            if on_progress is not None:
                on_progress(event)
    except KeyboardInterrupt as interrupt:
        if work.gi_frame is not None:   # suspended at a yield, not already ended by the interrupt
            try:
                work.throw(interrupt)
            except KeyboardInterrupt:
                pass
        raise
