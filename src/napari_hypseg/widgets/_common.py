"""Pieces every widget shares: errors as notifications, layer pickers, device choice, model files
and the questions asked before a file is replaced. (Running core work: `_worker_widget`.)"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Select
from napari.utils.notifications import notification_manager, show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import HypsegError

MODEL_DIR = Path.home() / ".napari-hypseg" / "models"
MODEL_FILTER = "napari-hypseg models (*.pt);;All files (*)"

# Qt's default maximum of a spin box (99) is too small for steps, sizes and seeds.
INT_MAX = 2_000_000_000


# --------------------------------------------------------------------------- errors


def notify_error(error: BaseException) -> None:
    """A user error shows its message; anything else shows with its traceback (for bug reports)."""
    if isinstance(error, HypsegError):
        show_error(str(error))
    else:
        notification_manager.receive_error(type(error), error, error.__traceback__)


# --------------------------------------------------------------------------- layers


class LayerPicker:
    """A magicgui Select (several) or ComboBox (one) of the viewer's layers of `kind`, kept in sync
    with the layer list and with layer names. `widget` is what goes into a layout (`.native`);
    `nullable` (one layer) adds an empty choice, whose value is None."""

    def __init__(self, viewer: Any, kind: type, *, multiple: bool, tooltip: str, nullable: bool = False) -> None:
        self._viewer = viewer
        self._kind = kind
        self._multiple = multiple
        if multiple:
            self.widget: Select | ComboBox = Select(choices=self._choices, tooltip=tooltip)
            self.widget.native.setMaximumHeight(90)
        else:
            self.widget = ComboBox(choices=self._choices, tooltip=tooltip, nullable=nullable)
        # napari holds method callbacks weakly: they go away with the picker.
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.reordered.connect(self.refresh)
        self.refresh()

    @property
    def value(self) -> Any:
        return self.widget.value

    @value.setter
    def value(self, value: Any) -> None:
        self.widget.value = value

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._viewer.layers
                if isinstance(layer, self._kind) and not getattr(layer, "rgb", False)]

    def _on_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)
        self.refresh()

    def refresh(self, _event: Any = None) -> None:
        self.widget.reset_choices()
        if self._multiple and not self.widget.value and self.widget.choices:
            self.widget.value = [self.widget.choices[0]]


def volume_of(layer: Any) -> Any:
    """The full-resolution data of an image layer (level 0 of a pyramid), not yet read: a memmap or
    dask array is turned into numbers by the core, in the worker thread, not here."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def spacing_of(layer: Any) -> tuple[float, float, float]:
    """Voxel size (z, y, x) of a layer, from its scale."""
    return tuple(float(s) for s in layer.scale[-3:])


def scrollable_layout(widget: QWidget) -> QVBoxLayout:
    """The layout of a scrolling body that fills `widget`: a dock can be taller than the screen."""
    body = QWidget()
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(body)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return QVBoxLayout(body)


# --------------------------------------------------------------------------- device


class DeviceChooser(QWidget):
    """The devices torch can use here, and a line saying what the chosen one is."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ..core.device import available_devices

        self.combo = QComboBox()
        for value, label in available_devices():
            self.combo.addItem(label, value)
        self.combo.setToolTip(
            "Where the network runs. 'auto' picks a CUDA GPU, then Apple MPS, then the CPU. "
            "If your GPU is missing here, torch was installed without GPU support "
            "(see the PyTorch install guide).")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(10)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setToolTip("What torch detected on this machine for the chosen device.")
        self.combo.currentIndexChanged.connect(self._describe)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.combo)
        layout.addWidget(self.label)
        self._describe()

    def _describe(self, _index: int = 0) -> None:
        from ..core.device import describe_device

        self.label.setText(describe_device(self.device))

    @property
    def device(self) -> str:
        return self.combo.currentData()

    @device.setter
    def device(self, value: str) -> None:
        index = self.combo.findData(value)
        if index < 0:
            raise ValueError(f"device {value!r} is not available here")
        self.combo.setCurrentIndex(index)


# --------------------------------------------------------------------------- files


def default_model_path(folder: Path = MODEL_DIR) -> Path:
    """A fresh model file name: model-<timestamp>.pt, numbered if that name is taken."""
    stem = f"model-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = folder / f"{stem}.pt", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.pt"
    return path


def model_load_button(load: Callable[[str], Any], tooltip: str, parent: QWidget) -> QPushButton:
    """A "Load model…" button: a file dialog opening in the models folder, then `load(path)`."""
    button = QPushButton("Load model…")
    button.setToolTip(tooltip)

    def browse() -> None:
        start = str(MODEL_DIR) if MODEL_DIR.exists() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(parent, "Load a napari-hypseg model", start, MODEL_FILTER)
        if path:
            load(path)

    button.clicked.connect(browse)
    return button


def confirm_overwrite(parent: QWidget, paths: Iterable[Path]) -> bool:
    """Ask before replacing existing files; True when there is nothing to replace or the user agrees."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if not existing:
        return True
    listed = "\n".join(str(p) for p in existing[:8])
    if len(existing) > 8:
        listed += f"\n… and {len(existing) - 8} more"
    answer = QMessageBox.question(
        parent,
        "Replace existing files?",
        f"{len(existing)} file(s) already exist:\n{listed}\n\nReplace them?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


# --------------------------------------------------------------------------- plots

# napari's dark theme, so the matplotlib canvases sit well in the dock.
BACKGROUND = "#262930"
FOREGROUND = "#d6d6d6"
GRID = "#414851"


def style_axes(axes: Any) -> None:
    axes.set_facecolor(BACKGROUND)
    axes.tick_params(colors=FOREGROUND, labelsize=8)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    axes.xaxis.label.set_color(FOREGROUND)
    axes.yaxis.label.set_color(FOREGROUND)
    axes.title.set_color(FOREGROUND)
