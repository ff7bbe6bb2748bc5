"""`hypseg objects` end to end on real files: labels and image written to disk, outputs read back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from napari_hypseg.cli.main import build_parser, main
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.core.volume_io import write_labels


@pytest.fixture
def toy_files(tmp_path):
    """The level-3 truth of a toy volume as labels (MRC, 4 Å voxels) and its image (TIFF)."""
    toy = make_toy_volume(1000)
    labels = write_labels(tmp_path / "toy_labels.mrc", toy.truth[3], spacing=(4.0, 4.0, 4.0), unit="angstrom")
    image = tmp_path / "toy_image.tif"
    import tifffile

    tifffile.imwrite(image, toy.image, imagej=True)
    return toy, labels, image


def test_objects_writes_csv_star_and_mesh_read_back_by_their_libraries(toy_files, tmp_path, capsys):
    import starfile
    import trimesh

    toy, labels, image = toy_files
    out = tmp_path / "out"
    out.mkdir()
    code = main(["objects", str(labels), "--cluster", "4", "--min-size", "5", "--image", str(image),
                 "--csv", str(out / "o.csv"), "--star", str(out / "o.star"), "--mesh", str(out / "o.stl")])
    assert code == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "o.csv")
    small_spheres = toy.truth[3] == 4
    assert table["voxel_count"].sum() == small_spheres.sum()
    assert f"cluster 4 of toy_labels.mrc: {len(table)} component(s), {len(table)} kept" in printed
    assert "voxel size 4 x 4 x 4 angstrom" in printed
    np.testing.assert_allclose(table["volume"], table["voxel_count"] * 64.0)
    np.testing.assert_allclose(table["centroid_x"], table["centroid_x_px"] * 4.0)
    for row in table.itertuples():
        inside = (slice(row.bbox_z0, row.bbox_z1), slice(row.bbox_y0, row.bbox_y1), slice(row.bbox_x0, row.bbox_x1))
        assert small_spheres[inside].sum() == row.voxel_count
        assert row.mean_intensity == pytest.approx(float(toy.image[inside][small_spheres[inside]].mean()), rel=1e-5)
    particles = starfile.read(out / "o.star")
    assert (particles["rlnTomoName"] == "toy_image").all()       # named after --image
    np.testing.assert_allclose(particles["rlnCoordinateX"], table["centroid_x_px"], atol=1e-5)
    np.testing.assert_allclose(particles["rlnPixelSize"], 4.0)
    mesh = trimesh.load(out / "o.stl", force="mesh")
    assert mesh.volume == pytest.approx(small_spheres.sum() * 64.0, rel=0.15)   # small objects: coarse voxels


def test_size_filter_and_quiet_output(toy_files, capsys):
    toy, labels, _ = toy_files
    assert main(["objects", str(labels), "--cluster", "5", "--max-volume", "1", "--min-size", "0", "--quiet"]) == 2
    assert "no object of cluster 5 is within the size filter" in capsys.readouterr().err
    assert main(["objects", str(labels), "--cluster", "3", "--quiet"]) == 0
    assert capsys.readouterr().out.count("\n") == 1


def test_existing_outputs_are_refused_before_any_work_unless_overwrite(toy_files, tmp_path, capsys):
    _, labels, _ = toy_files
    csv, mesh = tmp_path / "o.csv", tmp_path / "o.obj"
    csv.write_text("keep")
    assert main(["objects", str(labels), "--cluster", "4", "--csv", str(csv), "--mesh", str(mesh)]) == 2
    assert "already exists; choose another name or allow replacing it (--overwrite" in capsys.readouterr().err
    assert csv.read_text() == "keep" and not mesh.exists()
    assert main(["objects", str(labels), "--cluster", "4", "--csv", str(csv), "--overwrite", "--quiet"]) == 0
    assert pd.read_csv(csv)["cluster"].eq(4).all()


def test_latents_file_adds_the_mean_latent_radius(toy_files, tmp_path):
    toy, labels, _ = toy_files
    latents = np.random.default_rng(0).uniform(-0.5, 0.5, size=(*toy.truth[3].shape, 3)).astype(np.float32)
    np.save(tmp_path / "latents.npy", latents)
    csv = tmp_path / "o.csv"
    assert main(["objects", str(labels), "--cluster", "4", "--latents", str(tmp_path / "latents.npy"),
                 "--csv", str(csv), "--quiet"]) == 0
    table = pd.read_csv(csv)
    radius = np.linalg.norm(latents, axis=-1)
    for row in table.itertuples():
        inside = (slice(row.bbox_z0, row.bbox_z1), slice(row.bbox_y0, row.bbox_y1), slice(row.bbox_x0, row.bbox_x1))
        mask = toy.truth[3][inside] == 4
        assert row.mean_latent_radius == pytest.approx(float(radius[inside][mask].mean()), rel=1e-5)


@pytest.mark.parametrize(("argv", "message"), [
    (["--cluster", "9"], "error: cluster 9 does not exist in these labels; choose one of 1, 2, 3, 4, 5"),
    (["--cluster", "4", "--mesh", "o.vtk"], "error: cannot write a mesh to o.vtk: the name must end in .obj"),
    (["--cluster", "4", "--min-size", "50", "--max-size", "10"], "error: the minimum size is larger than the maximum"),
    (["--cluster", "4", "--latents", "missing.npy"], "error: cannot open the latent field missing.npy: it does not exist"),
    (["--cluster", "4", "--latents", "latents.txt"], "error: --latents reads a .npy file"),
    (["--cluster", "4", "--latents", "small.npy"], "error: the latent field has shape (4, 4, 4, 2)"),
    (["--cluster", "4", "--latents", "broken.npy"], "error: cannot read the latent field broken.npy"),
])
def test_bad_requests_exit_2_with_one_error_line(toy_files, tmp_path, argv, message):
    _, labels, _ = toy_files
    np.save(tmp_path / "small.npy", np.zeros((4, 4, 4, 2), np.float32))
    (tmp_path / "broken.npy").write_text("not an array")
    code = ("import sys; from napari_hypseg.cli.main import main; "
            f"sys.exit(main(['objects', {str(labels)!r}, *{argv!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_help_explains_every_option():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["objects"]
    text = sub.format_help()
    for action in sub._actions:
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in text
    for word in ("rlnCoordinateX", "marching cubes", "--overwrite", "connectivity"):
        assert word in text
