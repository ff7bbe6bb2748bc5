"""Every parameter of a model and its training, in one validated, serialisable record.

A checkpoint stores this record beside the weights, so a model file always says how to rebuild
itself; each ablation of the method is a configuration, not a code fork.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import ConfigError

GEOMETRIES = ("hyperbolic", "euclidean")
PRECISIONS = ("auto", "float32", "bfloat16")
"""Arithmetic of the encoder at inference (see device.inference_dtype)."""
TEXTURE_DESCRIPTOR_NAMES = ("amplitude", "oriented")
"""Names of losses.TEXTURE_DESCRIPTORS, listed here so that a configuration is checked without torch."""
RECONSTRUCTION_TARGETS = ("intensity", "normalised")
"""What the decoder's first channel may reconstruct (HypsegConfig.reconstruction_target)."""
FINE_CLUSTERINGS = ("kmeans", "gaussian_mixture")
"""Ways of finding the fine clusters of the joint space (HypsegConfig.fine_clustering)."""
LATENT_SCALINGS = ("channel", "shared")
"""How the latent channels are scaled in the joint space (HypsegConfig.latent_scaling)."""
LINKAGE_NAMES = {"hyperbolic": ("ward", "centroid", "average", "single"),
                 "euclidean": ("ward", "average", "centroid", "single")}
"""The tree's linkages per geometry, the default first (hierarchy.LINKAGES; see hierarchy.py)."""
STAGE_FIELDS = ("hierarchy_scales", "hierarchy_neighbours")
"""Configuration fields holding (k, sigma) stages of the tree (see HypsegConfig)."""


def _non_negative_number(value: Any) -> bool:
    """A finite int or float >= 0 (not a bool, which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")


@dataclass(frozen=True)
class HypsegConfig:
    # --- model ---
    geometry: str = "hyperbolic"
    """'hyperbolic' (Poincaré ball, wrapped normals) or 'euclidean' (the same VAE in R^d)."""
    latent_dim: int = 2
    curvature: float = 1.0
    """c in the ball {c|x|^2 < 1}; the space has sectional curvature -c."""
    encoder_channels: tuple[int, ...] = (16, 32, 64, 128)
    kernel_size: int = 3
    """Encoder convolutions are unpadded, so the encoder sees a patch of 1 + layers*(kernel-1)."""
    hidden: int = 300
    gyroplane: bool = True
    """Hyperbolic only: decode through a gyroplane layer (else log_0 followed by a linear layer)."""
    latent_grid: int = 1
    """Side of the latent volume the decoder's gyroplane convolution reads (odd; 1 = one point)."""
    n_samples: int = 8
    """Monte-Carlo samples of the posterior per patch (K)."""
    prior_sigma: float = 1.0
    # --- objective ---
    triplet: bool = True
    triplet_margin: float = 0.2
    triplet_weight: float = 1e3 / 128
    """Weight of the triplet term against the ELBO per patch (summed over voxels, averaged over the
    batch). The paper's beta = 1e3 multiplied an ELBO summed over a batch of 128 patches, which is
    1e3 / 128 in this scaling."""
    kl_weight: float = 1.0
    texture_weight: float = 0.0
    """Weight of a second reconstruction target: each patch's local texture amplitude (local_texture
    in losses.py). The best Gaussian reconstruction of a random-phase texture is its local mean, so
    the ELBO alone gives the latent no reason to encode texture; this term does. 0 = off (the paper)."""
    texture_descriptor: str = "amplitude"
    """What the texture target is (losses.TEXTURE_DESCRIPTORS): "amplitude" (the local texture
    amplitude) or "oriented" (the amplitude and the share of gradient energy along each axis, which
    tells textures of different orientation apart)."""
    reconstruction_target: str = "intensity"
    """What the decoder's first channel reconstructs: "intensity" (the patch as the encoder sees it,
    the paper) or "normalised" (each patch standardised by its own mean and spread, as masked
    autoencoders reconstruct normalised pixels): blind to an object's brightness and contrast, so the
    likelihood asks the latent for structure rather than for how bright a region is."""
    view_weight: float = 0.0
    """Weight of a same-scale triplet: a cube of side `context` (the scale a volume is segmented at),
    a cube of that side up to `view_shift` voxels from it and one elsewhere, each with its own
    brightness offset (intensity_jitter); the first two are pulled together in the ball, the third
    pushed away. The multi-scale triplet resizes cubes of sides 3 to 34 to one input, which teaches
    the encoder to ignore scale and with it a texture's grain; this term teaches the grain and
    orientation of textures as they look at inference. 0 = off (the paper)."""
    view_shift: int = 2
    """Largest offset (voxels, per axis) between the two cubes of the same-scale triplet or of the
    invariance pairs."""
    invariance_weight: float = 0.0
    """Weight of a photometric invariance term (VICReg: losses.vicreg): two cubes of side `context`
    up to `view_shift` voxels apart, each with its own brightness offset (intensity_jitter), contrast
    and noise (TripletSampler.sample_pairs); their latents (in the tangent space at the origin) are
    pulled together, while a variance and a covariance term over the batch keep the latents from
    collapsing to one point. It asks the encoder for what two views of one structure share (texture,
    grain, orientation) and not for how bright they happen to be. 0 = off (the paper)."""
    # --- sampling ---
    parent_min: int = 5
    parent_max: int = 34
    log_uniform_parent: bool = False
    child_min: int = 3
    child_max: int = 15
    intensity_jitter: float = 0.0
    """Standard deviation (normalised intensity units) of a random brightness offset added to each
    training patch on its own. Objects of one kind can differ in mean brightness, and without it the
    triplet term can tell a parent's child from a distant patch by brightness alone; with it, the
    encoder has to match them by texture and structure too. 0 = off (the paper)."""
    # --- optimisation ---
    steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    grad_clip: float = 8.0
    checkpoint_every: int = 500
    seed: int = 0
    # --- inference ---
    context: int = 5
    """Side (voxels of the volume) of the neighbourhood each voxel's latent describes; it is resized
    to the encoder's patch size, as during training."""
    latent_smoothing: float = 1.5
    """Sigma (voxels) of a Gaussian that smooths the latent field before clustering (in the tangent
    space at the origin for the hyperbolic model, plainly for the Euclidean one); 0 = off. It removes
    voxel-scale noise of the encoder; it helps levels 2 and 3 most (see docs/tuning.md)."""
    inference_stride: int = 1
    """Latents are computed exactly at every inference_stride-th point of the encoder's grid and
    interpolated between (inference.latent_field): 2 makes segmentation about twice as fast, for a
    field that latent_smoothing averages over more than that spacing anyway. 1 = every point."""
    hierarchy_scales: tuple[tuple[int, float], ...] = ()
    """Coarse levels on coarse context: (k, sigma) pairs, k decreasing. Once the tree over the fine
    clusters is down to k groups, it compares groups by their latents averaged over a Gaussian
    neighbourhood of sigma voxels (latent_fields.regional_descriptors) instead of by their centroids,
    so the top of the hierarchy follows what surrounds a region and the bottom what the region is.
    () = off, the default since hierarchy_neighbours did better (docs/tuning.md, ninth round)."""
    hierarchy_neighbours: tuple[tuple[int, float], ...] = ((6, 6.0),)
    """Top levels by neighbourhood: (k, sigma) pairs, k decreasing. Once the tree is down to k groups,
    it compares groups by which fine clusters lie within about sigma voxels of them
    (latent_fields.neighbour_descriptors), so a structure joins the one that encloses it, whatever it
    looks like, and the parts of one textured structure join each other; at a k that
    hierarchy_scales names too, this stage replaces that one. On the toy validation volumes it raised
    levels 1 and 2 of both sets against the latent-context stages (docs/tuning.md, ninth round).
    () = off."""
    image_features: float = 0.0
    """Weight of six hand-made image features (baselines.multiscale_features: smoothed intensity at
    four scales, gradient magnitude, local standard deviation) clustered beside the standardised
    latents: they shape the fine clusters and the tree's first merges, down to the first k of
    hierarchy_scales or hierarchy_neighbours; coarser levels are decided on wider context alone
    (brightness there would put dark organelles outside their cell). Edges and brightness sharpen the fine
    partition; the latents add the texture and context the features miss (docs/tuning.md, seventh
    round). 0 = the latents alone."""
    latent_scaling: str = "channel"
    """How the latent channels are scaled beside the image features: "channel" standardises each on
    its own; "shared" divides them all by one spread (the root mean square of theirs), so they keep
    the proportions training gave them. A trained encoder spends some channels on what reconstruction
    needs and the classes do not (where an edge runs, how a texture is oriented); standardised one by
    one, a channel that barely varies weighs as much as the one that carries the structure
    (docs/tuning.md, twentieth round)."""
    linkage: str = "ward"
    """How the tree over the fine clusters picks its merges (hierarchy.LINKAGES: "ward", "centroid",
    "average", "single"; see hierarchy.py)."""
    ward_top: int = 0
    """The top `ward_top` groups of the tree are those of the Ward tree over the same fine clusters,
    and below them `linkage` merges only within each of those groups (0 = `linkage` throughout). Ward
    weights a merge by the groups' sizes, so it keeps two big regions apart and lets small ones join
    them: right for the top of the hierarchy (background against cell), wrong below it, where the
    size-blind centroid linkage keeps organelles as groups of their own (docs/tuning.md, fourteenth
    round)."""
    fine_clustering: str = "kmeans"
    """How the fine clusters of the joint space (image_features > 0) are found: "kmeans", or
    "gaussian_mixture" -- a Gaussian per cluster with its own full covariance (core/mixture.py), which
    puts a boundary where two clouds of unequal spread meet rather than halfway between their centres
    (docs/tuning.md, eighth round). The latents alone (image_features 0) are clustered by k-means in
    the ball either way."""
    boundary_refinement: float = 0.0
    """Sigma (voxels) of the lightly smoothed intensity on which the voxels along the fine clusters'
    boundaries are re-decided after clustering (core/refinement.py): the latents and features see a
    context several voxels wide, so a boundary between two structures sits a voxel or two off; a
    few Potts-regularised sweeps move it to where the intensity changes. The tree is unchanged, so
    every cut still nests (docs/tuning.md, sixteenth round). 0 = off."""

    @property
    def patch_size(self) -> int:
        """Side of the cube the encoder reduces to a single latent voxel."""
        return 1 + len(self.encoder_channels) * (self.kernel_size - 1)

    @property
    def input_size(self) -> int:
        """Side of the training input: the patch plus the margin the latent grid needs."""
        return self.patch_size + self.latent_grid - 1

    def validate(self) -> HypsegConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.geometry in GEOMETRIES, f"geometry must be one of {GEOMETRIES}, got {self.geometry!r}")
        need(self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        need(self.curvature > 0, f"curvature must be > 0, got {self.curvature}")
        need(len(self.encoder_channels) >= 1 and all(c >= 1 for c in self.encoder_channels),
             f"encoder_channels must be positive, got {self.encoder_channels}")
        need(self.kernel_size >= 1 and self.kernel_size % 2 == 1,
             f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        need(self.latent_grid >= 1 and self.latent_grid % 2 == 1,
             f"latent_grid must be odd and >= 1, got {self.latent_grid}")
        need(self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}")
        need(self.n_samples >= 1, f"n_samples must be >= 1, got {self.n_samples}")
        need(self.prior_sigma > 0, f"prior_sigma must be > 0, got {self.prior_sigma}")
        need(3 <= self.parent_min <= self.parent_max,
             f"need 3 <= parent_min <= parent_max, got {self.parent_min}, {self.parent_max}")
        need(1 <= self.child_min <= self.child_max,
             f"need 1 <= child_min <= child_max, got {self.child_min}, {self.child_max}")
        need(_non_negative_number(self.intensity_jitter),
             f"intensity_jitter must be a number >= 0 (0 = off), got {self.intensity_jitter!r}")
        need(self.child_min < self.parent_min,
             f"child_min ({self.child_min}) must be smaller than parent_min ({self.parent_min})")
        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        need(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        need(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        need(self.context >= 1, f"context must be >= 1, got {self.context}")
        need(_non_negative_number(self.latent_smoothing),
             f"latent_smoothing must be a number >= 0 (sigma in voxels; 0 = off), got {self.latent_smoothing!r}")
        need(_non_negative_number(self.texture_weight),
             f"texture_weight must be a number >= 0 (0 = off), got {self.texture_weight!r}")
        need(self.linkage in LINKAGE_NAMES.get(self.geometry, ()),
             f"linkage for a {self.geometry} model must be one of {LINKAGE_NAMES.get(self.geometry)}, got {self.linkage!r}")
        need(isinstance(self.ward_top, int) and not isinstance(self.ward_top, bool) and self.ward_top >= 0,
             f"ward_top must be an integer >= 0 (0 = off), got {self.ward_top!r}")
        need(self.fine_clustering in FINE_CLUSTERINGS,
             f"fine_clustering must be one of {FINE_CLUSTERINGS}, got {self.fine_clustering!r}")
        need(_non_negative_number(self.boundary_refinement),
             f"boundary_refinement must be a number >= 0 (sigma in voxels; 0 = off), got {self.boundary_refinement!r}")
        need(self.latent_scaling in LATENT_SCALINGS,
             f"latent_scaling must be one of {LATENT_SCALINGS}, got {self.latent_scaling!r}")
        need(_non_negative_number(self.image_features),
             f"image_features must be a number >= 0 (0 = the latents alone), got {self.image_features!r}")
        for name in STAGE_FIELDS:
            scales = getattr(self, name)
            need(isinstance(scales, tuple) and all(
                isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], int)
                and not isinstance(pair[0], bool) and pair[0] >= 1 and _non_negative_number(pair[1]) for pair in scales)
                 and [k for k, _ in scales] == sorted({k for k, _ in scales}, reverse=True),
                 f"{name} must be (k, sigma) pairs with k >= 1 strictly decreasing and sigma >= 0, got {scales!r}")
        need(_non_negative_number(self.view_weight),
             f"view_weight must be a number >= 0 (0 = off), got {self.view_weight!r}")
        need(_non_negative_number(self.invariance_weight),
             f"invariance_weight must be a number >= 0 (0 = off), got {self.invariance_weight!r}")
        need(isinstance(self.view_shift, int) and not isinstance(self.view_shift, bool) and self.view_shift >= 1,
             f"view_shift must be an integer >= 1 (voxels), got {self.view_shift!r}")
        need(self.texture_descriptor in TEXTURE_DESCRIPTOR_NAMES,
             f"texture_descriptor must be one of {TEXTURE_DESCRIPTOR_NAMES}, got {self.texture_descriptor!r}")
        need(isinstance(self.inference_stride, int) and not isinstance(self.inference_stride, bool)
             and self.inference_stride >= 1,
             f"inference_stride must be an integer >= 1, got {self.inference_stride!r}")
        need(self.reconstruction_target in RECONSTRUCTION_TARGETS,
             f"reconstruction_target must be one of {RECONSTRUCTION_TARGETS}, got {self.reconstruction_target!r}")
        need(self.triplet_margin >= 0 and self.triplet_weight >= 0 and self.kl_weight >= 0,
             "triplet_margin, triplet_weight and kl_weight must be >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HypsegConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys {unknown}; this file was written by another "
                              "version of napari-hypseg")
        values = dict(values)
        if "encoder_channels" in values:
            values["encoder_channels"] = tuple(values["encoder_channels"])
        for name in STAGE_FIELDS:
            if name in values:
                values[name] = tuple(tuple(pair) for pair in values[name])
        return cls(**values).validate()

    def with_overrides(self, **overrides: Any) -> HypsegConfig:
        """A copy with some parameters changed; None values are ignored (unset CLI options)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown parameters {unknown}; valid ones are {sorted(known)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).validate()


PRESETS: dict[str, HypsegConfig] = {
    # The paper's setup (method.md §3–§6) as faithfully as is sensible: 2-D latent, 16/32/64/128
    # filters, 300 hidden units, K = 8 samples, batch 128, triplet margin 0.2 and weight 1e3.
    "paper": HypsegConfig(batch_size=128, steps=15000, learning_rate=5e-5, checkpoint_every=1000),
    # Good segmentations quickly on a CPU: a slimmer encoder, fewer samples, a larger learning rate,
    # per-patch brightness jitter with the paper's triplet weight, the texture target (weight 30) and
    # image features beside the latents for the fine clusters (weight 0.5; the latents scaled by one
    # shared spread, as training left their proportions), and a tree whose top two
    # groups are Ward's and whose merges below them are by centroid linkage, and the fine clusters'
    # boundaries re-decided on the intensity at sigma 0.7: the best of the settings tried on the toy
    # validation volumes (docs/tuning.md); 300 steps scored as well as 600.
    "fast": HypsegConfig(
        intensity_jitter=2.0,
        texture_weight=30.0,
        image_features=0.5,
        latent_scaling="shared",
        fine_clustering="gaussian_mixture",
        linkage="centroid",
        ward_top=2,
        boundary_refinement=0.7,
        latent_dim=3,
        encoder_channels=(16, 32, 32, 64),
        hidden=64,
        n_samples=2,
        steps=300,
        batch_size=64,
        learning_rate=2e-3,
        warmup_steps=50,
        checkpoint_every=100,
    ),
}
DEFAULT_PRESET = "fast"


def get_preset(name: str = DEFAULT_PRESET, **overrides: Any) -> HypsegConfig:
    """A named preset, with any parameters overridden."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides)
