"""`hypseg toy` and `hypseg evaluate`: real files written, read back and scored."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from napari_hypseg.cli import evaluate, toy
from napari_hypseg.core.errors import HypsegError, VolumeError
from napari_hypseg.core.metrics import score_segmentation
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.core.volume_io import read_volume, write_labels


def hypseg(*argv: str) -> int:
    """Parse and run one of these two subcommands as `hypseg` would, without the other subcommands."""
    parser = argparse.ArgumentParser(prog="hypseg")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (toy, evaluate):
        module.add_parser(subparsers).set_defaults(run=module.run)
    args = parser.parse_args([str(a) for a in argv])
    return args.run(args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("toy")
    assert hypseg("toy", outdir, "--n", "2", "--seed", "4") == 0
    return outdir


def test_toy_writes_images_and_three_truth_levels_per_volume(dataset):
    names = sorted(p.name for p in dataset.iterdir())
    assert names == sorted(f"toy_{k:03d}_{part}.tif" for k in range(2)
                           for part in ("image", "level1", "level2", "level3"))
    for level, ids in ((1, {0, 1}), (2, {0, 1, 2, 3}), (3, {0, 1, 2, 3, 4, 5})):
        labels = read_volume(dataset / f"toy_001_level{level}.tif").data
        assert set(np.unique(labels)) == ids
        np.testing.assert_array_equal(labels, make_toy_volume(5).truth[level])  # volume k uses seed + k


def test_toy_prints_what_it_wrote(tmp_path, capsys):
    hypseg("toy", tmp_path, "--irregular", "--seed", "3")
    out = capsys.readouterr().out
    assert "irregular" in out and "toy_000_image.tif" in out and "toy_000_level3.tif" in out
    np.testing.assert_array_equal(read_volume(tmp_path / "toy_000_image.tif").data,
                                  make_toy_volume(3, irregular=True).image)


def test_toy_refuses_to_overwrite_unless_asked(tmp_path):
    hypseg("toy", tmp_path, "--seed", "0")
    with pytest.raises(VolumeError, match="--overwrite"):
        hypseg("toy", tmp_path, "--seed", "1")
    np.testing.assert_array_equal(read_volume(tmp_path / "toy_000_level3.tif").data, make_toy_volume(0).truth[3])
    hypseg("toy", tmp_path, "--seed", "1", "--overwrite")
    np.testing.assert_array_equal(read_volume(tmp_path / "toy_000_level3.tif").data, make_toy_volume(1).truth[3])


def test_toy_help_documents_files_and_label_ids(capsys):
    with pytest.raises(SystemExit):
        hypseg("toy", "--help")
    text = capsys.readouterr().out
    for needle in ("toy_KKK_image.tif", "toy_KKK_level1.tif", "float32", "uint8", "0 background", "1 cell",
                   "2 vesicle", "3 mitochondrion", "4 small sphere", "5 small cube", "seed S + k"):
        assert needle in text


def test_evaluate_truth_against_itself_scores_one(dataset, capsys):
    truth = dataset / "toy_000_level3.tif"
    assert hypseg("evaluate", truth, truth) == 0
    out = capsys.readouterr().out
    assert "mean Dice  1.0000" in out and "ARI        1.0000" in out
    assert "small sphere" in out and "mitochondrion" in out


def test_evaluate_json_is_one_object_with_the_scores(dataset, capsys):
    pred, truth = dataset / "toy_000_level1.tif", dataset / "toy_000_level2.tif"
    hypseg("evaluate", pred, truth, "--json")
    result = json.loads(capsys.readouterr().out)
    expected = score_segmentation(read_volume(pred).data, read_volume(truth).data)
    assert result["mean_dice"] == pytest.approx(expected.mean_dice)
    assert result["ari"] == pytest.approx(expected.ari)
    assert result["per_class_dice"]["2"] == 0.0  # two clusters cannot cover four classes
    assert result["class_names"] == {"0": "background", "1": "cell", "2": "vesicle", "3": "mitochondrion"}


def test_evaluate_names_no_classes_for_foreign_ids(tmp_path, capsys):
    labels = np.zeros((4, 4, 4), np.uint16)
    labels[2:] = 300
    path = write_labels(tmp_path / "foreign.tif", labels)
    hypseg("evaluate", path, path, "--json")
    assert json.loads(capsys.readouterr().out)["class_names"] is None


def test_evaluate_refuses_volumes_of_different_shapes(dataset, tmp_path):
    small = write_labels(tmp_path / "small.tif", np.ones((10, 10, 10), np.uint8))
    truth = dataset / "toy_000_level1.tif"
    with pytest.raises(HypsegError) as refused:
        hypseg("evaluate", small, truth)
    assert f"{small} has shape (10, 10, 10) but {truth} has shape" in str(refused.value)


def test_evaluate_refuses_a_missing_file(dataset, tmp_path):
    with pytest.raises(HypsegError, match="does not exist"):
        hypseg("evaluate", tmp_path / "nothing.tif", dataset / "toy_000_level1.tif")


def test_bad_inputs_print_an_error_line_and_exit_2_through_hypseg(dataset, tmp_path, capsys):
    from napari_hypseg.cli.main import main

    small = write_labels(tmp_path / "small.tif", np.ones((10, 10, 10), np.uint8))
    for argv in (["evaluate", str(small), str(dataset / "toy_000_level1.tif")],
                 ["evaluate", str(tmp_path / "missing.tif"), str(small)],
                 ["toy", str(dataset)]):
        assert main(argv) == 2
        assert capsys.readouterr().err.startswith("error: ")
