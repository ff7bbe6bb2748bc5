import threading

import numpy as np
import pytest
import torch

from napari_hypseg.core.config import get_preset
from napari_hypseg.core.device import inference_dtype
from napari_hypseg.core.errors import ConfigError, VolumeError
from napari_hypseg.core.inference import latent_field
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats
from napari_hypseg.core.progress import run_to_completion


@pytest.fixture(scope="module")
def model():
    return HypsegVAE(get_preset("fast", encoder_channels=(4, 8), hidden=8, seed=3, context=5))  # patch 5, context 5


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(13, 17, 11)) * 40 + 100).astype(np.float32)


@pytest.fixture(scope="module")
def stats(image):
    return IntensityStats.fit(image)


def _field(model, image, stats, precision="float32", **kwargs):
    """The exact (float32) path unless a test asks otherwise."""
    return run_to_completion(latent_field(model, image, stats, device="cpu", precision=precision, **kwargs))


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("context", [5, 3, 8])
def test_result_does_not_depend_on_tile_size(model, image, stats, context, stride):
    whole = _field(model, image, stats, context=context, tile=64, stride=stride)
    assert whole.shape == (13, 17, 11, 3) and whole.dtype == np.float32
    assert np.all(np.linalg.norm(whole, axis=-1) < 1.0)          # points of the ball
    tiled = _field(model, image, stats, context=context, tile=4, batch_size=3, stride=stride)
    assert np.allclose(tiled, whole, atol=1e-5)


def test_a_stride_computes_every_other_point_exactly_and_interpolates_between(model, image, stats):
    """Context = patch: the encoder's grid is the voxels, so stride 2 computes the latents of the even
    voxels exactly (as stride 1 does) and gives each voxel between two of them their mean."""
    exact = _field(model, image, stats, tile=6)
    strided = _field(model, image, stats, tile=6, stride=2)
    even = strided[::2, ::2, ::2]
    assert np.allclose(even, exact[::2, ::2, ::2], atol=1e-5)
    assert np.allclose(strided[1::2, ::2, ::2], 0.5 * (even[:-1] + even[1:]), atol=1e-5)
    assert np.allclose(strided[::2, 1::2, 1::2], 0.25 * (even[:, :-1, :-1] + even[:, 1:, :-1]
                                                          + even[:, :-1, 1:] + even[:, 1:, 1:]), atol=1e-5)
    assert not np.allclose(strided[1::2], exact[1::2], atol=1e-3)   # between, it is not the exact latent


def test_equals_dense_mean_on_a_reflect_padded_volume_when_context_is_the_patch(model, image, stats):
    half = (model.patch_size - 1) // 2
    padded = np.pad(stats.apply(image), half, mode="reflect")
    with torch.no_grad():
        expected = model.dense_mean(torch.from_numpy(padded)[None, None])[0].permute(1, 2, 3, 0).numpy()
    assert np.allclose(_field(model, image, stats, tile=6), expected, atol=1e-5)


def test_latent_is_the_mean_of_the_resized_context_cube(model, image, stats):
    """As training sees it: the cube of side `context` around the voxel, sampled at the centres of P³
    cells (trilinear, neighbours outside the cube included), encoded. Checked at voxels where the
    resampling grid passes exactly through the voxel (v * P / context integral)."""
    context, patch = 3, model.patch_size
    normalised = torch.from_numpy(stats.apply(image)).double()
    field = _field(model, image, stats, context=context, tile=5)
    offsets = ((np.arange(patch) + 0.5) / patch - 0.5) * context
    for voxel in [(6, 6, 3), (3, 9, 6), (9, 12, 6)]:
        axes = [v + offsets for v in voxel]
        patch_values = normalised
        for axis, positions in enumerate(axes):
            left = np.floor(positions).astype(int)
            w = torch.as_tensor(positions - left).reshape([-1 if a == axis else 1 for a in range(3)])
            patch_values = (patch_values.index_select(axis, torch.as_tensor(left)) * (1 - w)
                            + patch_values.index_select(axis, torch.as_tensor(left + 1)) * w)
        with torch.no_grad():
            mu, _ = model.encode(patch_values.float()[None, None])
        assert np.allclose(field[voxel], mu[0, :, 0, 0, 0].numpy(), atol=1e-5)


def test_memmap_in_and_out(model, image, stats, tmp_path):
    np.save(tmp_path / "image.npy", image)
    source = np.load(tmp_path / "image.npy", mmap_mode="r")     # read-only memory map
    out = tmp_path / "latents.npy"
    field = _field(model, source, stats, tile=7, out=out)
    assert isinstance(field, np.memmap) and out.exists()
    assert np.allclose(np.load(out), _field(model, image, stats), atol=1e-5)


def test_progress_and_stop(model, image, stats, tmp_path):
    events = []
    run_to_completion(latent_field(model, image, stats, tile=5, batch_size=2, device="cpu"), events.append)
    assert all(event.stage == "infer" for event in events)
    n_tiles = 3 * 4 * 3
    assert [event.step for event in events] == [0, *range(2, n_tiles, 2), n_tiles]
    assert all(event.total == n_tiles for event in events)

    stop = threading.Event()
    out = tmp_path / "stopped.npy"
    work = latent_field(model, image, stats, tile=5, device="cpu", out=out, stop=stop)
    next(work)
    next(work)
    stop.set()
    assert run_to_completion(work) is None
    assert not out.exists()
    assert model.training        # a fresh model is in training mode; its mode is restored


def test_volume_smaller_than_the_context_is_a_clear_error(model, stats):
    with pytest.raises(VolumeError, match=r"shape \(4, 20, 20\).*context of 5"):
        _field(model, np.zeros((4, 20, 20), np.float32), stats)
    assert _field(model, np.zeros((5, 5, 5), np.float32), stats).shape == (5, 5, 5, 3)


def test_bad_arguments(model, image, stats, tmp_path):
    with pytest.raises(ConfigError, match="tile"):
        _field(model, image, stats, tile=0)
    with pytest.raises(ConfigError, match="context"):
        _field(model, image, stats, context=0)
    with pytest.raises(ConfigError, match="stride"):
        _field(model, image, stats, stride=0)
    with pytest.raises(ConfigError, match=".npy"):
        _field(model, image, stats, out=tmp_path / "latents.tif")
    with pytest.raises(VolumeError):
        _field(model, np.zeros((5, 5)), stats)


def test_a_small_memory_budget_shrinks_passes_without_changing_the_result(model, image, stats, monkeypatch):
    from napari_hypseg.core import inference

    expected = _field(model, image, stats, context=3)
    monkeypatch.setattr(inference, "CPU_MEMORY_BUDGET", 20_000.0)
    events = []
    field = run_to_completion(latent_field(model, image, stats, context=3, device="cpu", precision="float32"),
                              events.append)
    assert "of up to 8³ voxels, 1 per pass" in events[0].message
    assert np.allclose(field, expected, atol=1e-5)


@pytest.mark.parametrize("precision", ["auto", "bfloat16"])
def test_reduced_precision_stays_close_to_float32(model, image, stats, precision):
    """"auto" is float32 or bfloat16 depending on the CPU (test_device checks which): float32 must be the
    exact path itself, bfloat16 a different result within its rounding."""
    runs_in = inference_dtype(torch.device("cpu"), precision)
    assert runs_in in (torch.float32, torch.bfloat16)
    exact = _field(model, image, stats, context=3)
    reduced = _field(model, image, stats, context=3, precision=precision)
    assert reduced.dtype == np.float32 and reduced.shape == exact.shape
    if runs_in == torch.float32:
        np.testing.assert_array_equal(reduced, exact)
    else:
        assert not np.array_equal(reduced, exact)      # it really ran in the other precision
        assert np.all(np.linalg.norm(reduced, axis=-1) < 1.0)
        # bfloat16 keeps 8 significant bits: latents move by about 1e-2 of their spread at most.
        assert np.abs(reduced - exact).max() < 0.03 * exact.std()
    # The channels-last layout used for bfloat16 does not outlive the call.
    assert all(p.is_contiguous() for p in model.parameters())


def test_unknown_precision_is_refused(model, image, stats):
    with pytest.raises(ConfigError, match="precision must be one of"):
        _field(model, image, stats, precision="float16")
