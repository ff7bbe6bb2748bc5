import io

import numpy as np

from napari_hypseg.cli._progress import ProgressLine
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.progress import (LOSS_TERMS, METRICS, TRAINING_PACE, VOXEL_PACE, Progress, format_metric,
                                         run_to_completion)
from napari_hypseg.core.segmentation import segment
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.core.training import train


def test_every_metric_long_work_reports_is_in_the_schema():
    """Training reports its losses and TRAINING_PACE, inference and clustering VOXEL_PACE: the keys
    the widgets show beside the progress."""
    image = make_toy_volume(3).image[:24, :24, :24].copy()
    config = get_preset("fast", steps=2, batch_size=2, encoder_channels=(4, 8), hidden=8, warmup_steps=1)
    training, segmenting = [], []
    trained = run_to_completion(train([image], config, device="cpu"), training.append)
    run_to_completion(segment(trained, image, n_fine=3, device="cpu"), segmenting.append)
    steps = [event.metrics for event in training if event.metrics]
    assert steps and all(set(metrics) - set(LOSS_TERMS) == set(TRAINING_PACE) for metrics in steps)
    assert {name for metrics in steps for name in metrics} >= set(LOSS_TERMS)
    paced = [event.metrics for event in segmenting if event.metrics]
    assert paced and all(set(metrics) == set(VOXEL_PACE) for metrics in paced)
    assert set(TRAINING_PACE) | set(VOXEL_PACE) | set(LOSS_TERMS) == set(METRICS)


def test_metrics_read_the_same_everywhere():
    assert format_metric("eta_s", 65) == "ETA 1:05"
    assert format_metric("patches_per_s", 342.6) == "343 patches/s"
    assert format_metric("voxels_per_s", 1234567) == "1,234,567 voxels/s"
    assert format_metric("kl", 3.14159) == "kl 3.142"
    assert format_metric("something_new", 2.0) == "something_new 2"
    stream = io.StringIO()
    ProgressLine(stream)(Progress("train", 3, 3, metrics={"kl": 3.14159, "eta_s": 65.0}))
    assert "kl 3.142 ETA 1:05" in stream.getvalue()
    assert np.all([METRICS[name].kind == "loss" for name in LOSS_TERMS])


def test_a_log_shows_when_each_stage_and_message_begins():
    """Not on a terminal, the line is printed every few seconds, and at once when the stage or its
    message changes, so a log says when each part of the work started."""
    stream = io.StringIO()
    line = ProgressLine(stream, interval=3600)
    line(Progress("infer", 0, 10, message="10 tiles"))
    line(Progress("infer", 1, 10))
    line(Progress("infer", 2, 10))
    line(Progress("cluster", 0, 1, message="smoothing the latent field"))
    line(Progress("cluster", 0, 5, message="measuring the image features"))
    line(Progress("cluster", 1, 5, message="measuring the image features"))
    line(Progress("cluster", 5, 5, message="measuring the image features"))
    printed = stream.getvalue().splitlines()
    assert [p.split("]")[1].strip() for p in printed] == [
        "0/10   10 tiles", "1/10", "0/1   smoothing the latent field", "0/5   measuring the image features",
        "5/5   measuring the image features"]
