import io
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile

from napari_hypseg.cli._progress import ProgressLine
from napari_hypseg.cli.main import main
from napari_hypseg.cli.train import _ctrl_c_requests_stop
from napari_hypseg.core.checkpoint import load_checkpoint

TINY = ["--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def volumes(training_tiffs):
    return training_tiffs


def test_train_writes_a_model_and_resume_continues_it(volumes, tmp_path, capsys):
    out = tmp_path / "models" / "model.pt"
    assert main(["train", *volumes, "--out", str(out), "--steps", "2", "--seed", "3", *TINY]) == 0
    captured = capsys.readouterr()
    assert f"model written to {out}" in captured.out
    assert "CPU only" in captured.err and "2/2" in captured.err
    trained = load_checkpoint(out)
    assert trained.step == 2 and trained.config.seed == 3 and trained.config.batch_size == 4
    assert trained.config.intensity_jitter == 2.0          # the fast preset's
    assert trained.config.texture_weight == 30.0           # the fast preset's texture target

    # resume into the same file: settings come from the model, only --steps changes
    assert main(["train", *volumes, "--out", str(out), "--resume", str(out), "--steps", "3",
                 "--device", "cpu"]) == 0
    resumed = load_checkpoint(out)
    assert resumed.step == 3 and resumed.config.seed == 3 and len(resumed.history) == 3


def test_intensity_jitter_option_sets_the_model(volumes, tmp_path):
    out = tmp_path / "plain.pt"
    assert main(["train", *volumes, "--out", str(out), "--steps", "1", "--intensity-jitter", "0", *TINY]) == 0
    assert load_checkpoint(out).config.intensity_jitter == 0.0
    assert main(["train", *volumes, "--out", str(tmp_path / "bad.pt"), "--steps", "1",
                 "--intensity-jitter", "-1", *TINY]) == 2
    assert not (tmp_path / "bad.pt").exists()


def test_texture_weight_option_sets_the_model(volumes, tmp_path):
    out = tmp_path / "texture.pt"
    assert main(["train", *volumes, "--out", str(out), "--steps", "1", "--texture-weight", "30", *TINY]) == 0
    trained = load_checkpoint(out)
    assert trained.config.texture_weight == 30.0 and trained.model.decoder[-1].out_channels == 2
    assert main(["train", *volumes, "--out", str(tmp_path / "bad.pt"), "--steps", "1",
                 "--texture-weight", "nan", *TINY]) == 2
    assert not (tmp_path / "bad.pt").exists()


def test_existing_output_needs_overwrite(volumes, tmp_path, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"precious")
    assert main(["train", *volumes, "--out", str(out), "--steps", "1", *TINY]) == 2
    assert "error:" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main(["train", *volumes, "--out", str(out), "--steps", "1", "--overwrite", *TINY]) == 0
    assert load_checkpoint(out).step == 1


def test_resume_with_a_changed_setting_is_refused(volumes, tmp_path, capsys):
    first = tmp_path / "first.pt"
    assert main(["train", *volumes, "--out", str(first), "--steps", "1", *TINY]) == 0
    code = main(["train", *volumes, "--out", str(tmp_path / "second.pt"), "--resume", str(first),
                 "--lr", "0.5", "--device", "cpu"])
    assert code == 2 and "learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["missing", "2d", "bad_device", "bad_steps"])
def test_bad_input_is_an_error_line_and_exit_2(problem, volumes, tmp_path, capsys):
    args = ["train", volumes[0], "--out", str(tmp_path / "model.pt"), "--steps", "1", *TINY]
    if problem == "missing":
        args[1] = str(tmp_path / "nothing.tif")
    elif problem == "2d":
        args[1] = str(tmp_path / "flat.tif")
        tifffile.imwrite(args[1], np.zeros((20, 20), np.uint8))
    elif problem == "bad_device":
        args += ["--device", "tpu"]
    else:
        args[args.index("--steps") + 1] = "0"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") or "\nerror: " in err
    assert not (tmp_path / "model.pt").exists()


def start_training(volumes, out, *extra):
    """`hypseg train` in a child process, returned once its first progress line says it trains."""
    command = [sys.executable, "-c", "import sys; from napari_hypseg.cli.main import main; sys.exit(main())",
               "train", *volumes, "--out", str(out), "--steps", "100000", *TINY, *extra]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first_line = process.stderr.readline()       # the first progress event: training has started
    assert "training on" in first_line, first_line + process.stderr.read()
    return process


def finish(process) -> str:
    try:
        return process.communicate(timeout=120)[1]
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)


def test_ctrl_c_stops_and_still_writes_the_model(volumes, tmp_path):
    out = tmp_path / "model.pt"
    process = start_training(volumes, out)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    err = finish(process)
    assert process.returncode == 130, err
    assert "stopping after this step" in err and "--resume" in err
    trained = load_checkpoint(out)
    assert 0 <= trained.step < 100000 and len(trained.history) == trained.step


def test_a_second_ctrl_c_aborts_without_writing(volumes, tmp_path):
    out = tmp_path / "model.pt"
    process = start_training(volumes, out, "--checkpoint-every", "1", "--batch-size", "512")
    assert "(saved" in process.stderr.readline()     # step 1 is saved; step 2 (a second or more) runs
    saved = out.read_bytes()
    time.sleep(0.3)                                  # ... and has surely begun: both presses land in it
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    err = finish(process)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert out.read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]


def test_two_ctrl_c_during_one_long_operation_abort():
    """Python runs its handler once for signals that arrive during one long C call; both count."""
    stop = threading.Event()

    def press_twice():
        time.sleep(0.2)                               # the main thread is inside the sort by now
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_twice)
    # Python's own handler to start from (a background job, e.g. under nohup, inherits SIGINT ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _ctrl_c_requests_stop(stop, ProgressLine(io.StringIO())):
                values = np.random.default_rng(0).random(16_000_000)
                presser.start()
                np.sort(values, kind="heapsort")          # one call of over a second: no handler runs
                presser.join()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored
    finally:
        signal.signal(signal.SIGINT, inherited)
