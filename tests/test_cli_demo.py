"""`hypseg demo`, run once on one unseen test volume: the printed table, the scores against the label
files it wrote and the truth of that volume, the model file and the PNG."""

import contextlib
import io
import json

import numpy as np
import pytest

from napari_hypseg.cli.main import main
from napari_hypseg.core.baselines import BASELINES
from napari_hypseg.core.checkpoint import load_checkpoint
from napari_hypseg.core.evaluation import LEVEL_K
from napari_hypseg.core.metrics import score_segmentation
from napari_hypseg.core.synthetic import LEVEL_CLASSES, make_toy_volume
from napari_hypseg.core.volume_io import read_volume

SEED = 3
UNSEEN_SEED = SEED + 10_000   # the demo's first test volume


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(exit status, output folder, printed text) of one short demo run."""
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--out", str(out), "--steps", "1", "--n-train", "1", "--n-test", "1",
                       "--seed", str(SEED), "--device", "cpu"])
    return status, out, printed.getvalue()


def test_demo_prints_each_level_beside_the_best_baseline(demo):
    status, out, printed = demo
    assert status == 0
    assert "mean Dice over 1 unseen test volumes" in printed and "best baseline" in printed
    summary = json.loads((out / "scores.json").read_text())
    assert sorted(summary) == ["1", "2", "3"]
    for level, k in (("1", 2), ("2", 4), ("3", 8)):
        row = summary[level]
        assert row["k"] == k and 0 <= row["napari_hypseg"] <= 1 and 0 <= row["best_baseline"] <= 1
        assert row["best_baseline_name"] in BASELINES
        assert f"{row['napari_hypseg']:.3f}" in printed and f"{row['best_baseline']:.3f}" in printed
        assert row["best_baseline_name"] in printed
    assert {p.name for p in out.iterdir()} >= {"model.pt", "scores.json", "segmentation.png",
                                               "labels_level1_k2.tif", "labels_level2_k4.tif",
                                               "labels_level3_k8.tif"}


def test_demo_scores_are_the_dice_of_the_labels_it_wrote_against_the_unseen_truth(demo):
    _, out, _ = demo
    summary = json.loads((out / "scores.json").read_text())
    unseen = make_toy_volume(UNSEEN_SEED)
    for level, k in LEVEL_K.items():
        labels = np.asarray(read_volume(out / f"labels_level{level}_k{k}.tif").data)
        assert labels.shape == unseen.image.shape
        assert 1 < len(np.unique(labels)) <= k   # cut at k clusters
        score = score_segmentation(labels, unseen.truth[level])
        row = summary[str(level)]
        assert row["napari_hypseg"] == pytest.approx(score.mean_dice, abs=1e-12)
        assert row["per_class_dice"] == pytest.approx(
            {LEVEL_CLASSES[level][c]: dice for c, dice in score.per_class_dice.items()}, abs=1e-12)


def test_demo_keeps_the_trained_model_and_draws_every_level(demo):
    import matplotlib.image

    _, out, _ = demo
    assert load_checkpoint(out / "model.pt").step == 1
    png = matplotlib.image.imread(out / "segmentation.png")
    height, width = png.shape[:2]
    assert width > 4 * height   # image, truth and three levels side by side
    assert png[..., :3].std() > 0.05


@pytest.mark.parametrize("extra, expected", [
    (["--n-test", "0"], "--n-test must be at least 1"),
    (["--n-train", "0"], "--n-train must be an integer >= 1"),
    (["--n-fine", "4"], "--n-fine must be an integer >= 8"),   # the finest level is cut at k = 8
    (["--steps", "0"], "steps must be >= 1"),
    (["--seed", "-1"], "--seed must be an integer >= 0"),
    (["--device", "gpu7"], "unknown device"),
])
def test_bad_demo_arguments_fail_before_the_output_folder_is_made(extra, expected, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *extra]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()
