"""The npe2 reader and writer in a real napari viewer, on real files."""

from __future__ import annotations

import gzip
import re
import struct
import warnings

import mrcfile
import napari
import nibabel as nib
import numpy as np
import pytest
import tifffile
from napari.errors import ReaderPluginError
from napari.layers import Image, Layer

from napari_hypseg._reader import get_reader
from napari_hypseg._writer import write_labels
from napari_hypseg.core.errors import VolumeError
from napari_hypseg.core.volume_io import SpacingWarning, read_volume

PLUGIN = "napari-hypseg"
AFFINE = np.array([[0.0, 0.0, 1.5, -20.0], [0.0, 0.75, 0.0, 10.0], [-0.5, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]])


def _image(shape=(5, 6, 7)):
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def _mrc(path, data, voxel_size=(2.1, 1.3, 0.37)):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
    return path


def _tiff(path, data):
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / 2.5, 1 / 0.5),
        metadata={"axes": "ZYX", "spacing": 4.0, "unit": "micron"},
    )
    return path


def _nifti(path, raw):
    nib.save(nib.Nifti1Image(raw, AFFINE), path)
    return path


# --- get_reader ---------------------------------------------------------------------------------


def test_get_reader_declines_what_it_does_not_handle(tmp_path):
    (tmp_path / "folder.mrc").mkdir()
    assert get_reader(str(tmp_path / "photo.png")) is None
    assert get_reader([str(tmp_path / "a.mrc"), str(tmp_path / "b.tif")]) is None
    assert get_reader(str(tmp_path / "folder.mrc")) is None
    assert get_reader([]) is None


def test_get_reader_reads_one_layer_per_file(tmp_path):
    paths = [str(_mrc(tmp_path / f"t{i}.mrc", _image())) for i in range(2)]
    reader = get_reader(paths)
    assert reader is not None
    layers = reader(paths)
    assert [meta["name"] for _, meta, _ in layers] == ["t0", "t1"]
    data, meta, kind = layers[0]
    assert kind == "image" and isinstance(data, np.memmap)
    assert meta["scale"] == (0.37, 1.3, 2.1) and meta["units"] == ("angstrom",) * 3
    assert meta["metadata"]["hypseg_volume"] == {
        "spacing": [0.37, 1.3, 2.1], "unit": "angstrom", "affine": None, "source": paths[0],
    }


# --- opening in the viewer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "scale", "unit"),
    [
        ("tomo.mrc", lambda p: _mrc(p, _image()), (0.37, 1.3, 2.1), "angstrom"),
        ("stack.tif", lambda p: _tiff(p, _image()), (4.0, 0.5, 2.5), "micrometer"),
        ("brain.nii.gz", lambda p: _nifti(p, _image((7, 6, 5))), (1.5, 0.75, 0.5), "millimeter"),
    ],
)
def test_viewer_opens_each_format_with_its_scale(make_napari_viewer, tmp_path, name, make, scale, unit):
    viewer = make_napari_viewer()
    path = make(tmp_path / name)
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert isinstance(layer, Image)
    assert layer.data.shape == (5, 6, 7)
    np.testing.assert_allclose(layer.scale, scale)
    assert [str(u) for u in layer.units] == [unit] * 3
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    assert layer.metadata["hypseg_volume"]["source"] == str(path)


def _nifti_without_x_size(path):
    """A NIfTI file whose header stores 0 as the x voxel size (pixdim[1]); nibabel would not write one."""
    header = bytearray(nib.Nifti1Image(_image((7, 6, 5)), np.diag([2.0, 3.0, 4.0, 1.0])).to_bytes())
    header[80:84] = struct.pack("<f", 0.0)
    path.write_bytes(gzip.compress(bytes(header)) if path.name.endswith(".gz") else bytes(header))
    return path


@pytest.mark.parametrize(
    ("name", "make", "scale"),
    [
        ("zero.mrc", lambda p: _mrc(p, _image(), voxel_size=(0.0, 1.3, 0.37)), (0.37, 1.3, 1.0)),
        ("nan.mrc", lambda p: _mrc(p, _image(), voxel_size=(np.nan, 1.3, 0.37)), (0.37, 1.3, 1.0)),
        ("zero.nii", _nifti_without_x_size, (4.0, 3.0, 1.0)),
        ("zero.nii.gz", _nifti_without_x_size, (4.0, 3.0, 1.0)),
    ],
)
def test_an_unusable_voxel_size_opens_at_1_with_a_warning_naming_the_file(make_napari_viewer, tmp_path, notifications,
                                                                         name, make, scale):
    """A voxel size of 0 or NaN in the header: the layer gets 1 on that axis, and a SpacingWarning
    says which file and what it gave; a running napari shows it as a warning notification."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    path = make(tmp_path / name)
    says = re.escape(f"{path} gives the voxel size") + r" \(.*(0\.0|nan)\) \(z, y, x\); the unusable values were replaced by 1"
    with pytest.warns(SpacingWarning, match=says):
        (layer_data,) = get_reader(str(path))(str(path))
    np.testing.assert_allclose(Layer.create(*layer_data).scale, scale)
    viewer = make_napari_viewer()
    with notification_manager, warnings.catch_warnings():   # napari.run() installs these hooks
        warnings.simplefilter("always", SpacingWarning)
        (layer,) = viewer.open(path, plugin=PLUGIN)
    np.testing.assert_allclose(layer.scale, scale)
    assert layer.metadata["hypseg_volume"]["spacing"] == pytest.approx(scale)
    shown = [n for n in notifications if n.severity == NotificationSeverity.WARNING and re.search(says, n.message)]
    assert len(shown) == 1, [n.message for n in notifications]


def test_corrupt_file_gives_the_clear_message_and_napari_keeps_running(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    bad = _mrc(tmp_path / "bad.mrc", _image())
    bad.write_bytes(bad.read_bytes()[:-100])
    expected = r"Cannot read .*bad\.mrc as an MRC file: the file is corrupt, truncated"

    with pytest.raises(VolumeError, match=expected):  # an explicit plugin: our error, unchanged
        viewer.open(bad, plugin=PLUGIN)
    # File > Open: napari wraps the reader's error, keeping its message, and shows it to the user
    with pytest.raises(ReaderPluginError, match=expected) as caught:
        viewer.window._qt_viewer._qt_open([str(bad)], stack=False)
    assert isinstance(caught.value.original_error, VolumeError)

    assert len(viewer.layers) == 0
    (layer,) = viewer.open(_mrc(tmp_path / "good.mrc", _image()), plugin=PLUGIN)
    assert layer.name == "good"


def test_wrong_shape_through_the_viewer_says_what_is_expected(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(VolumeError, match=r"RGB/RGBA colour image.*3D volume \(Z, Y, X\)"):
        viewer.open(path, plugin=PLUGIN)
    assert len(viewer.layers) == 0


# --- saving labels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype", "unit", "expected_unit"),
    [
        ("seg.tif", np.uint16, "micrometer", "micrometer"),
        ("seg.mrc", np.int16, "angstrom", "angstrom"),
        ("seg.nii", np.int32, "mm", "mm"),
        ("seg.nii.gz", np.uint8, "millimeter", "mm"),
    ],
)
def test_viewer_saves_labels_that_read_back_identical(
    make_napari_viewer, tmp_path, name, dtype, unit, expected_unit
):
    viewer = make_napari_viewer()
    labels = np.random.default_rng(2).integers(0, 9, (5, 6, 7)).astype(dtype)
    layer = viewer.add_labels(labels, scale=(0.37, 1.3, 2.1), units=unit)
    path = tmp_path / name
    assert napari.save_layers(str(path), [layer], plugin=PLUGIN) == [str(path)]
    back = read_volume(path)
    assert back.data.dtype == labels.dtype
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == (0.37, 1.3, 2.1) and back.unit == expected_unit


def test_labels_drawn_on_a_nifti_image_are_saved_in_its_space(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    raw = _image((7, 6, 5))
    (image,) = viewer.open(_nifti(tmp_path / "brain.nii.gz", raw), plugin=PLUGIN)
    labels = viewer.add_labels(
        (np.asarray(image.data) > 0).astype(np.uint8), scale=image.scale, units=image.units,
        metadata=image.metadata,
    )
    path = tmp_path / "seg.nii.gz"
    viewer.layers.selection = {labels}
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    written = nib.load(path)
    np.testing.assert_array_equal(written.affine, AFFINE.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(written.dataobj), (raw > 0).astype(np.uint8))


def test_writer_refuses_mixed_units(tmp_path):
    attributes = {"scale": [1.0, 1.0, 1.0], "units": ("micrometer", "mm", "mm"), "metadata": {}}
    with pytest.raises(VolumeError, match="different unit per axis"):
        write_labels(str(tmp_path / "l.tif"), np.zeros((2, 3, 4), np.uint8), attributes)
