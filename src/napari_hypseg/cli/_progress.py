"""A one-line progress display on stderr for long work, with no dependency beyond the standard library."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..core.progress import Progress, format_metric


class ProgressLine:
    """Rewrites one terminal line per event (or, when not a TTY, prints a line every few seconds and
    whenever the stage or its message changes, so a log shows when each part of the work began)."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 5.0):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.interval = interval
        self._last_print = 0.0
        self._open_line = False
        self._last_kind = None

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        final = event.step >= event.total or event.checkpoint is not None
        kind = (event.stage, event.message)
        new_kind, self._last_kind = kind != self._last_kind, kind
        if not self.interactive and not final and not new_kind and now - self._last_print < self.interval:
            return
        self._last_print = now
        width = 24
        filled = int(width * min(event.fraction, 1.0))
        bar = "#" * filled + "-" * (width - filled)
        shown = [format_metric(key, value) for key, value in event.metrics.items()]
        text = f"{event.stage:>7} [{bar}] {event.step}/{event.total} " + " ".join(shown)
        if event.message:
            text += f"  {event.message}"
        if event.checkpoint is not None:
            text += f"  (saved {event.checkpoint})"
        if self.interactive:
            self.stream.write("\r\033[K" + text)
            self._open_line = True
            if final:
                self.close()
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the rewritten line so the next output starts on a fresh one."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False
