import json

from napari_hypseg.cli.main import main


def test_demo_scores_unseen_volumes_beside_the_best_baseline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "1", "--n-train", "1", "--n-test", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "mean Dice over 2 unseen test volumes" in printed and "best baseline" in printed
    summary = json.loads((out / "scores.json").read_text())
    assert sorted(summary) == ["1", "2", "3"]
    for level, k in (("1", 2), ("2", 4), ("3", 8)):
        row = summary[level]
        assert row["k"] == k and 0 <= row["napari_hypseg"] <= 1 and 0 <= row["best_baseline"] <= 1
        assert f"{row['napari_hypseg']:.3f}" in printed and row["best_baseline_name"] in printed
    assert {p.name for p in out.iterdir()} >= {"model.pt", "segmentation.png", "labels_level1_k2.tif",
                                               "labels_level3_k8.tif"}


def test_demo_needs_a_test_volume(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n-test", "0"]) == 2
    assert "--n-test" in capsys.readouterr().err
