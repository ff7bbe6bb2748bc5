"""The whole napari workflow on a tiny synthetic volume, through the dock widgets of a real viewer:
sample -> train (stopped mid-run) -> segment -> hierarchy slider in both modes -> per-cluster layers
-> export -> re-read; and model files that cannot be used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import CheckpointError
from napari_hypseg.core.progress import run_to_completion

PLUGIN = "napari-hypseg"
# A model small enough to train a few steps per second on a CPU.
TINY = dict(steps=40, batch_size=4, encoder_channels=(4, 8), hidden=16, n_samples=1, warmup_steps=0,
            checkpoint_every=1000)
N_FINE = 6


@pytest.fixture
def notifications():
    """Every napari notification (info, warning, error) dispatched during the test."""
    from napari.utils.notifications import notification_manager

    received = []
    notification_manager.notification_ready.connect(received.append)
    yield received
    notification_manager.notification_ready.disconnect(received.append)


def _errors(notifications):
    return [n for n in notifications if str(n.severity).lower().endswith("error")]


def _tiny_checkpoint(path, **overrides):
    """A real model file: one training step of a tiny model on noise."""
    from napari_hypseg.core.training import train

    volume = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    config = get_preset("fast", **{**TINY, "steps": 1, **overrides})
    return run_to_completion(train([volume], config, checkpoint_path=path, device="cpu")).checkpoint_path


def test_unusable_model_files_are_reported_and_change_nothing(make_napari_viewer, tmp_path, notifications):
    from napari_hypseg.core.checkpoint import load_checkpoint

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="image")
    _, train_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    _, segment_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert not segment_widget.segment_button.isEnabled()  # no model yet

    good = train_widget.load_model(_tiny_checkpoint(tmp_path / "good.pt"))
    assert good is not None and segment_widget.selected_model is good
    assert segment_widget.segment_button.isEnabled()

    # random bytes
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    # a real model file whose weights belong to another configuration
    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    payload["config"]["encoder_channels"] = [8, 16]
    mismatched = tmp_path / "mismatched.pt"
    torch.save(payload, mismatched)
    with pytest.raises(CheckpointError):
        load_checkpoint(mismatched)

    layers_before = list(viewer.layers)
    for bad, widget in ((junk, train_widget), (mismatched, segment_widget), (tmp_path / "missing.pt", train_widget)):
        shown = len(_errors(notifications))
        assert widget.load_model(bad) is None
        errors = _errors(notifications)
        assert len(errors) == shown + 1 and bad.name in str(errors[-1].message)
        assert segment_widget.selected_model is good
        assert [entry.name for entry in segment_widget.session.models] == [good.name]
        assert list(viewer.layers) == layers_before
        assert train_widget.load_button.isEnabled() and segment_widget.segment_button.isEnabled()
