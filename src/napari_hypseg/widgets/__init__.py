"""napari dock widgets: Train, Segment, Export and Objects.

The classes are imported on first use (PEP 562), so napari can read the manifest and build its menus
without importing Qt widgets, matplotlib or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._export import ExportWidget
    from ._objects import ObjectsWidget
    from ._segment import SegmentWidget
    from ._train import TrainWidget

__all__ = ["ExportWidget", "ObjectsWidget", "SegmentWidget", "TrainWidget"]

_MODULES = {"TrainWidget": "._train", "SegmentWidget": "._segment", "ExportWidget": "._export",
            "ObjectsWidget": "._objects"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
