"""WorkerWidget, the base of the dock widgets that run core work: buttons and fields follow the run,
Stop reaches the core through its stop event, results and errors arrive, and the widget is ready again."""

from __future__ import annotations

import threading

from qtpy.QtWidgets import QLabel, QLineEdit, QPushButton, QVBoxLayout

from napari_hypseg.core.errors import ConfigError
from napari_hypseg.core.progress import Progress
from napari_hypseg.widgets._worker_widget import WorkerWidget


def _count(n: int, *, stop: threading.Event, fail: bool = False):
    """A core-style generator: one Progress per step, stoppable, returns how far it got."""
    for step in range(n):
        if stop.is_set():
            return step
        if fail:
            raise ConfigError("n: give a positive number")
        yield Progress("count", step, n)
        stop.wait(0.02)
    return n


class CountWidget(WorkerWidget):
    def __init__(self) -> None:
        super().__init__(napari_viewer=None)
        self.start_button = QPushButton("Count")
        self.stop_button = QPushButton("Stop")
        self.field = QLineEdit()
        self.status = QLabel("")
        self.events: list[Progress] = []
        self.results: list[int] = []
        self.ended = 0
        layout = QVBoxLayout(self)
        for widget in (self.field, self.start_button, self.stop_button, self.status):
            layout.addWidget(widget)
        self._run_controls(self.start_button, self.stop_button, locked=(self.field,))

    def count(self, n: int, *, fail: bool = False) -> None:
        self._start_run(_count, n, fail=fail, description="count", total=n, on_event=self.events.append,
                        on_result=self.results.append)

    def _run_ended(self) -> None:
        self.ended += 1


def test_a_run_locks_its_fields_and_stop_reaches_the_core(qtbot):
    widget = CountWidget()
    qtbot.addWidget(widget)
    assert widget.start_button.isEnabled() and not widget.stop_button.isEnabled() and widget.field.isEnabled()

    widget.count(3)
    assert widget.running and not widget.start_button.isEnabled()
    assert widget.stop_button.isEnabled() and not widget.field.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert widget.results == [3] and [event.step for event in widget.events] == [0, 1, 2]
    assert widget.ended == 1
    assert widget.start_button.isEnabled() and not widget.stop_button.isEnabled() and widget.field.isEnabled()

    widget.events.clear()
    widget.count(10_000)
    qtbot.waitUntil(lambda: len(widget.events) >= 2, timeout=10_000)
    widget.stop_button.click()
    assert not widget.stop_button.isEnabled() and "Stopping" in widget.status.text()
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert 2 <= widget.results[-1] < 10_000 and widget.ended == 2


def test_a_failed_run_is_a_notification_with_the_message(qtbot, notifications):
    widget = CountWidget()
    qtbot.addWidget(widget)
    widget.count(3, fail=True)
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    errors = [n for n in notifications if str(n.severity).lower().endswith("error")]
    assert [str(n.message) for n in errors] == ["n: give a positive number"]
    assert widget.results == [] and widget.ended == 1 and widget.start_button.isEnabled()
