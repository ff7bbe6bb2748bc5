"""The model core: importable without Qt or napari.

Each module holds one idea (see docs/architecture.md). The names below are the public API; they are
imported on first use (PEP 562), so `import napari_hypseg.core` stays cheap and light tasks
(reading a volume, scoring) never pay for importing torch.

    from napari_hypseg.core import get_preset, read_volume, run_to_completion, segment, train
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "HypsegConfig": "config", "get_preset": "config", "PRESETS": "config",
    "train": "training", "TrainedModel": "checkpoint", "load_checkpoint": "checkpoint",
    "segment": "segmentation", "Segmentation": "segmentation",
    "ClusterHierarchy": "hierarchy",
    "PoincareKMeans": "kmeans", "EuclideanKMeans": "kmeans",
    "read_volume": "volume_io", "write_labels": "volume_io", "Volume": "volume_io",
    "score_segmentation": "metrics", "score_levels": "evaluation", "LEVEL_K": "evaluation",
    "BASELINES": "baselines",
    "cluster_objects": "objects",
    "make_toy_volume": "synthetic",
    "Progress": "progress", "run_to_completion": "progress",
    "HypsegError": "errors", "VolumeError": "errors", "ConfigError": "errors", "CheckpointError": "errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
