"""Editors for every field of HypsegConfig: the key ones in view, the rest under "Advanced".

Built from the dataclass itself, so a parameter added to the core shows up here without a widget
change; the core's `validate()` checks the values.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)
from superqt import QCollapsible

from ..core.config import (FINE_CLUSTERINGS, GEOMETRIES, LATENT_SCALINGS, LINKAGE_NAMES, PRESETS,
                           RECONSTRUCTION_TARGETS, STAGE_FIELDS, TEXTURE_DESCRIPTOR_NAMES, HypsegConfig)
from ..core.errors import ConfigError
from ._common import INT_MAX

KEY_FIELDS = ("steps", "batch_size", "learning_rate", "latent_dim", "geometry", "gyroplane", "triplet",
              "seed")

LABELS = {
    "batch_size": "batch size",
    "learning_rate": "learning rate",
    "latent_dim": "latent dimension",
    "encoder_channels": "encoder channels",
    "n_samples": "posterior samples",
    "log_uniform_parent": "log-uniform parent size",
    "intensity_jitter": "brightness jitter",
    "texture_weight": "texture weight",
    "texture_descriptor": "texture target",
    "view_weight": "same-scale weight",
    "invariance_weight": "invariance weight",
    "view_shift": "same-scale shift",
    "hierarchy_scales": "coarse-level context",
    "hierarchy_neighbours": "top-level neighbours",
    "image_features": "image features",
    "fine_clustering": "fine clustering",
    "latent_scaling": "latent scaling",
    "ward_top": "Ward top",
    "boundary_refinement": "boundary refinement",
    "checkpoint_every": "checkpoint every",
    "inference_stride": "inference stride",
    "reconstruction_target": "reconstruction target",
}

TOOLTIPS = {
    "geometry": "hyperbolic: latent points in the Poincaré ball (the method). euclidean: the same VAE "
                "in ordinary space (ablation baseline).",
    "latent_dim": "Dimension of each voxel's latent point. 2 shows the whole space in the disk view; "
                  "3–8 can separate more kinds of structure.",
    "curvature": "c of the Poincaré ball {c|x|² < 1}; the space has curvature −c. 1 is the paper's value.",
    "encoder_channels": "Filters of each encoder convolution, comma separated (e.g. 16, 32, 64). More "
                        "layers see larger patches; fewer/smaller train faster.",
    "kernel_size": "Side of the encoder's 3D convolution kernels (odd). Patch side = 1 + layers × "
                   "(kernel − 1).",
    "hidden": "Units of the hidden layer between the encoder convolutions and the latent heads.",
    "gyroplane": "Hyperbolic only: decode through a gyroplane layer (hyperbolic hyperplanes). Off: log "
                 "map then a linear layer (ablation).",
    "latent_grid": "Side (odd) of the latent volume the decoder's gyroplane convolution reads; 1 = a "
                   "single latent point per patch.",
    "n_samples": "Monte-Carlo samples of the posterior per patch for the ELBO. More: smoother "
                 "gradients, slower steps.",
    "prior_sigma": "Standard deviation of the wrapped-normal prior at the origin.",
    "triplet": "Add the hierarchical triplet loss: a patch is pulled towards its own sub-patch and "
               "pushed away from a patch outside it (ablation switch).",
    "triplet_margin": "Margin α of the triplet loss, in squared hyperbolic distance.",
    "triplet_weight": "Weight β of the triplet loss against the ELBO.",
    "kl_weight": "Weight of the KL term of the ELBO (1 = the plain VAE objective).",
    "parent_min": "Smallest side (voxels) of a sampled parent patch.",
    "parent_max": "Largest side (voxels) of a sampled parent patch; about the size of your largest "
                  "structures.",
    "log_uniform_parent": "Draw parent sizes log-uniformly (favours small patches; useful for large "
                          "volumes such as MRI).",
    "intensity_jitter": "Spread of a random brightness offset given to each training patch, so that "
                        "structures are told apart by texture, not only by brightness (0 = off; "
                        "turn it off where brightness alone defines the classes, e.g. some MRI).",
    "texture_weight": "Weight of a second reconstruction target, each patch's local texture amplitude, "
                      "so that the latent encodes how textured a region is as well as its brightness "
                      "(0 = off, the paper's objective).",
    "texture_descriptor": "What the texture target is: amplitude (how textured a region is) or oriented "
                          "(also the share of gradient energy along z, y and x, for striped textures).",
    "view_weight": "Weight of a same-scale triplet: two patches of the segmentation context a few voxels apart "
                   "are pulled together, a patch from elsewhere pushed away, each with its own brightness "
                   "offset, so the latent learns textures' grain and orientation as segmentation sees them "
                   "(0 = off, the paper's objective).",
    "view_shift": "Largest offset (voxels, per axis) between the two nearby patches of the same-scale triplet "
                  "or of the invariance pairs.",
    "invariance_weight": "Weight of a photometric invariance term: two patches of the segmentation context a few "
                         "voxels apart, each with its own brightness, contrast and noise, get the same latent, "
                         "while the latents of a batch are kept spread and decorrelated (VICReg) "
                         "(0 = off, the paper's objective).",
    "hierarchy_scales": "Coarse levels on coarse context, as k:sigma pairs (e.g. 8:2, 4:6): once the tree "
                        "is down to k clusters it compares them by their latents averaged over sigma "
                        "voxels around them, so an organelle joins the cell around it. Empty = one tree "
                        "on the cluster centres.",
    "hierarchy_neighbours": "Top levels by neighbourhood, as k:sigma pairs (e.g. 6:6): once the tree is down "
                            "to k clusters it compares them by which clusters lie within about sigma voxels "
                            "of them, so a structure joins the one that encloses it. Empty = off.",
    "image_features": "Weight of six hand-made image features (smoothed intensity at four scales, edges, "
                      "local spread) clustered beside the latents for the fine clusters and the finest merges; "
                      "coarse levels are decided on wider context alone (0 = latents only).",
    "fine_clustering": "How the fine clusters are found beside image features: gaussian_mixture (a Gaussian "
                       "with its own shape per cluster, which follows wide and tight structures alike) or "
                       "kmeans (equal spheres; faster).",
    "latent_scaling": "How the latents are scaled beside the image features: shared (one spread for all "
                      "channels, keeping the proportions training gave them) or channel (each "
                      "standardised on its own).",
    "linkage": "How the tree merges clusters below its Ward top: centroid (closest centres first, whatever "
               "their sizes: small organelles stay groups of their own), average, single, or ward (size-weighted).",
    "ward_top": "The top this many groups of the tree are the Ward tree's (background against cell); below "
                "them the linkage merges within each group (0 = the linkage throughout).",
    "boundary_refinement": "Sigma (voxels) of the lightly smoothed intensity on which the voxels along the "
                           "fine clusters' boundaries are re-decided after clustering, so a boundary sits where "
                           "the intensity changes (0 = off).",
    "latent_smoothing": "Sigma (voxels) of a Gaussian that smooths the latent field before clustering "
                        "(0 = off).",
    "inference_stride": "Compute latents at every n-th point of the encoder's grid and interpolate between "
                        "(1 = every point; 2 = about twice as fast).",
    "reconstruction_target": "What the decoder reconstructs: intensity (the patch, the paper) or normalised "
                             "(each patch standardised by its own mean and spread: blind to brightness).",
    "child_min": "Smallest side (voxels) of the child patches.",
    "child_max": "Largest side (voxels) of the child patches.",
    "steps": "Training steps (mini-batches). More steps: better embeddings, longer training. Stop "
             "keeps what was learned so far.",
    "batch_size": "Triplets (parent, sub-patch, distant patch) per step. Larger: smoother training, "
                  "more memory and time per step.",
    "learning_rate": "Step size of the optimiser. Too large diverges (NaN loss); too small learns "
                     "slowly.",
    "warmup_steps": "Steps over which the learning rate ramps up from zero.",
    "grad_clip": "Gradients are clipped to this norm, which keeps training stable.",
    "checkpoint_every": "Save the model file every this many steps (and always at the end or on Stop).",
    "seed": "Seed of every random choice (weights, patch sampling): the same seed reproduces a run on "
            "the same device.",
    "context": "Side (voxels of the volume) of the neighbourhood that describes each voxel at "
               "segmentation time.",
}


class _ScientificSpinBox(QDoubleSpinBox):
    """A float field that shows and accepts values like 5e-05 (Qt's fixed decimals would round them)."""

    def __init__(self) -> None:
        super().__init__()
        self.setDecimals(12)
        self.setRange(0.0, 1e12)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt API)
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):  # noqa: D102
        from qtpy.QtGui import QValidator

        allowed = set("0123456789.eE+-")
        if all(ch in allowed for ch in text):
            try:
                float(text)
                return QValidator.State.Acceptable, text, pos
            except ValueError:
                return QValidator.State.Intermediate, text, pos
        return QValidator.State.Invalid, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        """Arrows multiply or divide by 2, which suits rates and weights spanning decades."""
        value = self.value() or 1.0
        self.setValue(value * (2.0 ** steps))


CHOICES = {"geometry": GEOMETRIES, "texture_descriptor": TEXTURE_DESCRIPTOR_NAMES,
           "fine_clustering": FINE_CLUSTERINGS, "latent_scaling": LATENT_SCALINGS,
           "reconstruction_target": RECONSTRUCTION_TARGETS,
           "linkage": LINKAGE_NAMES["hyperbolic"]}  # the same names for either geometry


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def _editor_for(name: str, default: Any) -> QWidget:
    if isinstance(default, bool):
        editor: QWidget = QCheckBox()
    elif isinstance(default, int):
        editor = QSpinBox()
        editor.setRange(0, INT_MAX)
    elif isinstance(default, float):
        editor = _ScientificSpinBox()
    elif name in CHOICES:
        editor = QComboBox()
        editor.addItems(list(CHOICES[name]))
    else:
        editor = QLineEdit()
    editor.setToolTip(TOOLTIPS.get(name, f"HypsegConfig.{name} (see the documentation)."))
    editor.setObjectName(name)
    return editor


class ConfigForm:
    """The editors of every HypsegConfig field: key rows for the caller's form, the rest in `advanced`."""

    def __init__(self) -> None:
        self.editors: dict[str, QWidget] = {}
        template = PRESETS["fast"]
        self.advanced = QCollapsible("Advanced parameters")
        self.advanced.setToolTip("Model size, loss weights, patch sampling and optimiser details.")
        advanced_body = QWidget()
        advanced_layout = QFormLayout(advanced_body)
        advanced_layout.setContentsMargins(0, 0, 0, 0)
        for field in fields(HypsegConfig):
            self.editors[field.name] = _editor_for(field.name, getattr(template, field.name))
            if field.name not in KEY_FIELDS:
                advanced_layout.addRow(_label(field.name), self.editors[field.name])
        self.advanced.addWidget(advanced_body)
        self.editors["geometry"].currentTextChanged.connect(self._geometry_changed)

    def add_key_rows(self, form: QFormLayout) -> None:
        """Put the key parameters into `form`, in the order of KEY_FIELDS."""
        for name in KEY_FIELDS:
            form.addRow(_label(name), self.editors[name])

    def setEnabled(self, enabled: bool) -> None:  # noqa: N802 (like QWidget.setEnabled)
        for editor in self.editors.values():
            editor.setEnabled(enabled)
        self.advanced.setEnabled(enabled)
        if enabled:
            self._geometry_changed(self.editors["geometry"].currentText())

    def _geometry_changed(self, geometry: str) -> None:
        hyperbolic = geometry == "hyperbolic"
        for name in ("gyroplane", "curvature"):
            if name in self.editors:
                self.editors[name].setEnabled(hyperbolic)

    def set_config(self, config: HypsegConfig) -> None:
        for name, editor in self.editors.items():
            value = getattr(config, name)
            if isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QSpinBox):
                editor.setValue(int(value))
            elif isinstance(editor, QDoubleSpinBox):
                editor.setValue(float(value))
            elif isinstance(editor, QComboBox):
                editor.setCurrentText(str(value))
            elif name in STAGE_FIELDS:
                editor.setText(", ".join(f"{k}:{sigma:g}" for k, sigma in value))
            elif isinstance(value, tuple):
                editor.setText(", ".join(str(v) for v in value))
            else:
                editor.setText(str(value))
        self._geometry_changed(config.geometry)

    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                values[name] = editor.isChecked()
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                editor.interpretText()
                values[name] = editor.value()
            elif isinstance(editor, QComboBox):
                values[name] = editor.currentText()
            else:
                values[name] = self._parse_text(name, editor.text())
        return values

    def set_values(self, **values: Any) -> None:
        """Change some parameters (e.g. a tiny model in a test or a script), keeping the others."""
        config = self.config().with_overrides(**values)
        self.set_config(config)

    def config(self) -> HypsegConfig:
        """The configuration in the form, validated by the core (ConfigError says what is wrong)."""
        return HypsegConfig(**self.values()).validate()

    @staticmethod
    def _parse_text(name: str, text: str) -> Any:
        default = getattr(PRESETS["fast"], name)
        if name in STAGE_FIELDS:
            try:
                pairs = [part.split(":") for part in text.replace(",", " ").split()]
                return tuple((int(k), float(sigma)) for k, sigma in pairs)
            except ValueError:
                raise ConfigError(f"{LABELS[name]}: write k:sigma pairs separated by commas, e.g. 8:2, 4:6 "
                                  f"(got {text!r})") from None
        if isinstance(default, tuple):
            try:
                return tuple(int(part) for part in text.replace(",", " ").split())
            except ValueError:
                raise ConfigError(f"{LABELS.get(name, name)}: write whole numbers separated by commas, "
                                  f"e.g. 16, 32, 64 (got {text!r})") from None
        return text
