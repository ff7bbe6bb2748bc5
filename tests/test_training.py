import gc
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_hypseg.core.checkpoint import load_checkpoint
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import CheckpointError, ConfigError, VolumeError
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.training import TrainedModel, train

CONFIG = get_preset("fast", encoder_channels=(4, 8), hidden=8, n_samples=1, batch_size=4, steps=4,
                    parent_min=5, parent_max=12, child_min=3, child_max=5, warmup_steps=2)


def blobs(seed, shape=(24, 24, 24)):
    """A structured volume: bright balls on a noisy background, in camera-like units."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    volume = rng.normal(1000, 30, size=shape)
    for centre in rng.uniform(4, min(shape) - 4, size=(4, 3)):
        volume[np.linalg.norm(grid - centre, axis=-1) < 4] += 300
    return volume.astype(np.float32)


VOLUMES = [blobs(0), blobs(1, (20, 26, 22))]


def weights(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def collect_events(work):
    events = []
    run_to_completion(work, events.append)
    return events


def test_training_reports_every_step_and_saves(tmp_path):
    events = []
    path = tmp_path / "model.pt"
    trained = run_to_completion(train(VOLUMES, CONFIG, checkpoint_path=path, device="cpu"), events.append)
    assert isinstance(trained, TrainedModel)
    assert "CPU only" in events[0].message and events[0].step == 0
    assert [e.step for e in events[1:]] == [1, 2, 3, 4]
    for event in events[1:]:
        assert set(event.metrics) == {"total", "recon", "kl", "triplet", "texture", "view", "invariance",
                                      "patches_per_s", "eta_s", "lr"}
        assert all(math.isfinite(v) for v in event.metrics.values())
        assert event.metrics["patches_per_s"] > 0
    lr = CONFIG.learning_rate
    assert [e.metrics["lr"] for e in events[1:]] == pytest.approx([lr / 2, lr, lr, lr])   # 2 warm-up steps
    assert events[-1].checkpoint == path and "finished" in events[-1].message
    assert trained.step == 4 and len(trained.history) == 4 and trained.checkpoint_path == path
    assert not trained.model.training
    assert trained.stats.std > 10   # fitted on the raw camera-like units
    loaded = load_checkpoint(path)
    assert loaded.step == 4 and loaded.config == CONFIG and loaded.stats == trained.stats
    assert loaded.history == trained.history
    assert_same_weights(weights(loaded.model), weights(trained.model))


def test_seed_reproduces_a_run_and_another_seed_does_not():
    first = run_to_completion(train(VOLUMES, CONFIG, device="cpu"))
    second = run_to_completion(train(VOLUMES, CONFIG, device="cpu"))
    other = run_to_completion(train(VOLUMES, CONFIG.with_overrides(seed=1), device="cpu"))
    assert_same_weights(weights(first.model), weights(second.model))
    assert first.history == second.history
    assert first.checkpoint_path is None
    assert other.history[0]["total"] != first.history[0]["total"]


def test_stop_saves_and_resume_matches_an_uninterrupted_run(tmp_path):
    config = CONFIG.with_overrides(steps=5)
    uninterrupted = run_to_completion(train(VOLUMES, config, device="cpu"))

    stop = threading.Event()
    path = tmp_path / "model.pt"
    events = []

    def stop_after_two(event):
        events.append(event)
        if event.step == 2:
            stop.set()

    stopped = run_to_completion(train(VOLUMES, config, checkpoint_path=path, device="cpu", stop=stop),
                                stop_after_two)
    assert stopped.step == 2 and [e.step for e in events] == [0, 1, 2, 2]   # no step after the request
    assert events[-1].checkpoint == path and "stopped at step 2" in events[-1].message
    assert load_checkpoint(path).step == 2

    resumed_events = []
    resumed = run_to_completion(train(VOLUMES, None, checkpoint_path=path, resume=path, device="cpu"),
                                resumed_events.append)
    assert "resuming" in resumed_events[0].message and resumed_events[0].step == 2
    assert resumed.step == 5 and load_checkpoint(path).step == 5
    assert resumed.history == uninterrupted.history
    assert_same_weights(weights(resumed.model), weights(uninterrupted.model))


def test_closing_the_generator_saves_a_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    work = train(VOLUMES, CONFIG.with_overrides(steps=50), checkpoint_path=path, device="cpu")
    assert [next(work).step for _ in range(3)] == [0, 1, 2]
    work.close()
    saved = load_checkpoint(path)
    assert saved.step == 2 and len(saved.history) == 2


def test_an_interrupt_between_steps_ends_training_without_saving(tmp_path):
    """Closing a training generator saves (its consumer stopped reading); an interrupt must not."""
    path = tmp_path / "model.pt"
    work = train(VOLUMES, CONFIG.with_overrides(steps=50), checkpoint_path=path, device="cpu")

    def interrupt_at_step_two(event):
        if event.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_to_completion(work, interrupt_at_step_two)
    del work
    gc.collect()
    assert not path.exists()


def test_periodic_checkpoints_and_longer_resume(tmp_path):
    path = tmp_path / "model.pt"
    events = collect_events(train(VOLUMES, CONFIG.with_overrides(checkpoint_every=2),
                                  checkpoint_path=path, device="cpu"))
    assert [e.step for e in events if e.checkpoint] == [2, 4]
    more = tmp_path / "more.pt"
    trained = run_to_completion(train(VOLUMES, CONFIG.with_overrides(steps=6), checkpoint_path=more,
                                      resume=path, device="cpu"))
    assert trained.step == 6 and load_checkpoint(more).step == 6 and load_checkpoint(path).step == 4


def test_resume_with_other_settings_names_them(tmp_path):
    path = tmp_path / "model.pt"
    run_to_completion(train(VOLUMES, CONFIG.with_overrides(steps=1), checkpoint_path=path, device="cpu"))
    expected = r"hidden: 8 in the checkpoint, 16 now, learning_rate: 0.002 in the checkpoint, 0.001 now"
    with pytest.raises(CheckpointError, match=expected):
        run_to_completion(train(VOLUMES, CONFIG.with_overrides(learning_rate=1e-3, hidden=16),
                                resume=path, device="cpu"))


@pytest.mark.parametrize("term, weight", [("view", "view_weight"), ("invariance", "invariance_weight")])
def test_same_scale_terms_train_and_replay_with_the_seed(term, weight):
    """The same-scale triplet and the invariance pairs are drawn and scored every step, reproducibly."""
    config = CONFIG.with_overrides(**{weight: 5.0, "steps": 3})
    runs = []
    for _ in range(2):
        events = []
        trained = run_to_completion(train(VOLUMES, config, device="cpu"), events.append)
        runs.append((trained, [e.metrics[term] for e in events[1:]]))
    (first, values), (second, again) = runs
    assert len(values) == 3 and all(math.isfinite(v) and v > 0 for v in values)
    assert values == again
    assert_same_weights(weights(first.model), weights(second.model))


def test_bfloat16_decoder_training_runs_close_to_float32_and_a_bad_precision_is_refused():
    config = CONFIG.with_overrides(steps=2)
    totals = {}
    for precision in ("float32", "bfloat16"):
        events = []
        run_to_completion(train(VOLUMES, config, device="cpu", precision=precision), events.append)
        totals[precision] = events[1].metrics["total"]           # the first step: same weights, same batch
    assert totals["bfloat16"] != totals["float32"]               # the decoder really ran in bfloat16
    assert totals["bfloat16"] == pytest.approx(totals["float32"], rel=1e-2)
    with pytest.raises(ConfigError, match="precision must be one of"):
        next(train(VOLUMES, config, device="cpu", precision="float16"))


def test_divergence_is_a_clear_error_and_saves_nothing_broken(tmp_path):
    """A learning rate far too large (the first warm-up step moves every weight by about 20), saving
    at every step: the first step is sane and saved, the second diverges, and the file left on disk is
    the last checkpoint written before the divergence, byte for byte. (Smaller rates that once
    diverged later did so through the runaway KL that model.SIGMA_CEILING now prevents.)"""
    path = tmp_path / "model.pt"
    config = CONFIG.with_overrides(learning_rate=1000.0, warmup_steps=50, checkpoint_every=1, steps=50)
    saved = {}   # step -> the file's bytes right after that step's checkpoint

    def keep(event):
        if event.checkpoint is not None:
            saved[event.step] = path.read_bytes()

    with pytest.raises(ConfigError, match=r"diverged at step (\d+).*lower learning rate") as error:
        run_to_completion(train(VOLUMES, config, checkpoint_path=path, device="cpu"), keep)
    assert len(saved) >= 1, "the run must save a good checkpoint before it diverges"
    last = max(saved)
    diverged_at = int(re.search(r"diverged at step (\d+)", str(error.value)).group(1))
    assert diverged_at == last + 1 and f"last checkpoint ({path})" in str(error.value)
    assert path.read_bytes() == saved[last]
    kept = load_checkpoint(path)
    assert kept.step == last and len(kept.history) == last
    assert all(torch.isfinite(v).all() for v in kept.model.state_dict().values())


def test_losses_read_every_few_steps_give_the_same_run(tmp_path):
    """metrics_every (what a GPU does by default, so that the host does not wait for the device every
    step): the same weights and per-step history as reading every step; progress comes at the reads,
    the checkpoints and the last step, and a stop is honoured there."""
    config = CONFIG.with_overrides(steps=7, checkpoint_every=5)
    every_step = run_to_completion(train(VOLUMES, config, device="cpu"))
    path = tmp_path / "model.pt"
    events = []
    read = run_to_completion(train(VOLUMES, config, checkpoint_path=path, device="cpu", metrics_every=3),
                             events.append)
    assert [e.step for e in events] == [0, 3, 5, 6, 7]
    assert events[2].checkpoint == path and events[-1].checkpoint == path
    assert read.history == every_step.history and [h["step"] for h in read.history] == list(range(1, 8))
    assert_same_weights(weights(read.model), weights(every_step.model))
    assert events[1].metrics["total"] == every_step.history[2]["total"]   # the values of the step reported

    stop = threading.Event()
    stopped = run_to_completion(train(VOLUMES, config, device="cpu", metrics_every=3, stop=stop),
                                lambda event: stop.set() if event.step == 3 else None)
    assert stopped.step == 3 and stopped.history == every_step.history[:3]


def test_a_divergence_between_reads_is_reported_at_its_step(tmp_path):
    config = CONFIG.with_overrides(learning_rate=1000.0, warmup_steps=50, steps=50)
    with pytest.raises(ConfigError, match=r"diverged at step (\d+)") as every_step:
        run_to_completion(train(VOLUMES, config, device="cpu"))
    path = tmp_path / "model.pt"
    with pytest.raises(ConfigError, match=r"diverged at step (\d+)") as read_later:
        run_to_completion(train(VOLUMES, config, checkpoint_path=path, device="cpu", metrics_every=8))
    assert str(read_later.value) == str(every_step.value)
    assert not path.exists()   # nothing saved from a diverged run
    with pytest.raises(ConfigError, match="metrics_every must be a positive integer"):
        next(train(VOLUMES, CONFIG, device="cpu", metrics_every=0))


def test_bad_volumes_are_refused():
    with pytest.raises(VolumeError, match="3D"):
        next(train([np.zeros((24, 24))], CONFIG, device="cpu"))
    nan_volume = blobs(0)
    nan_volume[3, 4, 5] = np.nan
    with pytest.raises(VolumeError, match="NaN"):
        next(train([nan_volume], CONFIG, device="cpu"))
    with pytest.raises(VolumeError, match=r"\(4, 30, 30\).*too small"):
        next(train([blobs(0), np.zeros((4, 30, 30))], CONFIG, device="cpu"))
    with pytest.raises(VolumeError, match="no volumes"):
        next(train([], CONFIG, device="cpu"))


FRESH_PROCESS_RUNS = """
import sys, threading, torch
sys.path.insert(0, {tests!r})
from test_training import CONFIG, VOLUMES
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.training import train

config = CONFIG.with_overrides(steps=5)
runs = [run_to_completion(train(VOLUMES, config, device="cpu")) for _ in range(3)]
stop = threading.Event()
run_to_completion(train(VOLUMES, config, checkpoint_path={path!r}, device="cpu", stop=stop),
                  lambda event: stop.set() if event.step == 2 else None)
runs.append(run_to_completion(train(VOLUMES, None, resume={path!r}, device="cpu")))
states = [run.model.state_dict() for run in runs]
for index, state in enumerate(states[1:], 1):
    differ = [key for key in state if not torch.equal(state[key], states[0][key])]
    print(index, differ)
"""


def test_the_first_training_of_a_process_equals_the_next_and_a_resumed_one(tmp_path):
    """Runs in a fresh interpreter: a process-wide state (TorchScript re-planning geoopt's functions after
    their first calls) once made the first training of a process differ from later ones."""
    script = FRESH_PROCESS_RUNS.format(tests=str(Path(__file__).parent), path=str(tmp_path / "model.pt"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["1 []", "2 []", "3 []"]
