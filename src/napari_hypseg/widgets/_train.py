"""Train dock widget: image layers + parameters -> core `train` in a worker -> a model in the session."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QWidget,
)

from ..core.config import DEFAULT_PRESET, PRESETS
from ..core.errors import HypsegError
from ..core.progress import LOSS_TERMS, TRAINING_PACE, format_metric
from ._common import (
    MODEL_FILTER,
    DeviceChooser,
    LayerPicker,
    confirm_overwrite,
    default_model_path,
    model_load_button,
    scrollable_layout,
    volume_of,
)
from ._binning import binned, binning_field, in_memory, region_field, region_mismatch
from ._config_form import ConfigForm
from ._loss_plot import LossPlot
from ._session import ModelEntry, load_model_file, session_for
from ._worker_widget import WorkerWidget

if TYPE_CHECKING:
    import napari


def _train_job(volumes: list, config: Any, *, checkpoint_path: Path, resume: Path | None, device: str,
               stop: threading.Event, factor: int = 1, mask: Any = None):
    """Worker body: the region's box and binning (if asked), then the core's training generator,
    importing torch in the worker thread."""
    from ..core.training import train

    volumes = [in_memory(binned(volume, factor, mask)) for volume in volumes]
    return (yield from train(volumes, config, checkpoint_path=checkpoint_path, resume=resume, device=device,
                             stop=stop))


class TrainWidget(WorkerWidget):
    """Train a hyperbolic VAE on image layers, watch the losses, stop at any step, or load a model."""

    STOPPING = "Stopping after this step…"

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.session = session_for(napari_viewer)
        self.last_model: ModelEntry | None = None
        self.last_event: Any = None  # the latest Progress of the current or last run
        self._path_is_automatic = True

        self.images = LayerPicker(
            napari_viewer, Image, multiple=True,
            tooltip="Image layers to learn from (3D volumes; Ctrl/Shift-click for several). "
                    "Each is normalised with statistics stored in the model.")

        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(DEFAULT_PRESET)
        self.preset.setToolTip(
            "Starting values for every parameter. fast: a slim model that gives good segmentations "
            "on a CPU in minutes. paper: the published setup (slower; a GPU helps).")
        self.preset.currentTextChanged.connect(self._apply_preset)

        self.form = ConfigForm()
        self.form.set_config(PRESETS[DEFAULT_PRESET])

        self.devices = DeviceChooser()

        self.checkpoint = QLineEdit(str(default_model_path()))
        self.checkpoint.setToolTip(
            "Model file written during training (every 'checkpoint every' steps, at the end and on "
            "Stop). You are asked before an existing file is replaced.")
        self.checkpoint.textEdited.connect(self._path_edited)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose where to save the model file.")
        browse.clicked.connect(self._browse_checkpoint)
        path_row = QHBoxLayout()
        path_row.addWidget(self.checkpoint, 1)
        path_row.addWidget(browse)

        self.resume = QCheckBox("continue training the last model")
        self.resume.setToolTip(
            "Start from the last trained or loaded model (weights, optimiser state, settings) instead "
            "of from scratch; 'steps' is the total to reach. The result goes to the model file above; "
            "the original file is kept.")
        self.resume.toggled.connect(self._resume_toggled)
        self.session.models_changed.connect(self._model_added)

        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train a model on the chosen image layers (runs in the background).")
        self.train_button.clicked.connect(self.start_training)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Finish the current step, save the model file and keep the model.")
        self.load_button = model_load_button(self.load_model, "Use a model trained before (a .pt file) "
                                             "instead of training.", self)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.stop_button, self.load_button):
            buttons.addWidget(button)

        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.status.setToolTip("Step, losses, speed, time left and device of the current run.")
        self.loss_plot = LossPlot()

        form = QFormLayout()
        form.addRow("images", self.images.widget.native)
        form.addRow("preset", self.preset)
        self.form.add_key_rows(form)
        form.addRow(self.form.advanced)
        form.addRow("device", self.devices)
        self.binning = binning_field()
        form.addRow("binning", self.binning)
        self.region = region_field(napari_viewer)
        form.addRow("region", self.region.widget.native)
        form.addRow("model file", path_row)
        form.addRow(self.resume)
        layout = scrollable_layout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.loss_plot)
        layout.addStretch(1)
        self._model_added(self.session.models[-1] if self.session.models else None)
        self._run_controls(self.train_button, self.stop_button,
                           locked=(self.load_button, self.preset, self.form, self.devices, self.binning,
                                   self.region.widget.native, self.checkpoint, self.images.widget.native))

    # ------------------------------------------------------------------ state

    def _update_enabled(self, *_: Any) -> None:
        super()._update_enabled()
        resumable = self.last_model is not None and self.last_model.path is not None
        self.resume.setEnabled(resumable and not self.running)

    def _apply_preset(self, name: str) -> None:
        self.form.set_config(PRESETS[name])

    def _model_added(self, entry: ModelEntry | None) -> None:
        if entry is None:
            return
        self.last_model = entry
        can_resume = entry.path is not None and entry.path.exists()
        self.resume.setText(f"continue training {entry.name}")
        self.resume.setEnabled(can_resume and not self.running)
        if not can_resume:
            self.resume.setChecked(False)

    def _resume_toggled(self, on: bool) -> None:
        """Show the settings of the model to continue: only 'steps' and 'checkpoint every' may change."""
        if on and self.last_model is not None:
            trained = self.last_model.trained
            config = trained.config
            steps = config.steps if trained.step < config.steps else trained.step + config.steps
            self.form.set_config(config.with_overrides(steps=steps))

    def _path_edited(self, _text: str) -> None:
        self._path_is_automatic = False

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the model as", self.checkpoint.text(), MODEL_FILTER)
        if path:
            self.checkpoint.setText(path)
            self._path_is_automatic = False

    # ------------------------------------------------------------------ actions

    def load_model(self, path: str | Path) -> ModelEntry | None:
        """Load a model file into this viewer's session (what "Load model…" does after its dialog)."""
        entry = load_model_file(self.session, path)
        if entry is not None:
            self.status.setText(f"Loaded {entry.name}.")
        return entry

    def start_training(self) -> None:
        if self.running:
            return
        layers = list(self.images.value)
        if not layers:
            show_error("Choose at least one image layer to train on (open one, e.g. File › Open Sample › "
                       "napari-hypseg).")
            return
        try:
            config = self.form.config()
        except HypsegError as error:
            show_error(str(error))
            return
        region = self.region.value
        mismatch = region_mismatch(region, layers)
        if mismatch is not None:
            show_error(mismatch)
            return
        path = Path(self.checkpoint.text()).expanduser()
        if not path.suffix:
            path = path.with_suffix(".pt")
        if path.is_dir():
            show_error(f"The model file {path} is a folder; give a file name such as {path / 'model.pt'}.")
            return
        if not confirm_overwrite(self, [path]):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            show_error(f"Cannot create the folder for the model file {path.parent}: {error.strerror}")
            return

        resume = self.last_model.path if self.resume.isChecked() and self.last_model is not None else None
        self.checkpoint.setText(str(path))
        self.loss_plot.clear()
        self.status.setText(f"Starting: {config.steps} steps on {len(layers)} image(s), "
                            f"device {self.devices.device}…")
        self._start_run(
            _train_job,
            [volume_of(layer) for layer in layers],
            config,
            checkpoint_path=path,
            resume=resume,
            device=self.devices.device,
            factor=self.binning.currentData(),
            mask=None if region is None else volume_of(region),
            description="HypSeg training",
            total=config.steps,
            on_event=self._on_progress,
            on_result=self._on_trained,
        )

    # ------------------------------------------------------------------ worker callbacks

    def _on_progress(self, event: Any) -> None:
        self.last_event = event
        metrics = dict(event.metrics)
        parts = [f"<b>step {event.step}/{event.total}</b>"]
        losses = [format_metric(name, value) for name, value in metrics.items() if name in LOSS_TERMS]
        if losses:
            parts.append("loss: " + ", ".join(losses))
        speed = [format_metric(name, metrics[name]) for name in TRAINING_PACE if name in metrics]
        speed.append(self.devices.label.text())
        parts.append(" · ".join(speed))
        if event.message:
            parts.append(event.message)
        if event.checkpoint is not None:
            parts.append(f"saved {Path(event.checkpoint).name}")
        self.status.setText("<br>".join(parts))
        if metrics:
            self.loss_plot.add(event.step, metrics)

    def _on_trained(self, trained: Any) -> None:
        if trained is None:
            return
        path = getattr(trained, "checkpoint_path", None)
        name = Path(path).stem if path else "trained model"
        self.session.add(trained, f"{name} (just trained)")
        show_info(f"Training ended at step {trained.step}; model saved to {path}.")
        self.status.setText(self.status.text() + f"<br>Done: model <b>{self.last_model.name}</b> "
                            "is ready in the Segment widget.")

    def _run_ended(self) -> None:
        self.resume.setChecked(False)
        if self._path_is_automatic:
            self.checkpoint.setText(str(default_model_path(Path(self.checkpoint.text()).parent)))
