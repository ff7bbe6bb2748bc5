"""Models known to one viewer, shared by its Train and Segment widgets.

The Train widget adds what it trains or loads; the Segment widget lists them. Keyed by the viewer
itself (never by the proxy napari hands to each plugin widget), and forgotten with it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info
from psygnal import Signal

from ..core.errors import HypsegError
from ._common import notify_error

if TYPE_CHECKING:
    from ..core.training import TrainedModel


@dataclass(eq=False)
class ModelEntry:
    """A trained model and the name the widgets show for it."""

    name: str
    trained: TrainedModel

    @property
    def path(self) -> Path | None:
        path = getattr(self.trained, "checkpoint_path", None)
        return Path(path) if path is not None else None

    @property
    def description(self) -> str:
        config = self.trained.config
        channels = ",".join(str(c) for c in config.encoder_channels)
        return (f"{self.name}\n{config.geometry}, latent dim {config.latent_dim}, encoder {channels}, "
                f"step {getattr(self.trained, 'step', '?')}\nfile: {self.path or 'not saved'}")


class Session:
    """The models of one viewer, newest last. `models_changed` carries the entry to select, if any."""

    models_changed = Signal(object)

    def __init__(self) -> None:
        self._models: list[ModelEntry] = []

    @property
    def models(self) -> tuple[ModelEntry, ...]:
        return tuple(self._models)

    def add(self, trained: TrainedModel, name: str) -> ModelEntry:
        """Add a model; a model from a file already listed replaces that entry (same file, newer state)."""
        path = _resolved(getattr(trained, "checkpoint_path", None))
        for index, entry in enumerate(self._models):
            if path is not None and _resolved(entry.path) == path:
                entry = ModelEntry(entry.name, trained)
                self._models[index] = entry
                self.models_changed.emit(entry)
                return entry
        taken = {entry.name for entry in self._models}
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name} ({n})"
        entry = ModelEntry(unique, trained)
        self._models.append(entry)
        self.models_changed.emit(entry)
        return entry

    def find(self, path: Path) -> ModelEntry | None:
        path = _resolved(path)
        return next((entry for entry in self._models if _resolved(entry.path) == path), None)


def load_model_file(session: Session, path: str | Path) -> ModelEntry | None:
    """Load a checkpoint into the session; a bad file is reported and changes nothing."""
    from ..core.checkpoint import load_checkpoint

    path = Path(path)
    try:
        trained = load_checkpoint(path, device="cpu")
    except HypsegError as error:
        show_error(f"Could not load the model {path.name}: {error}")
        return None
    except Exception as error:  # an unreadable file is a user problem, never a crash of the widget
        notify_error(error)
        return None
    entry = session.add(trained, f"{path.stem} (loaded)")
    show_info(f"Loaded model {path.name} (step {getattr(trained, 'step', '?')}).")
    return entry


def _resolved(path: Path | str | None) -> Path | None:
    return Path(path).expanduser().resolve() if path is not None else None


_SESSIONS: dict[int, Session] = {}


def session_for(viewer: Any) -> Session:
    """The session of `viewer` (a napari Viewer or the public-only proxy napari gives plugin widgets)."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    key = id(viewer)
    if key not in _SESSIONS:
        _SESSIONS[key] = Session()
        weakref.finalize(viewer, _SESSIONS.pop, key, None)
    return _SESSIONS[key]
