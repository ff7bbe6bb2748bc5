"""OME-Zarr / Zarr reading and writing, binning, regions of interest and masks: core and CLI, real files."""

from __future__ import annotations

import dask.array as da
import mrcfile
import numpy as np
import pytest
import tifffile
import zarr

from napari_hypseg.cli.main import main
from napari_hypseg.core.checkpoint import save_checkpoint
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import ConfigError, VolumeError
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats
from napari_hypseg.core.region import bin_volume, full_labels, plan_region, region_volume
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.core.volume_io import as_volume_array, read_volume, write_labels

CPU = ["--device", "cpu", "--n-fine", "4"]


def _ome_zarr(path, data, *, scale=(2.0, 0.5, 0.5), unit="nanometer", version="0.4"):
    """A two-level OME-Zarr image (t, c, z, y, x with t = c = 1), written with zarr's own API."""
    root = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    levels = [data, data[:, ::2, ::2]]
    datasets = []
    for i, level in enumerate(levels):
        array = root.create_array(str(i), shape=(1, 1, *level.shape), dtype=level.dtype, chunks=(1, 1, 8, 16, 16))
        array[...] = level[None, None]
        factor = (1.0, 2.0, 2.0) if i else (1.0, 1.0, 1.0)
        datasets.append({"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, *(s * f for s, f in zip(scale, factor))]}]})
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
            *({"name": n, "type": "space", "unit": unit} for n in "zyx")]
    multiscales = [{"version": version, "axes": axes, "datasets": datasets}]
    if version == "0.4":
        root.attrs["multiscales"] = multiscales
    else:
        root.attrs["ome"] = {"version": version, "multiscales": multiscales}
    return path


@pytest.fixture(scope="module")
def image():
    return make_toy_volume(2).image[:24, :30, :28].copy()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_levels_spacing_and_lazy_data(tmp_path, image, version):
    path = _ome_zarr(tmp_path / "image.zarr", image, version=version)
    volume = read_volume(path)
    assert isinstance(volume.data, da.Array)                 # nothing read yet
    assert volume.data.shape == image.shape and volume.spacing == (2.0, 0.5, 0.5) and volume.unit == "nanometer"
    np.testing.assert_array_equal(volume.data.compute(), image)
    coarse = read_volume(path, level=1)
    assert coarse.data.shape == (24, 15, 14) and coarse.spacing == (2.0, 1.0, 1.0)
    assert isinstance(as_volume_array(volume.data), da.Array)     # the checks keep it lazy
    with pytest.raises(VolumeError, match="level 2 does not exist"):
        read_volume(path, level=2)


def test_zarr_errors_say_what_to_do(tmp_path, image):
    bad = image.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(VolumeError, match="z=3, y=4, x=5"):
        as_volume_array(read_volume(_ome_zarr(tmp_path / "nan.zarr", bad)).data)
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("raw", shape=(4, 5, 6), dtype="f4")
    with pytest.raises(VolumeError, match="open one of its arrays"):
        read_volume(tmp_path / "plain.zarr")
    assert read_volume(tmp_path / "plain.zarr" / "raw").data.shape == (4, 5, 6)
    with pytest.raises(VolumeError, match="does not exist"):
        read_volume(tmp_path / "missing.zarr")


def test_labels_written_as_ome_zarr(tmp_path):
    labels = (np.arange(20 * 21 * 22).reshape(20, 21, 22) % 5).astype(np.uint8)
    path = write_labels(tmp_path / "labels.zarr", labels, spacing=(3.0, 1.5, 1.5), unit="angstrom")
    back = read_volume(path)
    assert back.spacing == (3.0, 1.5, 1.5) and back.unit == "angstrom" and back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.data.compute(), labels)
    with pytest.raises(VolumeError, match="already exists"):
        write_labels(path, labels)
    write_labels(path, labels + 1, overwrite=True)
    np.testing.assert_array_equal(read_volume(path).data.compute(), labels + 1)


def test_binning_averages_blocks_and_unbinning_restores_the_grid():
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    binned = bin_volume(data, 2)
    assert binned.shape == (3, 3, 4)
    assert binned[0, 0, 0] == pytest.approx(data[:2, :2, :2].mean())
    assert binned[2, 2, 3] == pytest.approx(data[4:, 4:, 6:].mean())       # partial blocks average what they have
    region = plan_region(data.shape, factor=2)
    labels = np.arange(1, 37, dtype=np.uint8).reshape(3, 3, 4)
    full = full_labels(labels, region, full_resolution=True)
    assert full.shape == data.shape
    np.testing.assert_array_equal(full, labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:5, :6, :7])
    assert region.spacing((1.0, 2.0, 3.0)) == (2.0, 4.0, 6.0)
    with pytest.raises(ConfigError, match="binning must be one of 1, 2, 4"):
        plan_region(data.shape, factor=3)


def test_roi_and_mask_label_nothing_outside():
    data = np.random.default_rng(0).normal(size=(10, 12, 14)).astype(np.float32)
    region = plan_region(data.shape, roi="2:7,:,3:11", factor=2)
    assert region.box == (slice(2, 8), slice(0, 12), slice(2, 12))             # aligned to the 2-voxel grid
    assert region_volume(data, region).shape == (3, 6, 5)
    full = full_labels(np.ones(region.binned_shape, np.uint8), region, full_resolution=True)
    inside = np.zeros(data.shape, bool)
    inside[2:7, :, 3:11] = True
    np.testing.assert_array_equal(full != 0, inside)
    mask = np.zeros(data.shape, np.uint8)
    mask[4:6, 5:9, 1:4] = 1
    region = plan_region(data.shape, mask=mask)
    assert region.box == (slice(4, 6), slice(5, 9), slice(1, 4))
    full = full_labels(np.full(region.binned_shape, 3, np.uint8), region)
    np.testing.assert_array_equal(full, mask * 3)
    for roi, message in [("1:2,3", "z0:z1,y0:y1,x0:x1"), ("5:5,:,:", "empty along z")]:
        with pytest.raises(ConfigError, match=message):
            plan_region(data.shape, roi=roi)
    with pytest.raises(VolumeError, match="the mask is empty"):
        plan_region(data.shape, mask=np.zeros(data.shape))


# --- command line ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory, image):
    config = get_preset("fast", encoder_channels=(4, 8), hidden=8)
    folder = tmp_path_factory.mktemp("zarr-cli")
    return save_checkpoint(folder / "model.pt", HypsegVAE(config), config, IntensityStats.fit(image), step=0)


def test_segment_zarr_binned_at_both_grids(tmp_path, image, model, capsys):
    source = _ome_zarr(tmp_path / "image.zarr", image)
    out = tmp_path / "labels.zarr"
    assert main(["segment", str(source), "--model", str(model), "--out", str(out), "--k", "2", "--bin", "2",
                 *CPU]) == 0
    binned = read_volume(out)
    assert binned.data.shape == (12, 15, 14) and binned.spacing == (4.0, 1.0, 1.0)
    assert set(np.unique(binned.data.compute())) <= {1, 2}
    full = tmp_path / "full.mrc"
    assert main(["segment", str(source), "--model", str(model), "--out", str(full), "--k", "2", "--bin", "2",
                 "--full-resolution", *CPU]) == 0
    back = read_volume(full)
    assert back.data.shape == image.shape and back.spacing == (20.0, 5.0, 5.0)     # nm -> Å
    np.testing.assert_array_equal(np.asarray(back.data)[::2, ::2, ::2], binned.data.compute())
    assert not list(tmp_path.glob(".hypseg-latents-*"))                           # the temporary field is gone
    assert main(["segment", str(source), "--model", str(model), "--out", str(tmp_path / "x.tif"), "--k", "2",
                 "--roi", "1:2", *CPU]) == 2
    assert "z0:z1,y0:y1,x0:x1" in capsys.readouterr().err


def test_nothing_outside_the_roi_is_read_by_train_or_segment(tmp_path, image, capsys):
    """NaN outside the region: any voxel read from there would fail the run."""
    poisoned = np.full((40, 30, 28), np.nan, np.float32)
    poisoned[8:32] = image
    volume = tmp_path / "poisoned.tif"
    tifffile.imwrite(volume, poisoned)
    mask = tmp_path / "mask.mrc"
    inside = np.zeros(poisoned.shape, np.int8)
    inside[10:30, 4:26, 3:25] = 1
    with mrcfile.new(mask) as mrc:
        mrc.set_data(inside)
    model = tmp_path / "model.pt"
    assert main(["train", str(volume), "--out", str(model), "--steps", "2", "--batch-size", "4", "--device", "cpu",
                 "--roi", "8:32,:,:"]) == 0
    assert main(["train", str(volume), "--out", str(tmp_path / "m2.pt"), "--steps", "1", "--batch-size", "4",
                 "--device", "cpu", "--mask", str(mask), "--bin", "2"]) == 0
    out = tmp_path / "labels.tif"
    assert main(["segment", str(volume), "--model", str(model), "--out", str(out), "--k", "3", "--roi", "8:32,:,:",
                 *CPU]) == 0
    labels = read_volume(out).data
    assert labels.shape == poisoned.shape
    assert not labels[:8].any() and not labels[32:].any() and labels[8:32].min() >= 1
    out = tmp_path / "masked.tif"
    assert main(["segment", str(volume), "--model", str(model), "--out", str(out), "--k", "3", "--mask", str(mask),
                 *CPU]) == 0
    np.testing.assert_array_equal(read_volume(out).data != 0, inside != 0)
    assert main(["train", str(volume), "--out", str(tmp_path / "m3.pt"), "--steps", "1", "--device", "cpu"]) == 2
    assert "NaN" in capsys.readouterr().err
