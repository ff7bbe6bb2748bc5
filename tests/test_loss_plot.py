"""The live loss plot, docked in a real viewer and fed by a real tiny training run."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hypseg.core.config import get_preset
from napari_hypseg.core.progress import LOSS_TERMS, run_to_completion
from napari_hypseg.core.training import train
from napari_hypseg.widgets._loss_plot import LossPlot


@pytest.fixture(scope="module")
def training_events():
    """The progress events of three training steps on a small noisy volume."""
    config = get_preset("fast", encoder_channels=(4,), hidden=8, n_samples=1, batch_size=2, steps=3,
                        warmup_steps=0)
    volume = np.random.default_rng(0).normal(100, 10, size=(20, 20, 20)).astype(np.float32)
    events = []
    run_to_completion(train([volume], config, device="cpu"), events.append)
    return [event for event in events if event.metrics]


@pytest.fixture
def plot(qtbot):
    """A LossPlot whose pending redraws are dropped before it is deleted."""
    from qtpy.QtWidgets import QApplication

    widget = LossPlot()
    qtbot.addWidget(widget)
    yield widget
    widget._redraw_soon.cancel()
    QApplication.processEvents()   # the canvas' queued draw runs while the canvas still exists


def _lines(plot):
    return {line.get_label(): line for line in plot.axes.get_lines()}


def _drawn_steps(plot, name="total") -> list:
    line = _lines(plot).get(name)
    return [] if line is None else list(line.get_xdata())


def test_a_training_run_draws_one_line_per_loss_term(make_napari_viewer, qtbot, training_events):
    viewer = make_napari_viewer(show=True)
    plot = LossPlot()
    viewer.window.add_dock_widget(plot, name="losses")
    for event in training_events:
        plot.add(event.step, event.metrics)
    qtbot.waitUntil(lambda: _drawn_steps(plot) == [1, 2, 3], timeout=5_000)
    # The loss terms only: throughput, ETA and learning rate are in the events but are no losses.
    assert set(training_events[0].metrics) > set(LOSS_TERMS)
    assert set(plot.history) == set(_lines(plot)) == set(LOSS_TERMS)
    for name, line in _lines(plot).items():
        assert list(line.get_xdata()) == [1, 2, 3]
        assert list(line.get_ydata()) == [event.metrics[name] for event in training_events]
    assert {text.get_text() for text in plot.axes.get_legend().get_texts()} == set(LOSS_TERMS)
    qtbot.waitUntil(plot.canvas.isVisible, timeout=5_000)


def test_log_scale_only_while_every_value_is_positive(plot):
    plot.add(1, {"total": 2.0, "kl": 0.5})
    plot.redraw()
    assert plot.axes.get_yscale() == "log"
    plot.add(2, {"total": 1.5, "kl": -0.25})   # a one-sample KL estimate can be negative
    plot.redraw()
    assert plot.axes.get_yscale() == "symlog"


def test_a_burst_of_steps_is_one_redraw_now_and_one_later(plot, qtbot):
    """Redrawing at every step would stall the interface on fast runs: the first step of a burst is
    drawn at once, the rest together once the event loop runs again."""
    for step in range(1, 201):
        plot.add(step, {"total": 1.0 / step})
    assert _drawn_steps(plot) == [1]                         # the burst's first step, drawn at once
    assert len(plot.history["total"][0]) == 200              # every step is kept
    qtbot.waitUntil(lambda: len(_drawn_steps(plot)) == 200, timeout=5_000)


def test_clear_leaves_the_placeholder(plot):
    plot.add(1, {"total": 1.0})
    plot.clear()
    assert plot.history == {} and not plot.axes.get_lines()
    assert [text.get_text() for text in plot.axes.texts] == ["losses appear here during training"]
