"""benchmarks/gpu.py runs end to end in its tiny --smoke mode on the CPU (the GPU run uses the same code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_smoke_mode_runs_every_part(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for part in ("training, preset `fast`", "training, preset `paper`", "mean Dice", "`hypseg segment` 48x40x32"):
        assert part in result.stdout
    assert len(list(tmp_path.glob("labels_48x40x32_k*.mrc"))) == 3


def test_gpu_benchmark_scores_the_levels_of_the_evaluation_module(monkeypatch):
    """The levels -> k mapping has one home (core.evaluation); a copy in the benchmark could drift."""
    import importlib

    from napari_hypseg.core import evaluation

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    assert importlib.import_module("gpu").LEVEL_K is evaluation.LEVEL_K
