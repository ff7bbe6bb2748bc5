"""The hostile-input corpus: bad volumes, model files, parameters and outputs, each tried as a user
would (the CLI, the napari reader, the Python API). Every case must end in one clear error line
(exit 2) or a correct result, before long work starts, and must leave every input and every existing
output as it was."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import re
import struct
import warnings

import mrcfile
import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from napari_hypseg._reader import get_reader
from napari_hypseg.cli.main import main
from napari_hypseg.core.checkpoint import load_checkpoint, save_checkpoint
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import CheckpointError, VolumeError
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.training import train
from napari_hypseg.core.volume_io import SpacingWarning, read_volume

CONFIG = get_preset("fast", encoder_channels=(4, 8), hidden=8, n_samples=1, batch_size=4, steps=1,
                    parent_min=5, parent_max=12, child_min=3, child_max=5, warmup_steps=0)
TINY = ["--device", "cpu"]


def image(shape=(24, 24, 24), dtype=np.float32):
    rng = np.random.default_rng(0)
    return (rng.normal(100, 10, size=shape) + 40 * (np.indices(shape)[2] > shape[2] // 2)).astype(dtype)


# --- bad volumes: each builder writes a file and names what the error must say ------------------


def mrc_with_header(path, **fields):
    with mrcfile.new(path) as mrc:
        mrc.set_data(image())
    data = bytearray(path.read_bytes())
    for offset, value in fields.values():
        data[offset:offset + 4] = struct.pack("<i", value) if isinstance(value, int) else struct.pack("<f", value)
    path.write_bytes(bytes(data))


def nifti(path, array=None, **header):
    img = nib.Nifti1Image(image() if array is None else array, np.eye(4))
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, path)


def patched(path, offset, raw: bytes):
    data = bytearray(path.read_bytes())
    data[offset:offset + len(raw)] = raw
    path.write_bytes(bytes(data))


def nifti_dims(path, dims):
    nifti(path)
    patched(path, 42, struct.pack("<3h", *dims))   # dim[1..3] of the 348-byte header


def gz_with(path, damage):
    nifti(path)
    data = bytearray(path.read_bytes())
    damage(data)
    path.write_bytes(bytes(data))


def zero_64_bytes(data):
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)


def flip_crc_bit(data):
    data[-6] ^= 0x01   # inside the CRC-32 of the gzip trailer: the voxels decode, the check fails


def flip_data_bit(data):
    data[len(data) // 2] ^= 0x10


def link_to_dev_zero(path):
    path.symlink_to("/dev/zero")


def deflate_tiff_claiming_rows(path, rows=65535):
    """A small Deflate TIFF whose header claims `rows` rows: more than Deflate could hold in the file."""
    tifffile.imwrite(path, np.zeros((1, 64, 64), np.uint8), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["ImageLength"]
        offset, wide = tag.valueoffset, tag.dtype == 4      # LONG or SHORT
    patched(path, offset, struct.pack("<I" if wide else "<H", rows))


BAD_VOLUMES = {
    "mrc negative dimension": ("v.mrc", lambda p: mrc_with_header(p, nx=(0, -5)), "dimensions.*positive"),
    "mrc absurd dimensions": ("v.mrc", lambda p: mrc_with_header(p, nx=(0, 30000), ny=(4, 30000), nz=(8, 30000)),
                              "header describes .* bytes, but it holds"),
    "mrc absurd extended header": ("v.mrc", lambda p: mrc_with_header(p, nsymbt=(92, 634_000_000)),
                                   "extended header of 634,000,000 bytes.*but it holds"),
    "mrc complex": ("v.mrc", lambda p: mrcfile.new(p, data=image().astype(np.complex64)).close(), "complex64"),
    "mrc truncated": ("v.mrc", lambda p: (mrc_with_header(p), os.truncate(p, 3000)), "corrupt, truncated"),
    "nifti negative dimension": ("v.nii", lambda p: nifti_dims(p, (-5, 24, 24)), "dimensions.*positive"),
    "nifti absurd dimensions": ("v.nii", lambda p: nifti_dims(p, (30000, 30000, 30000)),
                                "header describes .* bytes, but it holds"),
    "nifti complex": ("v.nii", lambda p: nifti(p, image().astype(np.complex64)), "complex64"),
    "nii.gz CRC mismatch": ("v.nii.gz", lambda p: gz_with(p, flip_crc_bit), "CRC check failed"),
    "nii.gz flipped bit": ("v.nii.gz", lambda p: gz_with(p, flip_data_bit), "corrupt"),
    "nii.gz zeroed bytes": ("v.nii.gz", lambda p: gz_with(p, zero_64_bytes), "corrupt"),
    "nii.gz truncated": ("v.nii.gz", lambda p: gz_with(p, lambda d: d.__delitem__(slice(-200, None))), "corrupt"),
    "nii.gz not gzip": ("v.nii.gz", lambda p: p.write_bytes(b"not a gzip stream" * 40), "corrupt"),
    "tiff complex": ("v.tif", lambda p: tifffile.imwrite(p, image().astype(np.complex64)), "complex64"),
    "tiff truncated": ("v.tif", lambda p: (tifffile.imwrite(p, image()), os.truncate(p, 5000)), "corrupt, truncated"),
    "tiff Deflate claiming too many rows": ("v.tif", deflate_tiff_claiming_rows, "compression .* cannot hold"),
    "tiff random bytes": ("v.tif", lambda p: p.write_bytes(np.random.default_rng(1).bytes(4096)), "corrupt"),
    "tiff 4D": ("v.tif", lambda p: tifffile.imwrite(p, np.zeros((2, 3, 24, 24, 24), np.uint8), imagej=True,
                                                     metadata={"axes": "TZCYX"}), "4D|5D"),
    "link to /dev/zero": ("v.mrc", link_to_dev_zero, "not a regular file"),
    "folder named like a volume": ("v.tif", lambda p: p.mkdir(), "is a folder"),
    "empty file": ("v.nii", lambda p: p.write_bytes(b""), "empty"),
    "missing file": ("v.tif", lambda p: None, "does not exist"),
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    run_to_completion(train([image()], CONFIG, checkpoint_path=path, device="cpu"))
    return path


@pytest.fixture(scope="module")
def good_volume(tmp_path_factory):
    path = tmp_path_factory.mktemp("volume") / "volume.tif"
    tifffile.imwrite(path, image())
    return path


def snapshot(*folders):
    """Every file under the folders with a hash of its bytes: what a failed run must leave unchanged."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink()
            else "other" for folder in folders for path in sorted(folder.rglob("*"))}


def fails_clearly(args, capsys, *, before_any_work: bool = False) -> str:
    """The one error line of a run that must fail (exit 2); `before_any_work`: it is all the run
    printed, so no volume was read into the model, no step trained, no progress shown."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    if before_any_work:
        assert (out, err) == ("", lines[0] + "\n"), out + err
    return lines[0]


@pytest.mark.parametrize("case", BAD_VOLUMES)
def test_bad_volume_is_one_clear_error_everywhere(case, tmp_path, model_file, capsys, caplog):
    name, build, expected = BAD_VOLUMES[case]
    path = tmp_path / name
    build(path)
    with pytest.raises(VolumeError, match=expected):
        read_volume(path)
    # no format library's log lines (e.g. tifffile's on each broken tag) printed before the error line
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
    reader = get_reader(str(path))
    if reader is not None:   # the napari reader declines only folders, and gives our message otherwise
        with pytest.raises(VolumeError, match=expected):
            reader(str(path))
    else:
        assert path.is_dir()
    before = snapshot(tmp_path, model_file.parent)
    line = fails_clearly(["segment", path, "--model", model_file, "--out", tmp_path / "labels.tif",
                          "--k", "2", *TINY], capsys)
    assert re.search(expected, line), line      # the CLI says what the reader said, not a later symptom
    line = fails_clearly(["train", path, "--out", tmp_path / "new.pt", "--steps", "1", *TINY], capsys)
    assert re.search(expected, line), line
    assert snapshot(tmp_path, model_file.parent) == before


# --- voxel sizes that cannot be used: read with 1 on that axis, a warning, and a correct run -------


def tiff_spacing(path, value):
    tifffile.imwrite(path, image(), imagej=True, metadata={"spacing": value, "axes": "ZYX"})


def mrc_voxel(path, value):
    with mrcfile.new(path) as mrc:
        mrc.set_data(image())
        mrc.voxel_size = (value, 2.0, 2.0)


UNUSABLE_SPACING = {
    "tiff spacing 0": ("v.tif", lambda p: tiff_spacing(p, 0.0), (1.0, 1.0, 1.0)),
    "tiff spacing NaN": ("v.tif", lambda p: tiff_spacing(p, float("nan")), (1.0, 1.0, 1.0)),
    "mrc voxel size NaN": ("v.mrc", lambda p: mrc_voxel(p, float("nan")), (2.0, 2.0, 1.0)),
    "nifti pixdim NaN": ("v.nii", lambda p: (nifti(p), patched(p, 80, struct.pack("<f", np.nan))), (1.0, 1.0, 1.0)),
    "nifti pixdim 0": ("v.nii", lambda p: (nifti(p), patched(p, 80, struct.pack("<f", 0.0))), (1.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("case", UNUSABLE_SPACING)
def test_unusable_voxel_size_becomes_one_with_a_warning(case, tmp_path, model_file, capsys):
    name, build, expected = UNUSABLE_SPACING[case]
    path = tmp_path / name
    build(path)
    with pytest.warns(SpacingWarning, match="replaced by 1"):
        volume = read_volume(path)
    assert volume.spacing == expected
    out = tmp_path / "labels.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpacingWarning)
        code = main(["segment", str(path), "--model", str(model_file), "--out", str(out), "--k", "2",
                     "--n-fine", "3", *TINY])
    assert code == 0, capsys.readouterr().err
    assert read_volume(out).spacing == pytest.approx(expected)


# --- model files ---------------------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs a shell command: it must never happen."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def torch_pickle(path, marker, good):
    torch.save({"format": "napari-hypseg", "payload": RunsCode(marker)}, path)


def plain_pickle(path, marker, good):
    path.write_bytes(pickle.dumps(RunsCode(marker)))


def nan_weights(path, marker, model_file):
    trained = load_checkpoint(model_file)
    with torch.no_grad():
        next(trained.model.parameters()).fill_(float("nan"))
    save_checkpoint(path, trained.model, trained.config, trained.stats, step=1)


BAD_MODELS = {
    "torch pickle that runs code": (torch_pickle, "not loaded, for safety"),
    "plain pickle that runs code": (plain_pickle, "corrupt or truncated"),
    "truncated model": (lambda p, m, good: p.write_bytes(good.read_bytes()[:2000]), "corrupt or truncated"),
    "random bytes": (lambda p, m, good: p.write_bytes(np.random.default_rng(2).bytes(5000)), "corrupt or truncated"),
    "a torch file that is not ours": (lambda p, m, good: torch.save({"weights": torch.zeros(3)}, p), "not a napari-hypseg"),
    "NaN weights": (nan_weights, "NaN or infinite"),
    "model is a folder": (lambda p, m, good: p.mkdir(), "not a file"),
    "model links to /dev/zero": (lambda p, m, good: p.symlink_to("/dev/zero"), "not a file|corrupt"),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_model_file_is_one_clear_error_and_runs_nothing(case, tmp_path, model_file, good_volume, capsys):
    build, expected = BAD_MODELS[case]
    path, marker = tmp_path / "bad.pt", tmp_path / "code-ran"
    build(path, marker, model_file)
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)
    before = snapshot(tmp_path, good_volume.parent)
    line = fails_clearly(["segment", good_volume, "--model", path, "--out", tmp_path / "l.tif", "--k", "2", *TINY],
                         capsys)
    assert str(path) in line
    fails_clearly(["train", good_volume, "--out", tmp_path / "new.pt", "--resume", path, *TINY], capsys)
    assert snapshot(tmp_path, good_volume.parent) == before
    assert not marker.exists()


# --- parameters ----------------------------------------------------------------------------------

BAD_SEGMENT_PARAMETERS = {
    "--n-fine 0": (["--n-fine", "0", "--k", "1"], "--n-fine must be an integer from 1 to 1024"),
    "--seed -1": (["--seed", "-1", "--k", "2"], "--seed must be an integer >= 0"),
    "--k 2 2": (["--k", "2", "2"], "--k lists 2 more than once"),
    "--k 0": (["--k", "0"], "--k 0 is outside"),
    "--radius -1": (["--radius", "-1"], "--radius must be >= 0"),
    "--radius 2": (["--radius", "2"], "outside the Poincaré ball"),
    "--tile 1": (["--tile", "1", "--k", "2"], "--tile must be an integer >= 16"),
    "--out with no label suffix": (["--k", "2", "--out", "labels.pt"], "use one of"),
    "--save-latents not .npy": (["--k", "2", "--save-latents", "latents.tif"], "ending in .npy"),
    "--n-fine above the most": (["--n-fine", "2000", "--k", "2"], "--n-fine must be an integer from 1 to 1024"),
    "--context 0": (["--context", "0", "--k", "2"], "--context must be an integer >= 1"),
    "--ward-top -1": (["--ward-top", "-1", "--k", "2"], "--ward-top must be an integer >= 0"),
    "--boundary-refinement -1": (["--boundary-refinement", "-1", "--k", "2"], "--boundary-refinement must be a finite number >= 0, got -1.0"),
    "--latent-smoothing -1": (["--latent-smoothing", "-1", "--k", "2"], "--latent-smoothing must be a finite number >= 0, got -1.0"),
    "--boundary-refinement nan": (["--boundary-refinement", "nan", "--k", "2"], "--boundary-refinement must be a finite number >= 0, got nan"),
    "--linkage unknown": (["--linkage", "median", "--k", "2"], "--linkage median: use one of average"),
    "--device unknown": (["--device", "foo", "--k", "2"], "unknown device 'foo'"),
    "--device unavailable": (["--device", "cuda:99", "--k", "2"], "is not available"),
    "--roi reversed": (["--roi", "5:2,:,:", "--k", "2"], "is empty along z"),
    "--roi empty": (["--roi", "10:10,:,:", "--k", "2"], "is empty along z"),
    "--roi not numbers": (["--roi", "a:b", "--k", "2"], "is not a box z0:z1,y0:y1,x0:x1"),
    "--roi two axes": (["--roi", "0:10,0:10", "--k", "2"], "is not a box z0:z1,y0:y1,x0:x1"),
    "--roi outside the volume": (["--roi", "100:200,:,:", "--k", "2"], "reaches outside the volume along z"),
    "--roi past the edge": (["--roi", "0:1000,:,:", "--k", "2"], "reaches outside the volume along z"),
    "--roi past the start": (["--roi=-30:,:,:", "--k", "2"], "reaches outside the volume along z"),
    "--level -1": (["--level", "-1", "--k", "2"], "--level must be an integer >= 0"),
    "--level of a one-level file": (["--level", "1", "--k", "2"], "has one resolution level"),
}


@pytest.mark.parametrize("case", BAD_SEGMENT_PARAMETERS)
def test_bad_segment_parameter_is_named_before_any_work(case, tmp_path, model_file, good_volume, capsys,
                                                        monkeypatch):
    extra, expected = BAD_SEGMENT_PARAMETERS[case]
    monkeypatch.chdir(tmp_path)
    args = ["segment", good_volume, "--model", model_file, *TINY, *extra]
    if "--out" not in extra:
        args += ["--out", "labels.tif"]
    line = fails_clearly(args, capsys)
    assert expected in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, expected", [
    (["--seed", "-1"], "--seed must be an integer >= 0"),
    (["--steps", "0"], "steps"),
    (["--lr", "nan"], "learning_rate"),
    (["--out", "t"], "--out t does not end in .pt; a model file name ends in .pt, e.g. t.pt"),
    (["--out", "new/t.pth"], "e.g. new/t.pt"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--device", "cuda:99"], "is not available"),
    (["--roi", "5:2,:,:"], "is empty along z"),
    (["--roi", "0:1000,:,:"], "reaches outside the volume along z"),
    (["--level", "1"], "has one resolution level"),
])
def test_bad_train_parameter_is_named_before_any_work(extra, expected, tmp_path, good_volume, capsys, monkeypatch):
    """The model's folder (new/, made for a good run) is not made either."""
    monkeypatch.chdir(tmp_path)
    line = fails_clearly(["train", good_volume, "--out", "new/m.pt", "--steps", "1", *TINY, *extra], capsys)
    assert expected in line
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masks")
    tifffile.imwrite(folder / "wrong-shape.tif", np.ones((10, 24, 24), np.uint8))
    tifffile.imwrite(folder / "empty.tif", np.zeros((24, 24, 24), np.uint8))
    return folder


@pytest.mark.parametrize("name, expected", [
    ("wrong-shape.tif", "the mask has shape (10, 24, 24) but the volume (24, 24, 24)"),
    ("empty.tif", "the mask is empty"),
    ("missing.tif", "does not exist"),
])
def test_bad_mask_is_named_before_any_work(name, expected, tmp_path, model_file, good_volume, masks, capsys):
    mask = masks / name
    before = snapshot(masks, good_volume.parent)
    line = fails_clearly(["segment", good_volume, "--model", model_file, "--out", tmp_path / "labels.tif",
                          "--k", "2", "--mask", mask, *TINY], capsys)
    assert expected in line
    line = fails_clearly(["train", good_volume, "--out", tmp_path / "new" / "m.pt", "--steps", "1", "--mask", mask,
                          *TINY], capsys)
    assert expected in line
    assert list(tmp_path.iterdir()) == []
    assert snapshot(masks, good_volume.parent) == before


@pytest.mark.parametrize("extra, expected", [
    (["--device", "foo"], "unknown device 'foo'"),
    (["--linkage", "median"], "--linkage median"),
    (["--ward-top", "-1"], "--ward-top must be"),
    (["--context", "0"], "--context must be"),
    (["--level", "1"], "has one resolution level"),
    (["--mask", "mask.tif"], "--mask works with one volume and --out, not with --out-dir"),
])
def test_bad_many_volume_parameter_fails_once_before_out_dir_is_made(extra, expected, tmp_path, model_file,
                                                                    good_volume, capsys):
    """Not one failure per volume (exit 1) after --out-dir was made: one error line, nothing made."""
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, image())
    line = fails_clearly(["segment", good_volume, other, "--model", model_file, "--out-dir", tmp_path / "labels",
                          "--k", "2", *TINY, *extra], capsys)
    assert expected in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.tif"]


def test_many_volume_outputs_are_named_as_out_dir_and_never_an_input(tmp_path, model_file, capsys):
    """a.tif's labels would be a_labels.tif, itself an input: refused, with or without --overwrite
    (without, the input was once skipped as if it were labels already written)."""
    for name in ("a.tif", "a_labels.tif"):
        tifffile.imwrite(tmp_path / name, image())
    before = snapshot(tmp_path, model_file.parent)
    for overwrite in ([], ["--overwrite"]):
        line = fails_clearly(["segment", tmp_path / "a.tif", tmp_path / "a_labels.tif", "--model", model_file,
                              "--out-dir", tmp_path, "--k", "2", *TINY, *overwrite], capsys)
        assert "the --out-dir label file" in line and "is the input" in line, line
    line = fails_clearly(["segment", tmp_path / "a.tif", tmp_path / "a.tif", "--model", model_file,
                          "--out-dir", tmp_path / "labels", "--k", "2", *TINY], capsys)
    assert "named twice" in line
    line = fails_clearly(["segment", tmp_path / "a.tif", "--model", model_file, "--out-dir", tmp_path / "a.tif",
                          "--k", "2", *TINY], capsys)
    assert "--out-dir" in line and "is a file, not a folder" in line
    assert snapshot(tmp_path, model_file.parent) == before


# --- outputs that would destroy an input, or cannot be written -----------------------------------


def test_segment_never_writes_over_its_inputs_even_with_overwrite(tmp_path, model_file, capsys):
    volume = tmp_path / "volume.tif"
    tifffile.imwrite(volume, image())
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path, model_file.parent)
    for out in (volume, tmp_path / "sub" / ".." / "volume.tif"):
        line = fails_clearly(["segment", volume, "--model", model_file, "--out", out, "--k", "2", "--overwrite",
                              *TINY], capsys)
        assert "is the input" in line
    link = tmp_path / "labels.mrc"
    link.symlink_to(model_file.with_name("model.mrc"))
    model_as_mrc = model_file.with_name("model.mrc")
    model_as_mrc.symlink_to(model_file)
    try:
        line = fails_clearly(["segment", volume, "--model", model_file, "--out", link, "--k", "2", "--overwrite",
                              *TINY], capsys)
        assert "is the input" in line
    finally:
        model_as_mrc.unlink()
        link.unlink()
    assert snapshot(tmp_path, model_file.parent) == before


def test_train_never_writes_over_a_training_volume(tmp_path, capsys):
    volume = tmp_path / "volume.tif"
    tifffile.imwrite(volume, image())
    link = tmp_path / "model.pt"
    link.symlink_to(volume)
    before = snapshot(tmp_path)
    line = fails_clearly(["train", volume, "--out", volume, "--overwrite", *TINY], capsys)
    assert "volume file type" in line
    line = fails_clearly(["train", volume, "--out", link, "--overwrite", *TINY], capsys)
    assert "is the input" in line
    assert snapshot(tmp_path) == before


def test_k_levels_that_collide_with_the_volume_are_refused(tmp_path, model_file, capsys):
    volume = tmp_path / "labels_k4.tif"
    tifffile.imwrite(volume, image())
    before = snapshot(tmp_path)
    line = fails_clearly(["segment", volume, "--model", model_file, "--out", tmp_path / "labels.tif",
                          "--k", "2", "4", "--overwrite", *TINY], capsys)
    assert "is the input" in line and "labels_k4.tif" in line
    assert snapshot(tmp_path) == before


def unwritable_cases(tmp_path, make_read_only):
    """(output path, what the error says) for each kind of folder a file cannot be written into."""
    locked = make_read_only(_folder(tmp_path / "locked"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return [(tmp_path / "missing" / "x", "does not exist"), (blocker / "x", "is a file, not a folder"),
            (locked / "x", "cannot write into")]


def _folder(path):
    path.mkdir()
    return path


def test_segment_outputs_in_unusable_folders_fail_before_inference(tmp_path, model_file, good_volume, capsys,
                                                                   make_read_only):
    for target, expected in unwritable_cases(tmp_path, make_read_only):
        for option, suffix in (("--out", ".tif"), ("--save-latents", ".npy")):
            args = ["segment", good_volume, "--model", model_file, "--k", "2", *TINY, "--out",
                    tmp_path / "labels.tif", option, str(target) + suffix]
            line = fails_clearly(args, capsys)
            assert expected in line, (option, line)
    assert not (tmp_path / "labels.tif").exists()
    line = fails_clearly(["segment", good_volume, "--model", model_file, "--k", "2", *TINY, "--out",
                          tmp_path / "labels.tif", "--save-latents", _folder(tmp_path / "f.npy")], capsys)
    assert "is a folder" in line


def test_segment_checks_its_outputs_before_any_inference(tmp_path, model_file, good_volume, capsys):
    """An output the run cannot write ends it with one line that names the output, before the model
    sees a voxel (no progress is printed), and nothing on disk changes."""
    volume = tmp_path / "volume.tif"
    volume.write_bytes(good_volume.read_bytes())
    existing = tmp_path / "existing.tif"
    existing.write_bytes(b"precious")
    latents = tmp_path / "latents.npy"
    latents.write_bytes(b"precious")
    out_dir = _folder(tmp_path / "labels")
    _folder(out_dir / "volume_labels.tif")
    cases = [
        (["--out-dir", existing], f"error: {existing} is a file, not a folder"),
        (["--out", existing], f"error: the --out labels {existing} already exists; pass --overwrite"),
        (["--out", tmp_path / "new.tif", "--save-latents", latents], f"the --save-latents file {latents} already"),
        (["--out-dir", out_dir], f"{out_dir / 'volume_labels.tif'} is a folder"),
    ]
    before = snapshot(tmp_path, model_file.parent)
    for options, expected in cases:
        line = fails_clearly(["segment", volume, "--model", model_file, "--k", "2", "--n-fine", "3", *TINY, *options],
                             capsys, before_any_work=True)
        assert expected in line, (options, line)
    assert snapshot(tmp_path, model_file.parent) == before


def test_train_checks_its_output_before_the_first_step(tmp_path, good_volume, capsys):
    """Likewise for `hypseg train --out`, the model's summary (MODEL.json) included: no step runs,
    no model or summary is written."""
    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"precious")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _folder(tmp_path / "summary-taken.pt.json")
    cases = [
        (existing, f"error: {existing} already exists; pass --overwrite"),
        (blocker / "model.pt", f"error: {blocker} is a file, not a folder"),
        (tmp_path / "summary-taken.pt", f"error: {tmp_path / 'summary-taken.pt.json'} is a folder, but the summary"),
    ]
    before = snapshot(tmp_path)
    for out, expected in cases:
        line = fails_clearly(["train", good_volume, "--out", out, "--steps", "2", *TINY], capsys,
                             before_any_work=True)
        assert expected in line, (out, line)
    with pytest.raises(CheckpointError, match="summary-taken.pt.json is a folder"):   # the API too, before a step
        next(train([image()], CONFIG, checkpoint_path=tmp_path / "summary-taken.pt", device="cpu"))
    assert snapshot(tmp_path) == before


def test_train_toy_and_demo_outputs_in_unusable_folders_fail_before_work(tmp_path, good_volume, capsys,
                                                                        make_read_only):
    for target, expected in unwritable_cases(tmp_path, make_read_only):
        if expected == "does not exist":   # train, toy and demo create a missing folder
            continue
        line = fails_clearly(["train", good_volume, "--out", str(target) + ".pt", "--steps", "1", *TINY], capsys)
        assert expected in line or "cannot create the folder" in line, line
        line = fails_clearly(["toy", target.parent], capsys)
        assert expected in line or "is a file" in line, line
        line = fails_clearly(["demo", "--out", target, "--steps", "1", *TINY], capsys)
        assert "cannot create the folder" in line, line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "locked"]


def test_nothing_was_left_by_a_gzip_reader_on_a_huge_claim(tmp_path):
    """A .nii.gz whose header claims 30000^3 voxels is refused from its stream length, not by allocating."""
    path = tmp_path / "v.nii.gz"
    nifti(path.with_suffix(""))
    raw = bytearray(path.with_suffix("").read_bytes())
    raw[42:48] = struct.pack("<3h", 30000, 30000, 30000)
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(VolumeError, match="header describes"):
        read_volume(path)
