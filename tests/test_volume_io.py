"""core.volume_io on real files: round trips per format and dtype, memory mapping, bad inputs."""

from __future__ import annotations

import gzip
import mmap
import os

import mrcfile
import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_hypseg.core.errors import VolumeError
from napari_hypseg.core.volume_io import (
    READ_SUFFIXES,
    WRITE_SUFFIXES,
    Volume,
    as_volume_array,
    read_volume,
    suffix_of,
    write_labels,
)

SHAPE = (5, 6, 7)
SPACING = (0.37, 1.3, 2.1)


def _volume(dtype=np.float32, shape=SHAPE):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def _labels(dtype, high=100, shape=SHAPE):
    return np.random.default_rng(1).integers(0, high + 1, shape).astype(dtype)


def _backed_by_mmap(array) -> bool:
    """True when following .base ends at an OS memory map, i.e. the data was never copied."""
    while array is not None:
        if isinstance(array, mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def _write_mrc(path, data, voxel_size):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
    return path


def _write_nifti(path, raw, affine):
    nib.save(nib.Nifti1Image(raw, affine, dtype=raw.dtype), path)
    return path


OBLIQUE_AFFINE = np.array(
    [[0.0, 0.0, 1.5, -20.0], [0.0, 0.75, 0.0, 10.0], [-0.5, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
)


# --- suffixes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("a.MRC", ".mrc"), ("b.nii.gz", ".nii.gz"), ("c.NII.GZ", ".nii.gz"), ("d.tar.gz", ".gz"), ("e", "")],
)
def test_suffix_of_treats_nii_gz_as_one_suffix(name, suffix):
    assert suffix_of(name) == suffix


def test_suffix_lists_cover_the_formats():
    assert {".mrc", ".mrcs", ".map", ".rec", ".st", ".tif", ".tiff", ".nii", ".nii.gz", ".zarr"} == set(READ_SUFFIXES)
    assert set(WRITE_SUFFIXES) == {".tif", ".tiff", ".mrc", ".nii", ".nii.gz", ".zarr"}


# --- MRC ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mrc", ".mrcs", ".map", ".rec", ".st"])
def test_mrc_is_memory_mapped_with_spacing_in_angstrom(tmp_path, suffix):
    data = _volume()
    path = _write_mrc(tmp_path / f"tomo{suffix}", data, (2.1, 1.3, 0.37))  # x, y, z
    volume = read_volume(path)
    assert isinstance(volume, Volume)
    assert isinstance(volume.data, np.memmap) and _backed_by_mmap(volume.data)
    assert not volume.data.flags.writeable
    np.testing.assert_array_equal(volume.data, data)
    assert volume.spacing == SPACING
    assert volume.unit == "angstrom"
    assert volume.affine is None and volume.source == path


def test_mrc_voxel_size_zero_means_pixels(tmp_path):
    path = _write_mrc(tmp_path / "a.mrc", _volume(), 0.0)
    volume = read_volume(path)
    assert volume.spacing == (1.0, 1.0, 1.0) and volume.unit == "pixel"


def test_mrc_singleton_axis_is_squeezed_and_stays_mapped(tmp_path):
    path = _write_mrc(tmp_path / "a.mrc", _volume(shape=(1, 5, 6, 7)), 1.0)
    volume = read_volume(path)
    assert volume.data.shape == (5, 6, 7) and _backed_by_mmap(volume.data)


def test_mrc_2d_image_is_refused(tmp_path):
    path = _write_mrc(tmp_path / "image.mrc", _volume(shape=(6, 7)), 1.0)
    with pytest.raises(VolumeError, match=r"shape \(6, 7\), a 2D image.*3D volume \(Z, Y, X\)"):
        read_volume(path)


def test_mrc_volume_stack_is_refused_with_advice(tmp_path):
    path = _write_mrc(tmp_path / "stack.mrc", _volume(shape=(2, 5, 6, 7)), 1.0)
    with pytest.raises(VolumeError, match=r"\(2, 5, 6, 7\), a 4D stack.*split the channels or time points"):
        read_volume(path)


def test_mrc_header_claiming_more_data_than_the_file_has(tmp_path):
    path = _write_mrc(tmp_path / "cut.mrc", _volume(), 1.0)
    os.truncate(path, path.stat().st_size - 40)
    with pytest.raises(VolumeError, match=r"cut\.mrc as an MRC file: the file is corrupt, truncated"):
        read_volume(path)


def test_mrc_shorter_than_its_header(tmp_path):
    path = tmp_path / "stub.mrc"
    path.write_bytes(b"\x00" * 300)
    with pytest.raises(VolumeError, match=r"stub\.mrc as an MRC file"):
        read_volume(path)


# --- TIFF ---------------------------------------------------------------------------------------


def test_imagej_tiff_spacing_and_unit(tmp_path):
    data = _volume(np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / 2.1, 1 / 1.3),
        metadata={"axes": "ZYX", "spacing": 0.37, "unit": "micron"},
    )
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, data)
    assert volume.spacing == pytest.approx(SPACING, rel=1e-9)
    assert volume.unit == "micrometer"


def test_ome_tiff_physical_sizes_in_one_unit(tmp_path):
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        path, _volume(np.uint16), ome=True,
        metadata={
            "axes": "ZYX", "PhysicalSizeZ": 500.0, "PhysicalSizeZUnit": "nm",
            "PhysicalSizeY": 0.25, "PhysicalSizeYUnit": "µm", "PhysicalSizeX": 0.125, "PhysicalSizeXUnit": "µm",
        },
    )
    volume = read_volume(path)
    assert volume.spacing == pytest.approx((0.5, 0.25, 0.125)) and volume.unit == "micrometer"


def test_plain_tiff_has_pixel_spacing(tmp_path):
    data = _volume(np.float32)
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, data)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, data)
    assert volume.spacing == (1.0, 1.0, 1.0) and volume.unit == "pixel"


def test_compressed_tiff_is_read(tmp_path):
    data = _volume(np.uint16)
    path = tmp_path / "zip.tif"
    tifffile.imwrite(path, data, imagej=True, compression="zlib")
    np.testing.assert_array_equal(read_volume(path).data, data)


@pytest.mark.parametrize("shape", [(16, 16, 3), (4, 16, 16, 3)])
def test_rgb_tiff_is_refused(tmp_path, shape):
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8), photometric="rgb")
    with pytest.raises(VolumeError, match=r"colour\.tif has shape .*RGB/RGBA colour image.*\(Z, Y, X\)"):
        read_volume(path)


def test_2d_tiff_is_refused(tmp_path):
    path = tmp_path / "slice.tif"
    tifffile.imwrite(path, np.zeros((1, 16, 16), np.uint16))
    with pytest.raises(VolumeError, match=r"slice\.tif has shape \(1, 16, 16\) \(axes QYX\), a 2D image"):
        read_volume(path)


def test_4d_hyperstack_is_refused_naming_its_axes(tmp_path):
    path = tmp_path / "channels.tif"
    tifffile.imwrite(path, np.zeros((4, 2, 16, 16), np.uint16), imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(VolumeError, match=r"\(4, 2, 16, 16\) \(axes ZCYX\), a 4D stack.*Split Channels"):
        read_volume(path)


def test_hyperstack_with_singleton_channel_is_squeezed(tmp_path):
    data = _volume(np.uint16, shape=(4, 1, 16, 16))
    path = tmp_path / "one_channel.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    np.testing.assert_array_equal(read_volume(path).data, data[:, 0])


# --- NIfTI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_axes_spacing_and_affine(tmp_path, suffix):
    raw = _volume(shape=(7, 6, 5))  # (i, j, k)
    path = _write_nifti(tmp_path / f"brain{suffix}", raw, OBLIQUE_AFFINE)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, raw.transpose(2, 1, 0))
    assert volume.data.shape == (5, 6, 7)
    assert volume.spacing == (1.5, 0.75, 0.5)  # column norms of the affine (i, j, k), reversed
    assert volume.unit == "mm"
    np.testing.assert_array_equal(volume.affine, OBLIQUE_AFFINE)
    if suffix == ".nii":
        assert _backed_by_mmap(volume.data)


def test_nifti_with_singleton_fourth_axis(tmp_path):
    raw = _volume(shape=(7, 6, 5, 1))
    volume = read_volume(_write_nifti(tmp_path / "t1.nii.gz", raw, np.eye(4)))
    np.testing.assert_array_equal(volume.data, raw[..., 0].T)


def test_nifti_time_series_is_refused(tmp_path):
    path = _write_nifti(tmp_path / "bold.nii.gz", _volume(shape=(7, 6, 5, 3)), np.eye(4))
    with pytest.raises(VolumeError, match=r"bold\.nii\.gz has shape \(3, 5, 6, 7\), a 4D stack"):
        read_volume(path)


def test_nifti_units_in_header_are_kept(tmp_path):
    image = nib.Nifti1Image(_volume(shape=(7, 6, 5)), np.diag([0.2, 0.2, 0.4, 1.0]))
    image.header.set_xyzt_units(xyz="micron")
    nib.save(image, tmp_path / "scan.nii")
    volume = read_volume(tmp_path / "scan.nii")
    assert volume.unit == "micrometer" and volume.spacing == (0.4, 0.2, 0.2)


def test_truncated_nii_gz(tmp_path):
    path = _write_nifti(tmp_path / "cut.nii.gz", _volume(shape=(30, 30, 30)), np.eye(4))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz as a NIfTI file: the file is corrupt, truncated"):
        read_volume(path)


def test_truncated_nii(tmp_path):
    path = _write_nifti(tmp_path / "cut.nii", _volume(), np.eye(4))
    os.truncate(path, path.stat().st_size - 30)
    with pytest.raises(VolumeError, match=r"cut\.nii as a NIfTI file"):
        read_volume(path)


def test_gzip_of_garbage_is_refused(tmp_path):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header" * 10))
    with pytest.raises(VolumeError, match=r"junk\.nii\.gz as a NIfTI file"):
        read_volume(path)


# --- bad files of every kind ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.mrc", "a.rec", "a.tif", "a.nii", "a.nii.gz"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(VolumeError, match=r"a\.(mrc|rec|tif|nii|nii\.gz): the file is empty \(0 bytes\)"):
        read_volume(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.mrc", "an MRC"), ("a.tiff", "a TIFF"), ("a.nii", "a NIfTI"), ("a.nii.gz", "a NIfTI")],
)
def test_garbage_bytes(tmp_path, name, kind):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(3).bytes(4096))
    with pytest.raises(VolumeError, match=rf"Cannot read .*{name.replace('.', '[.]')} as {kind} file"):
        read_volume(path)


def test_unknown_suffix_lists_the_supported_ones(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(VolumeError, match=r"unsupported file type '\.png'.*\.mrc.*\.tiff.*\.nii\.gz"):
        read_volume(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(VolumeError, match="does not exist"):
        read_volume(tmp_path / "nothing.mrc")
    (tmp_path / "folder.tif").mkdir()
    with pytest.raises(VolumeError, match="is a folder"):
        read_volume(tmp_path / "folder.tif")


def test_reading_does_not_scan_for_nan(tmp_path):
    data = _volume()
    data[2, 3, 4] = np.nan
    volume = read_volume(_write_nifti(tmp_path / "nan.nii", data, np.eye(4)))
    assert np.isnan(volume.data[4, 3, 2])


# --- as_volume_array ------------------------------------------------------------------------------


def test_as_volume_array_squeezes_without_copying_a_memmap(tmp_path):
    path = _write_mrc(tmp_path / "a.mrc", _volume(shape=(1, 5, 6, 7)), 1.0)
    with mrcfile.mmap(path, mode="r") as mrc:
        mapped = mrc.data
    checked = as_volume_array(mapped, "tomogram")
    assert checked.shape == (5, 6, 7)
    assert np.shares_memory(checked, mapped) and _backed_by_mmap(checked)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_as_volume_array_refuses_non_finite_values(bad):
    data = _volume(np.float64, shape=(40, 6, 7))
    data[33, 4, 5] = bad
    with pytest.raises(VolumeError, match=r"tomo contains NaN or infinite values \(the first at z=33, y=4, x=5\)"):
        as_volume_array(data, "tomo")


def test_as_volume_array_scans_in_slabs(monkeypatch):
    from napari_hypseg.core import volume_io

    monkeypatch.setattr(volume_io, "_FINITE_CHECK_BYTES", 1)  # one z-slice per slab
    data = _volume(shape=(9, 6, 7))
    as_volume_array(data)
    data[8, 0, 1] = np.nan
    with pytest.raises(VolumeError, match=r"z=8, y=0, x=1"):
        as_volume_array(data)


def test_as_volume_array_accepts_integers_and_refuses_other_kinds():
    assert as_volume_array(_labels(np.uint16)).dtype == np.uint16
    with pytest.raises(VolumeError, match="complex128"):
        as_volume_array(np.zeros(SHAPE, complex))
    with pytest.raises(VolumeError, match=r"volume has shape \(1, 6, 7\), a 2D image"):
        as_volume_array(np.zeros((1, 6, 7)))
    with pytest.raises(VolumeError, match="holds no voxels"):
        as_volume_array(np.zeros((0, 6, 7)))


# --- write_labels round trips ----------------------------------------------------------------------

EXACT_DTYPES = {
    ".tif": ("uint8", "uint16", "int16"),
    ".tiff": ("uint8", "uint16", "int16"),
    ".mrc": ("int8", "int16", "uint16"),
    ".nii": ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"),
    ".nii.gz": ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"),
}
UNITS = {".tif": "micrometer", ".tiff": "nanometer", ".mrc": "angstrom", ".nii": "mm", ".nii.gz": "mm"}


@pytest.mark.parametrize(
    ("suffix", "dtype"), [(s, d) for s, dtypes in EXACT_DTYPES.items() for d in dtypes]
)
def test_labels_round_trip_exactly(tmp_path, suffix, dtype):
    labels = _labels(dtype)
    path = write_labels(tmp_path / f"labels{suffix}", labels, spacing=SPACING, unit=UNITS[suffix])
    back = read_volume(path)
    assert back.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == SPACING
    assert back.unit == UNITS[suffix]


@pytest.mark.parametrize(
    ("suffix", "dtype", "high", "stored"),
    [
        (".mrc", "uint8", 127, "int8"),
        (".mrc", "uint8", 255, "uint16"),
        (".mrc", "int32", 40000, "uint16"),
        (".mrc", "int64", 100, "int8"),
        (".tif", "int32", 255, "uint8"),
        (".tif", "uint32", 65535, "uint16"),
        (".tif", "int8", 100, "uint8"),
    ],
)
def test_labels_without_a_native_dtype_use_the_smallest_lossless_one(tmp_path, suffix, dtype, high, stored):
    labels = _labels(dtype, high)
    labels.flat[0] = high
    back = read_volume(write_labels(tmp_path / f"l{suffix}", labels))
    assert back.data.dtype == np.dtype(stored)
    np.testing.assert_array_equal(back.data, labels)


def test_negative_labels_fall_back_to_a_signed_dtype(tmp_path):
    labels = _labels(np.int32, 300) - 150
    back = read_volume(write_labels(tmp_path / "l.tif", labels))
    assert back.data.dtype == np.int16
    np.testing.assert_array_equal(back.data, labels)


@pytest.mark.parametrize("suffix", [".tif", ".mrc"])
def test_labels_too_large_for_the_format_suggest_nifti(tmp_path, suffix):
    labels = _labels(np.int32)
    labels.flat[0] = 70000
    with pytest.raises(VolumeError, match=r"from 0 to 70000.*save them as \.nii\.gz"):
        write_labels(tmp_path / f"l{suffix}", labels)
    assert list(tmp_path.iterdir()) == []


def test_mrc_converts_length_units_to_angstrom(tmp_path):
    back = read_volume(write_labels(tmp_path / "l.mrc", _labels("int16"), spacing=(0.5, 1.25, 2.0), unit="nm"))
    assert back.spacing == (5.0, 12.5, 20.0) and back.unit == "angstrom"


def test_mrc_pixel_spacing_round_trips_as_unknown_voxel_size(tmp_path):
    path = write_labels(tmp_path / "l.mrc", _labels("int16"))
    with mrcfile.open(path) as mrc:
        assert float(mrc.voxel_size.x) == 0.0
    back = read_volume(path)
    assert back.spacing == (1.0, 1.0, 1.0) and back.unit == "pixel"


def test_tiff_pixel_spacing_round_trips(tmp_path):
    back = read_volume(write_labels(tmp_path / "l.tif", _labels("uint8")))
    assert back.spacing == (1.0, 1.0, 1.0) and back.unit == "pixel"


def test_tiff_is_an_imagej_hyperstack(tmp_path):
    path = write_labels(tmp_path / "l.tif", _labels("uint16"), spacing=SPACING, unit="micrometer")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["spacing"] == 0.37 and tif.imagej_metadata["unit"] == "micron"
        assert tif.series[0].axes == "ZYX"


def test_nifti_labels_go_back_to_the_source_space(tmp_path):
    raw = _volume(shape=(7, 6, 5))
    source = read_volume(_write_nifti(tmp_path / "brain.nii.gz", raw, OBLIQUE_AFFINE))
    labels = (source.data > 0).astype(np.uint8) + 1
    path = write_labels(
        tmp_path / "seg.nii.gz", labels, spacing=source.spacing, unit=source.unit, affine=source.affine
    )
    written = nib.load(path)
    np.testing.assert_array_equal(written.affine, OBLIQUE_AFFINE)
    # voxel (i, j, k) of the labels file labels voxel (i, j, k) of the source file
    np.testing.assert_array_equal(np.asarray(written.dataobj), (raw > 0).astype(np.uint8) + 1)
    back = read_volume(path)
    np.testing.assert_array_equal(back.affine, source.affine)
    assert back.spacing == source.spacing


def test_nifti_affine_from_spacing_without_a_source(tmp_path):
    path = write_labels(tmp_path / "seg.nii", _labels("uint16"), spacing=SPACING, unit="mm")
    np.testing.assert_array_equal(nib.load(path).affine, np.diag([2.1, 1.3, 0.37, 1.0]).astype(np.float32))
    assert nib.load(path).header.get_xyzt_units()[0] == "mm"


def test_bool_labels_are_written_as_uint8(tmp_path):
    mask = _labels("uint8", 1).astype(bool)
    back = read_volume(write_labels(tmp_path / "mask.tif", mask))
    assert back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.data, mask)


# --- write_labels refusals -----------------------------------------------------------------------


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "l.tif"
    first = _labels("uint8")
    write_labels(path, first)
    with pytest.raises(VolumeError, match=r"l\.tif already exists"):
        write_labels(path, first + 1)
    np.testing.assert_array_equal(read_volume(path).data, first)
    write_labels(path, first + 1, overwrite=True)
    np.testing.assert_array_equal(read_volume(path).data, first + 1)
    assert [p.name for p in tmp_path.iterdir()] == ["l.tif"]


def test_written_file_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_labels(tmp_path / "l.nii.gz", _labels("uint8"))
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_leaves_the_existing_file_and_no_temporary(tmp_path):
    path = tmp_path / "l.mrc"
    first = _labels("int16")
    write_labels(path, first)
    before = path.read_bytes()
    too_large = _labels(np.int64)
    too_large.flat[0] = 2**40
    with pytest.raises(VolumeError, match="MRC cannot store"):
        write_labels(path, too_large, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["l.mrc"]


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (np.zeros(SHAPE, np.float32), {}, "integer labels are expected"),
        (np.zeros((6, 7), np.uint8), {}, r"labels has shape \(6, 7\), a 2D image"),
        (np.zeros(SHAPE, np.uint8), {"spacing": (1.0, 0.0, 1.0)}, "not three positive numbers"),
        (np.zeros(SHAPE, np.uint8), {"spacing": (1.0, 1.0)}, "not three positive numbers"),
    ],
)
def test_invalid_labels_or_spacing(tmp_path, labels, kwargs, message):
    with pytest.raises(VolumeError, match=message):
        write_labels(tmp_path / "l.tif", labels, **kwargs)


def test_unsupported_write_suffix_and_missing_folder(tmp_path):
    supported = r"\.tif, \.tiff, \.mrc, \.nii, \.nii\.gz"
    with pytest.raises(VolumeError, match=rf"unsupported file type '\.map'.*{supported}"):
        write_labels(tmp_path / "l.map", _labels("int16"))
    with pytest.raises(VolumeError, match="does not exist"):
        write_labels(tmp_path / "missing" / "l.tif", _labels("uint8"))


def test_mrc_refuses_a_unit_it_cannot_convert(tmp_path):
    with pytest.raises(VolumeError, match="cannot be converted to Å"):
        write_labels(tmp_path / "l.mrc", _labels("int16"), spacing=(2, 2, 2), unit="furlong")
