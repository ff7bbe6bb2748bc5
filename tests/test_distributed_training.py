"""Training one model with two processes (torchrun, gloo on the CPU), checked against one process
that draws both processes' parts of every batch."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from napari_hypseg.core.checkpoint import load_checkpoint
from napari_hypseg.core.errors import ConfigError
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.training import train

TINY = ["--batch-size", "2", "--device", "cpu", "--seed", "7"]


@pytest.fixture(scope="module")
def volumes(training_tiffs):
    return training_tiffs


def torchrun(volumes, out, *extra) -> subprocess.Popen:
    """`hypseg train` as two torchrun processes on this machine (gloo, since the device is the CPU)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "napari_hypseg.cli", "train", *map(str, volumes), "--out", str(out), *TINY, *extra]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def finish(process) -> tuple[str, str]:
    try:
        return process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)


def single_process_weights(volumes, trained_config, steps):
    arrays = [tifffile.imread(path) for path in volumes]
    config = trained_config.with_overrides(steps=steps)
    return run_to_completion(train(arrays, config, device="cpu", shards=2)).model.state_dict()


def assert_close_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_two_processes_train_the_model_one_process_trains_from_both_batches(volumes, tmp_path, one_thread):
    out = tmp_path / "model.pt"
    process = torchrun(volumes, out, "--steps", "3")
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr
    assert stdout.count("model written to") == 1                      # rank 0 reports, rank 1 is quiet
    assert "one of 2 processes" in stderr and stderr.count("3/3") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]
    trained = load_checkpoint(out)
    assert trained.step == 3 and len(trained.history) == 3
    assert_close_weights(trained.model.state_dict(), single_process_weights(volumes, trained.config, 3))


@pytest.mark.slow   # three torchrun launches
def test_ctrl_c_stops_every_process_after_one_step_and_resume_continues(volumes, tmp_path, one_thread):
    out = tmp_path / "model.pt"
    process = torchrun(volumes, out, "--steps", "100000", "--checkpoint-every", "1")
    for line in process.stderr:                       # wait until a step is saved, then press Ctrl-C
        if "(saved" in line:
            break
    process.send_signal(signal.SIGINT)                # torchrun passes it on to both processes
    _, stderr = finish(process)
    assert process.returncode != 0
    stopped = load_checkpoint(out)
    assert 1 <= stopped.step < 100000 and len(stopped.history) == stopped.step, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]

    process = torchrun(volumes, out, "--resume", str(out), "--steps", str(stopped.step + 1))
    _, stderr = finish(process)
    assert process.returncode == 0, stderr
    resumed = load_checkpoint(out)
    assert resumed.step == stopped.step + 1
    assert_close_weights(resumed.model.state_dict(),
                         single_process_weights(volumes, resumed.config, resumed.step))


def test_shards_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="shards must be a positive integer"):
        next(train([np.zeros((24, 24, 24), np.float32)], shards=0, device="cpu"))
