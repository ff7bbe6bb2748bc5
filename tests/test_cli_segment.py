import mrcfile
import nibabel as nib
import numpy as np
import pytest

from napari_hypseg.cli.main import main
from napari_hypseg.core.checkpoint import save_checkpoint
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.core.volume_io import read_volume

CPU = ["--device", "cpu", "--n-fine", "5"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segment")
    image = make_toy_volume(1).image[8:28, 10:28, 12:28].copy()
    volume = folder / "volume.mrc"
    with mrcfile.new(volume) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = (3.0, 2.0, 2.5)          # x, y, z in Å
    config = get_preset("fast", encoder_channels=(4, 8), hidden=8)
    model = save_checkpoint(folder / "model.pt", HypsegVAE(config), config, IntensityStats.fit(image), step=0)
    return volume, model, image


def test_segment_writes_labels_with_the_source_spacing(files, tmp_path, capsys):
    volume, model, image = files
    out = tmp_path / "labels.mrc"
    assert main(["segment", str(volume), "--model", str(model), "--out", str(out), "--k", "3", *CPU]) == 0
    assert f"labels written to {out} (3 clusters of 5 fine ones)" in capsys.readouterr().out
    labels = read_volume(out)
    assert labels.data.shape == image.shape
    assert set(np.unique(labels.data)) <= {1, 2, 3}
    assert np.allclose(labels.spacing, (2.5, 2.0, 3.0)) and labels.unit == "angstrom"


def test_several_levels_radius_and_latents(files, tmp_path, capsys):
    volume, model, image = files
    out = tmp_path / "labels.tif"
    latents = tmp_path / "latents.npy"
    assert main(["segment", str(volume), "--model", str(model), "--out", str(out), "--k", "1", "2", "5",
                 "--save-latents", str(latents), *CPU]) == 0
    levels = {k: read_volume(tmp_path / f"labels_k{k}.tif").data for k in (1, 2, 5)}
    assert np.all(levels[1] == 1) and len(np.unique(levels[5])) <= 5
    for c in np.unique(levels[5]):             # levels nest
        assert len(np.unique(levels[2][levels[5] == c])) == 1
    assert np.load(latents).shape == (*image.shape, 3)
    radius_out = tmp_path / "radius.nii.gz"
    assert main(["segment", str(volume), "--model", str(model), "--out", str(radius_out), "--radius", "0",
                 "--linkage", "single", "--ward-top", "0", *CPU]) == 0
    assert np.all(np.asarray(nib.load(radius_out).dataobj) == 1)       # radius 0: everything merges
    assert "merge radii" in capsys.readouterr().err


def test_latent_scaling_reaches_the_fine_clusters(files, tmp_path, capsys):
    """--latent-scaling gives the labels segment() gives with the same keyword; an unknown name is
    refused before any work."""
    from sklearn.metrics import adjusted_rand_score

    from napari_hypseg.core.checkpoint import load_checkpoint
    from napari_hypseg.core.progress import run_to_completion
    from napari_hypseg.core.segmentation import segment

    volume, model, image = files
    trained = load_checkpoint(model)
    written = {}
    for scaling in ("channel", "shared"):
        out = tmp_path / f"{scaling}.tif"
        assert main(["segment", str(volume), "--model", str(model), "--out", str(out), "--k", "4",
                     "--latent-scaling", scaling, "--precision", "float32", *CPU]) == 0
        written[scaling] = np.asarray(read_volume(out).data).ravel()
        expected = run_to_completion(segment(trained, image, n_fine=5, device="cpu", precision="float32",
                                             latent_scaling=scaling))
        assert adjusted_rand_score(written[scaling], expected.labels_at_k(4).ravel()) == 1.0   # ids may differ
    assert adjusted_rand_score(written["channel"], written["shared"]) < 1.0
    with pytest.raises(SystemExit) as raised:
        main(["segment", str(volume), "--model", str(model), "--out", str(tmp_path / "x.tif"), "--k", "2",
              "--latent-scaling", "pca", *CPU])
    assert raised.value.code == 2 and "invalid choice: 'pca'" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()


def test_refuses_to_overwrite_and_checks_before_computing(files, tmp_path, capsys):
    volume, model, _ = files
    out = tmp_path / "labels.tif"
    out.write_bytes(b"precious")
    assert main(["segment", str(volume), "--model", str(model), "--out", str(out), "--k", "2", *CPU]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main(["segment", str(volume), "--model", str(model), "--out", str(out), "--k", "2", "--overwrite",
                 *CPU]) == 0
    assert read_volume(out).data.max() <= 2
    for arguments, message in [
        (["--out", str(tmp_path / "labels.png"), "--k", "2"], "cannot write labels"),
        (["--out", str(tmp_path / "new.tif"), "--k", "9"], "outside 1..5"),
        (["--out", str(tmp_path / "new.tif"), "--k", "2", "--save-latents", str(tmp_path / "l.tif")], ".npy"),
        (["--out", str(tmp_path / "missing" / "new.tif"), "--k", "2"], "does not exist"),
        (["--out", str(tmp_path / "new.tif"), "--k", "2", "--ward-top", "-1"], "--ward-top must be"),
    ]:
        assert main(["segment", str(volume), "--model", str(model), *arguments, *CPU]) == 2
        assert message in capsys.readouterr().err
    assert main(["segment", str(volume), "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "n.tif"),
                 "--k", "2", *CPU]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_precision_choice_reaches_the_encoder(files, tmp_path, capsys):
    volume, model, image = files
    fields = {}
    for precision in ("float32", "bfloat16"):
        latents = tmp_path / f"latents_{precision}.npy"
        assert main(["segment", str(volume), "--model", str(model), "--out", str(tmp_path / f"{precision}.tif"),
                     "--k", "2", "--precision", precision, "--save-latents", str(latents), *CPU]) == 0
        fields[precision] = np.load(latents)
    difference = np.abs(fields["float32"] - fields["bfloat16"]).max()
    assert 0 < difference < 0.05 * fields["float32"].std()
    with pytest.raises(SystemExit) as raised:
        main(["segment", str(volume), "--model", str(model), "--out", str(tmp_path / "x.tif"), "--k", "2",
              "--precision", "float16", *CPU])
    assert raised.value.code == 2 and "invalid choice: 'float16'" in capsys.readouterr().err


@pytest.mark.parametrize("option, default, chosen, keyword, refused", [
    ("--inference-stride", "1", "2", {"inference_stride": 2}, "0"),
    ("--latent-smoothing", "1.5", "0", {"latent_smoothing": 0.0}, "-1"),
])
def test_field_options_reach_the_clustered_field(files, tmp_path, capsys, option, default, chosen, keyword, refused):
    """The option gives the latent field (saved with --save-latents) that segment() clusters with the
    same keyword, which differs from the model's default; a bad value is refused up front."""
    from napari_hypseg.core.checkpoint import load_checkpoint
    from napari_hypseg.core.latent_fields import clustering_field
    from napari_hypseg.core.progress import run_to_completion

    volume, model, image = files
    saved = {}
    for value in (default, chosen):
        latents = tmp_path / f"latents_{value}.npy"
        assert main(["segment", str(volume), "--model", str(model), "--out", str(tmp_path / f"s{value}.tif"),
                     "--k", "2", option, value, "--precision", "float32", "--save-latents", str(latents), *CPU]) == 0
        saved[value] = np.load(latents)
    expected = run_to_completion(clustering_field(load_checkpoint(model), image, device="cpu", precision="float32",
                                                  **keyword))
    np.testing.assert_allclose(saved[chosen], expected, atol=1e-5)
    assert not np.allclose(saved[default], saved[chosen], atol=1e-4)
    assert main(["segment", str(volume), "--model", str(model), "--out", str(tmp_path / "x.tif"), "--k", "2",
                 option, refused, *CPU]) == 2
    assert option in capsys.readouterr().err
