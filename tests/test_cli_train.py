import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_hypseg.cli.main import main
from napari_hypseg.core.checkpoint import load_checkpoint

TINY = ["--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("volumes")
    paths = []
    for seed, shape in ((0, (24, 24, 24)), (1, (20, 28, 24))):
        rng = np.random.default_rng(seed)
        image = (rng.normal(100, 10, size=shape) + 50 * (np.indices(shape)[2] > shape[2] // 2)).astype(np.uint16)
        path = folder / f"volume{seed}.tif"
        tifffile.imwrite(path, image)
        paths.append(str(path))
    return paths


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


def test_ctrl_c_stops_and_still_writes_the_model(volumes, tmp_path):
    out = tmp_path / "model.pt"
    command = [sys.executable, "-c", "import sys; from napari_hypseg.cli.main import main; sys.exit(main())",
               "train", *volumes, "--out", str(out), "--steps", "100000", *TINY]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first_line = process.stderr.readline()       # the first progress event: training has started
        assert "training on" in first_line
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "stopping after this step" in err and "--resume" in err
    trained = load_checkpoint(out)
    assert 0 <= trained.step < 100000 and len(trained.history) == trained.step
