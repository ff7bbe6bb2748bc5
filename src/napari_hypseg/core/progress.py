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
