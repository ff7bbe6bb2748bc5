"""The package napari discovers: its manifest, its commands, and what importing it costs."""

from __future__ import annotations

import importlib
import importlib.resources
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "napari.yaml"
BIN = Path(sys.executable).parent


def manifest_commands() -> list[dict]:
    return yaml.safe_load(MANIFEST.read_text())["contributions"]["commands"]


def test_every_manifest_command_imports():
    for command in manifest_commands():
        module_name, attribute = command["python_name"].split(":")
        assert command["id"].startswith("napari-hypseg."), command["id"]
        assert callable(getattr(importlib.import_module(module_name), attribute)), command["python_name"]


def test_npe2_validates_the_installed_manifest_with_imports():
    result = subprocess.run([BIN / "npe2", "validate", "--imports", "napari-hypseg"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_napari_reads_the_top_level_manifest():
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-hypseg")
    packaged = Path(str(importlib.resources.files("napari_hypseg") / "napari.yaml"))
    assert packaged.resolve() == MANIFEST
    top_level = yaml.safe_load(MANIFEST.read_text())
    assert manifest.display_name == top_level["display_name"]
    assert [c.id for c in manifest.contributions.commands] == [c["id"] for c in manifest_commands()]
    assert {w.display_name for w in manifest.contributions.widgets} == {"Train", "Segment", "Export", "Objects"}
    listed = subprocess.run([BIN / "npe2", "list"], capture_output=True, text=True, check=True).stdout
    assert "napari-hypseg" in listed


def test_built_wheel_ships_the_top_level_manifest(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("napari_hypseg-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("napari_hypseg/napari.yaml") == MANIFEST.read_bytes()
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        text = archive.read(entry_points).decode()
        assert "[napari.manifest]" in text and "napari_hypseg:napari.yaml" in text
        assert "hypseg = napari_hypseg.cli:main" in text
        archive.extractall(tmp_path / "site")
    from npe2 import PluginManifest

    shipped = PluginManifest.from_file(tmp_path / "site" / "napari_hypseg" / "napari.yaml")
    assert shipped.name == "napari-hypseg"


def test_importing_the_plugin_entry_points_does_not_import_torch_or_qt():
    code = ("import sys, napari_hypseg, napari_hypseg._reader, napari_hypseg._writer, "
            "napari_hypseg._sample_data, napari_hypseg.cli.main; "
            "heavy = [m for m in ('torch', 'geoopt', 'PyQt6', 'qtpy') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_cli_help_lists_every_subcommand():
    result = subprocess.run([BIN / "hypseg", "--help"], capture_output=True, text=True, check=True)
    for name in ("toy", "evaluate", "train", "segment", "demo"):
        assert name in result.stdout
