import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_hypseg import __version__
from napari_hypseg.core.checkpoint import load_checkpoint, save_checkpoint, sidecar_path
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import CheckpointError
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats

CONFIG = get_preset("fast", encoder_channels=(4, 8), hidden=8, n_samples=1, batch_size=4, steps=4,
                    parent_min=5, parent_max=12, child_min=3, child_max=5)
STATS = IntensityStats(low=-2.5, high=3.0, mean=0.1, std=1.2)


def one_adam_step(model):
    """A real optimiser state to store (Adam with amsgrad, as training uses)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    x = torch.randn(2, 1, *(CONFIG.input_size,) * 3, generator=torch.Generator().manual_seed(0))
    model.loss(x, x, x)["total"].backward()
    optimizer.step()
    return optimizer.state_dict()


@pytest.fixture
def saved(tmp_path):
    model = HypsegVAE(CONFIG)
    optimizer_state = one_adam_step(model)
    history = [{"step": 1, "total": 3.5, "recon": 2.0, "kl": 0.5, "triplet": 0.001, "lr": 1e-3}]
    path = save_checkpoint(tmp_path / "model.pt", model, CONFIG, STATS, step=7, history=history,
                           optimizer_state=optimizer_state)
    return path, model


def test_round_trip_restores_everything(saved):
    path, model = saved
    trained = load_checkpoint(path)
    assert trained.config == CONFIG and trained.stats == STATS and trained.step == 7
    assert trained.checkpoint_path == path and trained.device == torch.device("cpu")
    assert trained.history[0]["total"] == 3.5
    assert not trained.model.training
    for key, value in model.state_dict().items():
        assert torch.equal(trained.model.state_dict()[key], value), key
    summary = json.loads(sidecar_path(path).read_text())
    assert summary["step"] == 7 and summary["version"] == __version__
    assert summary["config"]["encoder_channels"] == [4, 8]


def test_file_loads_with_weights_only(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "napari-hypseg" and payload["version"] == __version__
    assert payload["optimizer"]["state"]  # the Adam moments are in the file
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothere\.pt does not exist.*train a model"):
        load_checkpoint(tmp_path / "nothere.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


def test_corrupt_and_truncated_files(saved, tmp_path):
    path, _ = saved
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError, match=r"garbage\.pt.*corrupt or truncated"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt.*corrupt or truncated"):
        load_checkpoint(truncated)


def test_files_that_are_not_ours(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match=r"plain\.pt is a PyTorch file but not a napari-hypseg model"):
        load_checkpoint(plain)
    pickled_module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), pickled_module)
    with pytest.raises(CheckpointError, match=r"module\.pt is not a napari-hypseg model.*for safety"):
        load_checkpoint(pickled_module)


def test_weights_from_another_configuration(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["config"]["hidden"] = 16
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"weights in .*model\.pt do not match.*shape in file vs "
                                              r"configuration.*train the model again"):
        load_checkpoint(path)


def test_settings_this_version_cannot_use(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["config"]["future_option"] = 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"settings this version cannot use.*future_option"):
        load_checkpoint(path)


def test_failed_save_keeps_the_existing_file(saved):
    path, model = saved
    before = path.read_bytes()
    unpicklable = [{"note": lambda: None}]   # serialisation fails once the temporary file exists
    with pytest.raises(Exception, match="pickle|lambda"):
        save_checkpoint(path, model, CONFIG, STATS, step=8, history=unpicklable)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.json"]
    assert load_checkpoint(path).step == 7


DISK_FILLS_MIDWAY = textwrap.dedent("""
    import resource, signal, sys
    from napari_hypseg.core.checkpoint import save_checkpoint
    from napari_hypseg.core.config import get_preset
    from napari_hypseg.core.errors import CheckpointError
    from napari_hypseg.core.model import HypsegVAE
    from napari_hypseg.core.normalization import IntensityStats

    path, limit = sys.argv[1], int(sys.argv[2])
    CONFIG = get_preset("fast", encoder_channels=(4, 8), hidden=8)
    STATS = IntensityStats(low=-2.5, high=3.0, mean=0.1, std=1.2)
    model = HypsegVAE(CONFIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        save_checkpoint(path, model, CONFIG, STATS, step=8)
    except CheckpointError as error:
        print(error)
""")


def test_disk_full_midway_keeps_the_model_and_its_summary(saved):
    """A write that stops halfway (the file size limit plays a full disk) leaves the old model and
    its sidecar byte for byte, and no temporary file."""
    path, _ = saved
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    limit = 8192   # a few of the new file's records fit, the rest does not
    child = subprocess.run([sys.executable, "-c", DISK_FILLS_MIDWAY, str(path), str(limit)], capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert f"cannot write {path}: File too large; choose a writable folder" in child.stdout
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before
    assert load_checkpoint(path).step == 7


def test_save_into_read_only_folder_is_a_clear_error(saved, make_read_only):
    path, model = saved
    before = path.read_bytes()
    make_read_only(path.parent)
    with pytest.raises(CheckpointError, match="cannot write"):
        save_checkpoint(path, model, CONFIG, STATS, step=8)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.json"]


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tmp_path / "no" / "model.pt", HypsegVAE(CONFIG), CONFIG, STATS, step=0)
