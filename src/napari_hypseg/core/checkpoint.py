"""Model files: one self-sufficient .pt holding weights, configuration, intensity statistics and
version, written atomically and read back with `torch.load(weights_only=True)`.

The file is a plain dict of tensors, strings, numbers, lists and dicts — nothing that needs
unpickling code — so loading a model received from someone else cannot run code. A human-readable
`<file>.json` sidecar (configuration, version, step) is written beside it; it is never read back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .atomic import write_durably
from .config import HypsegConfig
from .device import resolve_device
from .errors import CheckpointError, ConfigError
from .normalization import IntensityStats

CHECKPOINT_FORMAT = "napari-hypseg"
LAYOUT_VERSION = 1
"""Version of the dict layout below (the package version is stored too, for people)."""
_REQUIRED = {"layout": int, "config": dict, "stats": dict, "step": int, "state_dict": dict, "history": list}


@dataclass
class TrainedModel:
    """A model ready for inference, with everything needed to use it as it was trained."""

    model: torch.nn.Module
    config: HypsegConfig
    stats: IntensityStats
    step: int
    device: torch.device
    checkpoint_path: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def require_sidecar_free(path: str | os.PathLike) -> None:
    """Refuse a model file whose sidecar name is taken by a folder: checked before training, which
    would otherwise run until its first save and fail there."""
    sidecar = sidecar_path(path)
    if sidecar.is_dir():
        raise CheckpointError(f"{sidecar} is a folder, but the summary of the model file {Path(path).name} is "
                              "written under that name; move the folder away or choose another model file name.")


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, config: HypsegConfig,
                    stats: IntensityStats, *, step: int, history: Iterable[Mapping[str, float]] = (),
                    optimizer_state: dict | None = None) -> Path:
    """Write the model file atomically: a crash or a full disk never leaves a half-written model,
    and an existing file at `path` stays intact until the new one is complete."""
    path = Path(path)
    history = [dict(entry) for entry in history]
    payload = {
        "format": CHECKPOINT_FORMAT,
        "layout": LAYOUT_VERSION,
        "version": __version__,
        "config": config.to_dict(),
        "stats": stats.to_dict(),
        "step": int(step),
        "history": history,
        "state_dict": _to_cpu(model.state_dict()),
        "optimizer": _to_cpu(optimizer_state),
    }
    write_durably(path, lambda f: torch.save(payload, f), CheckpointError)
    summary = {key: payload[key] for key in ("format", "version", "step", "config", "stats")}
    summary["saved"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    summary["last_losses"] = history[-1] if history else None
    summary["note"] = f"For people only: the model is {path.name}, which holds all of this too."
    text = json.dumps(summary, indent=2).encode()
    write_durably(sidecar_path(path), lambda f: f.write(text), CheckpointError)
    return path


def read_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checked contents of a model file (tensors mapped to `device`); CheckpointError otherwise.

    The configuration is returned as a HypsegConfig and the statistics as IntensityStats.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file {path} does not exist; check the path, or train a model "
                              f"first (hypseg train VOLUME... --out {path.name}).")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; give the path of a model file (.pt).")
    try:
        payload = torch.load(path, map_location=resolve_device(device), weights_only=True)
    except Exception as error:  # torch.load parses untrusted bytes: any failure means unreadable
        text = str(error)
        if "unsupported global" in text.lower():
            raise CheckpointError(
                f"{path} is not a napari-hypseg model: it holds Python objects that are not loaded, "
                "for safety. Give a model written by `hypseg train` or the Train widget.") from None
        reason = (text.split("WeightsUnpickler error:")[-1].strip().splitlines() or [""])[0][:120]
        raise CheckpointError(f"cannot read model file {path}: it is corrupt or truncated "
                              f"({type(error).__name__}{': ' + reason if reason else ''}). "
                              "Train the model again or restore a copy of the file.") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a napari-hypseg model (it has no "
                              f"'format': '{CHECKPOINT_FORMAT}' entry). Give a model written by "
                              "`hypseg train` or the Train widget.")
    broken = [key for key, kind in _REQUIRED.items() if not isinstance(payload.get(key), kind)]
    if broken:
        raise CheckpointError(f"model file {path} is damaged: its entries {broken} are missing or "
                              "malformed. Train the model again or restore a copy of the file.")
    written_by = f"written by napari-hypseg {payload.get('version', '?')}, this is {__version__}"
    if payload["layout"] > LAYOUT_VERSION:
        raise CheckpointError(f"model file {path} uses a newer file layout ({written_by}); "
                              "upgrade napari-hypseg to load it.")
    try:
        payload["config"] = HypsegConfig.from_dict(payload["config"])
        payload["stats"] = IntensityStats.from_dict(payload["stats"])
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"model file {path} holds settings this version cannot use ({error}; "
                              f"{written_by}).") from None
    return payload


def restore_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load weights, or say in plain words how they differ from what the configuration builds."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    reshaped = [f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
                for key, value in expected.items()
                if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)]
    if missing or unexpected or reshaped:
        details = "; ".join(f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                            for label, items in (("missing", missing), ("unexpected", unexpected),
                                                 ("shape in file vs configuration", reshaped)) if items)
        raise CheckpointError(f"the weights in {path} do not match the configuration stored with them "
                              f"({details}). The file was altered or written by an incompatible version; "
                              "train the model again.")
    broken = [key for key, value in state_dict.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise CheckpointError(f"the weights in {path} hold NaN or infinite values ({', '.join(broken[:4])}"
                              f"{' ...' if len(broken) > 4 else ''}): the training that wrote it diverged or the "
                              "file was altered. Train the model again, with a lower learning rate.")
    model.load_state_dict(state_dict)


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> TrainedModel:
    """A trained model from its file, on `device`, in eval mode."""
    from .model import HypsegVAE

    path = Path(path)
    device = resolve_device(device)
    payload = read_checkpoint(path, device=device)
    model = HypsegVAE(payload["config"])
    restore_weights(model, payload["state_dict"], path)
    return TrainedModel(model=model.to(device).eval(), config=payload["config"], stats=payload["stats"],
                        step=payload["step"], device=device, checkpoint_path=path,
                        history=payload["history"])


def _to_cpu(value):
    """The same nested structure with every tensor on the CPU, so a file loads on any machine."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value
