"""`hypseg segment VOLUME... --out-dir DIR`: many volumes, one model, here or on a dask LocalCluster."""

import os

import mrcfile
import numpy as np
import pytest
import tifffile
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from napari_hypseg.cli.main import main
from napari_hypseg.core.checkpoint import save_checkpoint
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.core.volume_io import read_volume

CPU = ["--device", "cpu", "--n-fine", "5", "--k", "2", "3"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    volumes = []
    for seed in range(3):
        image = make_toy_volume(seed).image[8:26, 10:26, 12:26].copy()
        if seed == 1:
            path = folder / "tomo1.rec"             # an MRC variant: labels are written as .mrc
            with mrcfile.new(path) as mrc:
                mrc.set_data(image)
                mrc.voxel_size = 2.0
        else:
            path = folder / f"tomo{seed}.tif"
            tifffile.imwrite(path, image)
        volumes.append(path)
    config = get_preset("fast", encoder_channels=(4, 8), hidden=8)
    model = save_checkpoint(folder / "model.pt", HypsegVAE(config), config, IntensityStats.fit(image), step=0)
    return volumes, model


def labels_of(folder):
    return {path.name: read_volume(path).data for path in sorted(folder.iterdir())}


def test_each_volume_gets_its_labels_and_a_rerun_skips_them(files, tmp_path, capsys, one_thread):
    volumes, model = files
    listing = tmp_path / "volumes.txt"
    listing.write_text(f"# the MRC one\n{volumes[1]}\n\n")
    out = tmp_path / "labels"
    pattern = str(volumes[0].parent / "tomo[02].tif")
    assert main(["segment", pattern, str(listing), "--model", str(model), "--out-dir", str(out), *CPU]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "tomo0_labels_k2.tif", "tomo0_labels_k3.tif", "tomo1_labels_k2.mrc", "tomo1_labels_k3.mrc",
        "tomo2_labels_k2.tif", "tomo2_labels_k3.tif"]
    assert [line[:5] for line in captured.out.splitlines()[:3]] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "3 of 3 volumes segmented" in captured.out
    assert read_volume(out / "tomo1_labels_k3.mrc").spacing == (2.0, 2.0, 2.0)
    # the same labels as the one-volume form
    single = tmp_path / "single.tif"
    assert main(["segment", str(volumes[2]), "--model", str(model), "--out", str(single), *CPU[:-2], "3"]) == 0
    assert np.array_equal(read_volume(single).data, read_volume(out / "tomo2_labels_k3.tif").data)

    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    assert main(["segment", *map(str, volumes), "--model", str(model), "--out-dir", str(out), *CPU]) == 0
    assert "0 of 3 volumes segmented, 3 skipped" in capsys.readouterr().out
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before


def test_a_failed_volume_is_reported_and_the_others_are_written(files, tmp_path, capsys, one_thread):
    volumes, model = files
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    out = tmp_path / "labels"
    (out / "partial").mkdir(parents=True)
    code = main(["segment", str(broken), str(volumes[0]), "--model", str(model), "--out-dir", str(out),
                 "--k", "2", "--device", "cpu", "--n-fine", "5"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{broken}: FAILED: " in captured.out
    assert f"1 of 2 volumes segmented, 1 failed: {broken}" in captured.out
    assert (out / "tomo0_labels.tif").exists() and not (out / "broken_labels.tif").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--out", "x.tif", "--scheduler", "local"], "give --out-dir"),
    (["--out-dir", "d", "--save-latents", "l.npy"], "--save-latents works with one volume"),
    (["--out-dir", "d", "--format", ".png"], "--format .png"),
    (["--out-dir", "d", "--model", "missing.pt"], "does not exist"),
])
def test_bad_options_are_refused_before_any_work(files, tmp_path, capsys, monkeypatch, arguments, message):
    volumes, model = files
    monkeypatch.chdir(tmp_path)
    code = main(["segment", *map(str, volumes), "--model", str(model), *arguments, *CPU])
    assert code == 2 and message in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


def test_two_volumes_with_out_is_an_error(files, tmp_path, capsys):
    volumes, model = files
    assert main(["segment", *map(str, volumes[:2]), "--model", str(model), "--out", str(tmp_path / "x.tif"),
                 *CPU]) == 2
    assert "give --out-dir" in capsys.readouterr().err


def test_a_local_dask_cluster_of_two_workers_writes_the_labels_of_one_process(files, tmp_path, capsys, one_thread):
    volumes, model = files
    here, cluster = tmp_path / "here", tmp_path / "cluster"
    assert main(["segment", *map(str, volumes), "--model", str(model), "--out-dir", str(here), *CPU]) == 0
    assert main(["segment", *map(str, volumes), "--model", str(model), "--out-dir", str(cluster), *CPU,
                 "--scheduler", "local", "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "on a local dask cluster" in captured.err and "3 of 3 volumes segmented" in captured.out
    ours, theirs = labels_of(here), labels_of(cluster)
    assert ours.keys() == theirs.keys() and len(ours) == 6
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), name


class FinishedTasks(SchedulerPlugin):
    """A dask scheduler plugin: each task that reached memory, and the worker that computed it."""

    name = "hypseg-test-finished-tasks"

    def __init__(self):
        self.finished = []

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            self.finished.append((str(key), kwargs.get("worker")))


def test_a_running_scheduler_given_by_its_address_runs_the_volumes_on_its_workers(files, tmp_path, capsys,
                                                                                 one_thread):
    volumes, model = files
    here, there = tmp_path / "here", tmp_path / "there"
    assert main(["segment", *map(str, volumes), "--model", str(model), "--out-dir", str(here), *CPU]) == 0
    with (LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
          Client(cluster) as client):
        client.register_plugin(FinishedTasks())
        workers = set(client.scheduler_info()["workers"])
        pids = client.run(os.getpid)
        address = cluster.scheduler_address
        capsys.readouterr()
        assert main(["segment", *map(str, volumes), "--model", str(model), "--out-dir", str(there), *CPU,
                     "--scheduler", address]) == 0
        captured = capsys.readouterr()
        # a second run of the same volumes on the same scheduler is its own work, not the first run's
        again = tmp_path / "again"
        assert main(["segment", *map(str, volumes), "--model", str(model), "--out-dir", str(again), *CPU,
                     "--scheduler", address]) == 0
        finished = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[FinishedTasks.name].finished)
    assert address.startswith("tcp://")
    assert f"on the dask scheduler {address}" in captured.err and "3 of 3 volumes segmented" in captured.out
    assert len(workers) == 2 and set(pids) == workers and os.getpid() not in pids.values()
    # each volume was one task of the CLI that the cluster's workers (other processes) computed
    ran = {key: worker for key, worker in finished if key.startswith("segment-")}
    assert sorted(key.rsplit("-", 1)[0] for key in ran) == sorted(2 * [f"segment-{index}-{path.name}"
                                                                       for index, path in enumerate(volumes)])
    assert set(ran.values()) <= workers, ran
    ours = labels_of(here)
    assert len(ours) == 6
    for theirs in (labels_of(there), labels_of(again)):
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert np.array_equal(ours[name], theirs[name]), name


@pytest.mark.slow   # dask.distributed retries for its whole connection timeout (20 s)
def test_an_unreachable_scheduler_is_a_clear_error(files, tmp_path, capsys):
    volumes, model = files
    code = main(["segment", str(volumes[0]), "--model", str(model), "--out-dir", str(tmp_path / "out"), *CPU,
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "cannot reach the dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
