"""The base of every dock widget that runs long core work: one core generator at a time in a worker
thread, a stop event the core checks, a progress bar in napari's activity dock, errors as
notifications, and buttons and fields enabled to match.

Long work in the core is a generator that yields `Progress` and returns its result, and takes
`stop: threading.Event` (docs/architecture.md); a widget here only says what to run and what to do
with its events and result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress
from qtpy.QtWidgets import QLabel, QPushButton, QWidget
from superqt.utils import GeneratorWorker

from ._common import notify_error


class StopAwareWorker(GeneratorWorker):
    """A generator worker whose quit() asks the core to stop cleanly.

    napari calls `worker.quit` when the task is cancelled in the activity dock or the window closes
    while it runs; plain quit() would abandon the generator between two yields, so a training run
    would end without its final checkpoint. Setting the `stop` event lets the core finish the
    current step, save and return its result.
    """

    def __init__(self, func: Callable, *args: Any, **kwargs: Any) -> None:
        self.stop_event: threading.Event = kwargs["stop"]
        super().__init__(func, *args, **kwargs)

    def quit(self) -> None:
        self.stop_event.set()


class WorkerWidget(QWidget):
    """A dock widget that runs one core generator at a time in the background.

    A subclass builds its fields and its `status` label, then names its run buttons and the fields
    a run must not see change with `_run_controls`; it starts work with `_start_run` and may extend
    `_ready` (when a run could start), `_update_enabled` and `_run_ended` (what to reset after every
    run, however it ended).
    """

    STOPPING = "Stopping…"   # appended to the status when Stop is pressed
    status: QLabel            # made by the subclass: what the run is doing

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: StopAwareWorker | None = None
        self._stop = threading.Event()
        self._start_button: QPushButton | None = None
        self._stop_button: QPushButton | None = None
        self._locked: Sequence[QWidget] = ()

    def _run_controls(self, start: QPushButton, stop: QPushButton | None = None, *,
                      locked: Sequence[QWidget] = ()) -> None:
        """The button that starts a run, the one that stops it (if any), the fields locked while it runs."""
        self._start_button, self._stop_button, self._locked = start, stop, tuple(locked)
        if stop is not None:
            stop.clicked.connect(self.stop)
        self._set_running(False)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _set_running(self, running: bool) -> None:
        for widget in self._locked:
            widget.setEnabled(not running)
        if self._stop_button is not None:
            self._stop_button.setEnabled(running)
        self._update_enabled()

    def _ready(self) -> bool:
        """Whether a run could start now (apart from one already running)."""
        return True

    def _update_enabled(self, *_: Any) -> None:
        self._start_button.setEnabled(self._ready() and not self.running)

    def _start_run(
        self,
        func: Callable,
        *args: Any,
        description: str,
        total: int,
        on_result: Callable[[Any], None],
        on_event: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Run the core generator `func(*args, stop=<a fresh event>, **kwargs)` in a worker thread.

        Progress events drive a napari progress bar (activity dock) and `on_event`; the return value
        goes to `on_result`; errors become notifications; `_run_ended` runs last in every case. The
        callbacks should be methods of this widget: Qt drops them if the widget is deleted mid-run,
        and deleting it asks the run to stop cleanly.
        """
        stop = self._stop = threading.Event()
        bar = progress(total=total, desc=description)
        worker = create_worker(
            func,
            *args,
            stop=stop,
            _worker_class=StopAwareWorker,
            _ignore_errors=True,
            _start_thread=False,
            **kwargs,
        )
        worker.yielded.connect(partial(_advance, bar, description))
        worker.finished.connect(bar.close)
        if on_event is not None:
            worker.yielded.connect(on_event)
        worker.returned.connect(on_result)
        worker.errored.connect(notify_error)
        worker.finished.connect(self._finished)
        self.destroyed.connect(lambda *_: stop.set())
        worker.start()
        self.worker = worker
        self._set_running(True)   # after the worker exists: `running` is read by the enabled states

    def stop(self) -> None:
        """Ask the run to stop at the core's next check; the core returns what it has done so far."""
        if self.running:
            self._stop.set()
            if self._stop_button is not None:
                self._stop_button.setEnabled(False)
            self.status.setText(self.status.text() + f"<br><b>{self.STOPPING}</b>")

    def _finished(self) -> None:
        self.worker = None
        self._run_ended()
        self._set_running(False)

    def _run_ended(self) -> None:
        """What a widget resets after a run, whether it returned, was stopped or failed."""


def _advance(bar: progress, description: str, event: Any) -> None:
    """Move the activity-dock bar to a Progress event (stage, step of total)."""
    total = int(getattr(event, "total", 0) or 0)
    if total and bar.total != total:
        bar.total = total
        bar.n = 0
    step = int(getattr(event, "step", 0) or 0)
    if step > bar.n:
        bar.update(step - bar.n)
    stage = getattr(event, "stage", "")
    wanted = f"{description}: {stage}" if stage else description
    if bar.desc != wanted:
        bar.set_description(wanted)
