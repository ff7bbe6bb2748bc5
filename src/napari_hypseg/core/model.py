"""The VAE of method.md §3: a fully-convolutional Euclidean encoder, a wrapped-normal posterior on the
Poincaré ball (or a normal in R^d for the Euclidean ablation), and a decoder that reads the latent
volume through a gyroplane convolution (or log_0 + a convolution, or a plain convolution)."""

from __future__ import annotations

import math
import platform

import torch
import torch.nn.functional as F
from torch import nn

from .config import HypsegConfig
from .gyroplane import GyroplaneConv3d
from .losses import (
    TEXTURE_DESCRIPTORS,
    gaussian_nll,
    hierarchical_triplet,
    monte_carlo_kl,
    standardised_patches,
    texture_error,
    vicreg,
)
from .manifold import DiagonalNormal, WrappedNormal, expmap0, logmap0

SIGMA_FLOOR = 1e-5
SIGMA_CEILING = 2.0
"""Posterior scales are at most SIGMA_CEILING x prior_sigma. A wider wrapped normal puts its samples
at the ball's float32 boundary, where the prior's density stops falling while the posterior's
(computed from the tangent noise) keeps falling: the Monte-Carlo KL then decreases without bound as
the scale grows (about -230 nats at scale 100, -32,000 at 10,000), and training ran away to KL
-8e9 (docs/tuning.md, tenth round). Below the ceiling nothing changes."""


def _init_conv(layer: nn.Conv3d | nn.ConvTranspose3d, generator: torch.Generator, relu: bool) -> None:
    """He-uniform for layers followed by a ReLU (keeps activations alive through depth), PyTorch's
    default 1/sqrt(fan_in) bound otherwise, drawn from our own generator."""
    weight = layer.weight
    per_output = weight[:, 0] if isinstance(layer, nn.ConvTranspose3d) else weight[0]
    fan_in = per_output.numel()
    bound = math.sqrt(6.0 / fan_in) if relu else 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in), generator=generator)


_ONEDNN = torch.ops.mkldnn if platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available() \
    and hasattr(torch.ops.mkldnn, "_convolution_pointwise") and hasattr(torch.ops.mkldnn, "_linear_pointwise") else None
"""oneDNN's fused kernels, used on x86 CPUs (where they were measured); elsewhere the plain layers."""
_ONEDNN_BF16 = _ONEDNN is not None and torch.ops.mkldnn._is_mkldnn_bf16_supported()
"""Whether those kernels take bfloat16 here: they need AVX512 (or AVX-NE-CONVERT); without it a
bfloat16 layer runs through PyTorch's own convolution under the caller's autocast."""


def _fused(x: torch.Tensor, dtype: torch.dtype) -> bool:
    return _ONEDNN is not None and x.device.type == "cpu" and (dtype == torch.float32 or _ONEDNN_BF16)


def _convolve(x: torch.Tensor, layer: nn.Conv3d, stride: int, *, relu: bool, dtype: torch.dtype) -> torch.Tensor:
    """layer(x) at `stride`, then the ReLU if `relu`. On a CPU with channels-last activations oneDNN
    applies the ReLU as it writes the output (the fused kernels PyTorch's own compiler uses): one
    pass over the widest tensors instead of two; with the 1x1 layers below, a third of a bfloat16
    tile's time."""
    if relu and _fused(x, dtype) and x.is_contiguous(memory_format=torch.channels_last_3d):
        x = x.to(dtype)
        return _ONEDNN._convolution_pointwise(x, layer.weight.to(dtype), layer.bias.to(dtype), [0, 0, 0],
                                              [stride] * 3, [1, 1, 1], 1, "relu", [], "")
    x = F.conv3d(x, layer.weight, layer.bias, stride=stride)     # in autocast's dtype (the callers')
    return torch.relu_(x) if relu else x


def _pointwise(x: torch.Tensor, layer: nn.Conv3d, *, relu: bool, dtype: torch.dtype) -> torch.Tensor:
    """A 1x1x1 convolution on channel-last features (..., C) as a matrix product, then the ReLU if
    `relu` (fused on a CPU, as in _convolve)."""
    weight = layer.weight.flatten(1)
    if relu and _fused(x, dtype):
        x = x.to(dtype)
        return _ONEDNN._linear_pointwise(x, weight.to(dtype), layer.bias.to(dtype), "relu", [], "")
    x = F.linear(x, weight, layer.bias)
    return torch.relu_(x) if relu else x


def _run_decoder(layers: list[nn.Module], x: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The decoder's layers (ReLU, transposed convolutions, a 1x1x1 output convolution) on x (N, C, 1,
    1, 1), computed as they are written but without the work the plain layers waste on this shape:

    - a transposed convolution of a single voxel is a matrix product, (N, C_in) x (C_in, k^3 C_out),
      whose result is already channel-last;
    - the other transposed convolutions run on channel-last (channels_last_3d) activations, which
      oneDNN computes faster than channel-first ones;
    - the 1x1x1 output convolution is a matrix product on channel-last features: as a convolution,
      oneDNN spent on its one output channel (forward and backward) a fifth of a paper-preset step;
    - each ReLU overwrites the convolution's output (whose backward does not need it).

    The result is (N, C_out, S, S, S), in x's dtype, a channel-first view of channel-last memory. Only the
    order of float32 summation differs from the layers' own forward (tests/test_model.py compares
    them). `compute_dtype` other than float32 runs the layers under autocast (HypsegVAE.loss)."""
    relu_next = [index + 1 < len(layers) and isinstance(layers[index + 1], nn.ReLU) for index in range(len(layers))]
    dtype = x.dtype
    with torch.autocast(x.device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32):
        for index, layer in enumerate(layers):
            x = _decoder_layer(layers, index, layer, x, relu_next[index])
    return x.to(dtype)


def _decoder_layer(layers: list[nn.Module], index: int, layer: nn.Module, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """Layer `index` of _run_decoder on x, then the ReLU that follows it if `relu`."""
    if isinstance(layer, nn.ReLU):
        if index == 0 or not isinstance(layers[index - 1], nn.ConvTranspose3d | nn.Conv3d):
            return torch.relu(x)       # not after a layer of ours (the decoder's first ReLU)
        return x                       # applied with the layer before it
    if isinstance(layer, nn.ConvTranspose3d) and x.shape[2:] == (1, 1, 1) and _plain(layer):
        c_in, c_out = layer.weight.shape[:2]
        kernel = layer.kernel_size
        weight = layer.weight.permute(0, 2, 3, 4, 1).reshape(c_in, -1)     # (C_in, k k k C_out)
        bias = layer.bias.repeat(math.prod(kernel))
        x = torch.addmm(bias, x.flatten(1), weight).view(len(x), *kernel, c_out).permute(0, 4, 1, 2, 3)
    elif isinstance(layer, nn.ConvTranspose3d):
        x = layer(x.contiguous(memory_format=torch.channels_last_3d))
    elif isinstance(layer, nn.Conv3d) and layer.kernel_size == (1, 1, 1) and _plain(layer):
        features = x.contiguous(memory_format=torch.channels_last_3d).movedim(1, -1)
        x = F.linear(features, layer.weight.flatten(1), layer.bias).movedim(-1, 1)
    else:
        x = layer(x)
    return torch.relu_(x) if relu else x


def _plain(layer: nn.Conv3d | nn.ConvTranspose3d) -> bool:
    """Stride 1, no padding or dilation, one group, a bias: the layers _run_decoder computes itself."""
    return (layer.stride == (1, 1, 1) and layer.padding == (0, 0, 0) and layer.dilation == (1, 1, 1)
            and layer.groups == 1 and layer.bias is not None
            and (not isinstance(layer, nn.ConvTranspose3d) or layer.output_padding == (0, 0, 0)))


class HypsegVAE(nn.Module):
    """Encoder: unpadded Conv3d layers (``encoder_channels``, ``kernel_size``) + ReLU reduce a cube of
    side ``patch_size`` to one voxel; 1x1x1 convolutions give ``hidden`` features, then mu_tangent and
    sigma = softplus + 1e-5 (at most SIGMA_CEILING x prior_sigma). Being fully convolutional, a larger input gives a grid of posteriors, one
    per patch position: training inputs of side ``input_size`` give a ``latent_grid``^3 latent volume,
    and ``dense_mean`` gives the per-voxel latent field of a whole tile in one pass.

    Decoder: the latent volume -> ``hidden`` features at one voxel (GyroplaneConv3d with kernel
    latent_grid; log_0 + Conv3d; or Conv3d for the Euclidean model), ReLU, a transposed convolution
    back to the latent grid's side, the encoder's layers mirrored as unpadded transposed convolutions
    up to ``input_size``, and a linear 1x1x1 output (intensities are z-scored, hence signed): the
    intensity, and with ``texture_weight`` > 0 the channels of the texture descriptor.

    Randomness (initial weights, posterior samples) comes from generators seeded by ``config.seed``.
    """

    def __init__(self, config: HypsegConfig):
        super().__init__()
        self.config = config.validate()
        self.hyperbolic = config.geometry == "hyperbolic"
        self.curvature = float(config.curvature)
        self.latent_dim = config.latent_dim
        self.patch_size = config.patch_size
        self.input_size = config.input_size
        self.texture_channels = 0
        if config.texture_weight > 0:
            probe = torch.zeros(1, 1, *(config.input_size,) * 3)
            self.texture_channels = TEXTURE_DESCRIPTORS[config.texture_descriptor](probe).shape[1]
        self._noise_generators: dict[torch.device, torch.Generator] = {}

        channels, k, g, hidden, d = (config.encoder_channels, config.kernel_size, config.latent_grid,
                                     config.hidden, config.latent_dim)
        with torch.random.fork_rng(devices=[]):  # layers' default init must not touch the global RNG
            encoder: list[nn.Module] = []
            for c_in, c_out in zip((1, *channels[:-1]), channels):
                encoder += [nn.Conv3d(c_in, c_out, k), nn.ReLU(inplace=True)]
            encoder += [nn.Conv3d(channels[-1], hidden, 1), nn.ReLU(inplace=True)]
            self.encoder = nn.Sequential(*encoder)
            self.mu_head = nn.Conv3d(hidden, d, 1)
            self.sigma_head = nn.Conv3d(hidden, d, 1)

            if self.hyperbolic and config.gyroplane:
                self.decoder_input = GyroplaneConv3d(d, hidden, g, self.curvature)
            else:
                self.decoder_input = nn.Conv3d(d, hidden, g)
            mirrored = (*channels[::-1], channels[0])
            decoder: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose3d(hidden, mirrored[0], g), nn.ReLU()]
            for c_in, c_out in zip(mirrored[:-1], mirrored[1:]):
                decoder += [nn.ConvTranspose3d(c_in, c_out, k), nn.ReLU()]
            decoder += [nn.Conv3d(channels[0], 1 + self.texture_channels, 1)]
            self.decoder = nn.Sequential(*decoder)
        self._initialise(torch.Generator().manual_seed(config.seed))

    def _initialise(self, generator: torch.Generator) -> None:
        modules = [*self.encoder, self.mu_head, self.sigma_head, self.decoder_input, *self.decoder]
        for layer, following in zip(modules, [*modules[1:], None]):
            if isinstance(layer, GyroplaneConv3d):
                layer.reset_parameters(generator)
            elif isinstance(layer, nn.Conv3d | nn.ConvTranspose3d):
                _init_conv(layer, generator, relu=isinstance(following, nn.ReLU))

    # --- encoder -------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor, name: str = "x") -> None:
        if x.dim() != 5 or x.shape[1] != 1 or min(x.shape[2:]) < self.patch_size:
            raise ValueError(f"{name} must be (B, 1, D, H, W) with every side >= patch_size "
                             f"{self.patch_size}, got shape {tuple(x.shape)}")

    def _to_ball(self, mu_tangent: torch.Tensor) -> torch.Tensor:
        """(B, d, ...) tangent vectors at the origin -> points: exp_0 (projected) or the identity."""
        return self._to_ball_last(mu_tangent.movedim(1, -1)).movedim(-1, 1)

    def _to_ball_last(self, mu_tangent: torch.Tensor) -> torch.Tensor:
        """The same on channel-last (..., d) vectors."""
        return expmap0(mu_tangent, self.curvature) if self.hyperbolic else mu_tangent

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, D, H, W) -> posterior means mu (B, d, D-P+1, H-P+1, W-P+1), on the ball for the
        hyperbolic model, and scales sigma of the same shape."""
        self._check_input(x)
        features = self.encoder(x)
        sigma = F.softplus(self.sigma_head(features)).clamp_max(SIGMA_CEILING * self.config.prior_sigma) + SIGMA_FLOOR
        return self._to_ball(self.mu_head(features)), sigma

    def dense_mean(self, x: torch.Tensor, *, compute_dtype: torch.dtype = torch.float32,
                   stride: int = 1) -> torch.Tensor:
        """Posterior means of every `stride`-th patch position of a tile: (B, 1, D, H, W) ->
        (B, d, (D-P) // stride + 1, ...), float32. Only the last spatial convolution (and the 1x1
        layers after it) is strided, so each output is exactly the mean of its P³ window.
        `compute_dtype` other than float32 runs the convolutions under autocast (see
        device.inference_dtype); the map into the ball is always float32.

        Each ReLU runs with the convolution before it (fused on CPUs, see _convolve), the 1x1 layers
        as matrix products on channel-last features, and the map into the ball on contiguous latents
        (on a channel-strided view it was 20 times slower). The result is a channel-first view of
        channel-last memory."""
        self._check_input(x)
        layers = list(self.encoder)
        convolutions = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv3d)]
        last = max((i for i in convolutions if layers[i].kernel_size[0] > 1), default=convolutions[0])
        with torch.autocast(x.device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32):
            stages = [*layers, self.mu_head]
            for index, layer in enumerate(stages):
                if isinstance(layer, nn.ReLU):
                    continue        # every ReLU follows a convolution (see __init__) and is applied with it
                relu = index + 1 < len(stages) and isinstance(stages[index + 1], nn.ReLU)
                if index > last:
                    x = _pointwise(x, layer, relu=relu, dtype=compute_dtype)
                    continue
                x = _convolve(x, layer, stride if index == last else 1, relu=relu, dtype=compute_dtype)
                if index == last:
                    x = x.movedim(1, -1).contiguous()      # free when the convolutions ran channels-last
        return self._to_ball_last(x.float()).movedim(-1, 1)

    # --- distributions -------------------------------------------------------------------------
    def posterior(self, mu: torch.Tensor, sigma: torch.Tensor) -> WrappedNormal | DiagonalNormal:
        """q(z|x) from channel-last mu, sigma (..., d)."""
        if self.hyperbolic:
            return WrappedNormal(mu, sigma, self.curvature)
        return DiagonalNormal(mu, sigma)

    def prior(self, like: torch.Tensor) -> WrappedNormal | DiagonalNormal:
        """p(z): centred at the origin with scale ``prior_sigma``, on like's device and dtype."""
        loc = torch.zeros(self.latent_dim, dtype=like.dtype, device=like.device)
        return self.posterior(loc, torch.full_like(loc, self.config.prior_sigma))

    def _generator_for(self, device: torch.device) -> torch.Generator:
        if device not in self._noise_generators:
            self._noise_generators[device] = torch.Generator(device).manual_seed(self.config.seed)
        return self._noise_generators[device]

    # --- decoder -------------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, *, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Latent volumes z (N, d, g, g, g) (points of the ball when hyperbolic) -> reconstructions
        (N, C, input_size, input_size, input_size), float32: C = 1 (intensity), plus the channels of
        the texture descriptor (losses.TEXTURE_DESCRIPTORS) with ``texture_weight`` > 0.
        `compute_dtype` other than float32 runs the layers after the decoder's input layer under
        autocast; the input layer (the gyroplanes, in the ball) is always float32."""
        if self.hyperbolic and not isinstance(self.decoder_input, GyroplaneConv3d):
            z = logmap0(z.movedim(1, -1), self.curvature).movedim(-1, 1)
        return _run_decoder(list(self.decoder), self.decoder_input(z), compute_dtype)

    # --- objective -----------------------------------------------------------------------------
    def _centre_means(self, cubes: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The posterior means (N, d) at the centre of the latent grid of `cubes`, encoded in one pass:
        what the same-scale triplet and the invariance term compare."""
        mu, _ = self.encode(torch.cat(cubes))
        centre = self.config.latent_grid // 2
        return mu[:, :, centre, centre, centre]

    def loss(self, parent: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *,
             views: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
             pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
             generator: torch.Generator | None = None,
             compute_dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The training objective on a batch of triplets, each (B, 1, S, S, S) with S = input_size.

        Scaling: every ELBO term is per patch -- the reconstruction NLL summed over the S^3 voxels, the
        KL (log q - log p over ``n_samples`` samples) summed over latent dims and grid voxels -- then
        averaged over samples and over all 3B patches; the triplet term is averaged over the B
        triplets. So losses do not grow with the batch size.
            total = recon + kl_weight * kl + triplet_weight * triplet + texture_weight * texture
                    + view_weight * view + invariance_weight * invariance
        (triplet only if config.triplet; texture, half the squared error of the reconstructed local
        texture amplitude summed over voxels (losses.texture_error), only if texture_weight > 0;
        view, the same triplet loss on the same-scale cubes `views` (TripletSampler.sample_views),
        only if view_weight > 0 and views are given; invariance, losses.vicreg on the tangent vectors
        at the origin of the two views' means `pairs` (TripletSampler.sample_pairs), only if
        invariance_weight > 0 and pairs are given)
        The released code summed the parent patches' ELBO over a batch of 128 and added 1e3 x the
        batch-mean triplet; divided by the batch size, that is triplet_weight = 1e3 / 128 ~ 7.8 here
        (for 10^3-voxel patches; the recon term grows with S^3). triplet_weight = 1e3 weighs the
        triplet ~128x more than the paper did.

        Returns scalar tensors: "total" (to minimise), "recon", "kl", "triplet" (reported, detached,
        when the triplet is off), "texture", "view" and "invariance" (0 when off) and "elbo" = recon + kl, the
        negative ELBO in nats per patch.
        Noise comes from ``generator`` if given, else from the model's own generator for the device.
        `compute_dtype` other than float32 (e.g. bfloat16, see device.training_dtype) runs the decoder's
        convolutions under autocast (decode); everything else stays float32.
        """
        cfg = self.config
        for name, t in (("parent", parent), ("positive", positive), ("negative", negative)):
            if t.dim() != 5 or t.shape[1] != 1 or tuple(t.shape[2:]) != (self.input_size,) * 3:
                raise ValueError(f"{name} must be (B, 1, {self.input_size}, {self.input_size}, "
                                 f"{self.input_size}) (config.input_size), got {tuple(t.shape)}")
        batch = parent.shape[0]
        x = torch.cat([parent, positive, negative])
        mu, sigma = self.encode(x)  # (3B, d, g, g, g)
        generator = generator if generator is not None else self._generator_for(x.device)
        z, kl = monte_carlo_kl(self.posterior(mu.movedim(1, -1), sigma.movedim(1, -1)), self.prior(mu),
                               cfg.n_samples, generator)  # z (K, 3B, g, g, g, d), kl (K, 3B, g, g, g)
        reconstruction = self.decode(z.flatten(0, 1).movedim(-1, 1), compute_dtype=compute_dtype).unflatten(0, (cfg.n_samples, x.shape[0]))
        target = standardised_patches(x) if cfg.reconstruction_target == "normalised" else x
        recon = gaussian_nll(target, reconstruction[:, :, :1]).mean()
        if cfg.texture_weight > 0:
            texture = texture_error(x, reconstruction[:, :, 1:], cfg.texture_descriptor).mean()
        else:
            texture = torch.zeros((), device=x.device)
        kl = kl.flatten(start_dim=2).sum(-1).mean()

        centre = cfg.latent_grid // 2
        means = mu[:, :, centre, centre, centre]
        curvature = self.curvature if self.hyperbolic else None
        triplet = hierarchical_triplet(*means.split(batch), margin=cfg.triplet_margin, curvature=curvature)
        total = recon + cfg.kl_weight * kl + cfg.texture_weight * texture
        if cfg.triplet:
            total = total + cfg.triplet_weight * triplet
        else:
            triplet = triplet.detach()
        view = torch.zeros((), device=x.device)
        if cfg.view_weight > 0 and views is not None:
            view = hierarchical_triplet(*self._centre_means(views).split(len(views[0])),
                                        margin=cfg.triplet_margin, curvature=curvature)
            total = total + cfg.view_weight * view
        invariance = torch.zeros((), device=x.device)
        if cfg.invariance_weight > 0 and pairs is not None:
            tangent = self._centre_means(pairs)
            if self.hyperbolic:
                tangent = logmap0(tangent, self.curvature)
            invariance = vicreg(*tangent.split(len(pairs[0])), target_std=cfg.prior_sigma)
            total = total + cfg.invariance_weight * invariance
        return {"total": total, "recon": recon, "kl": kl, "triplet": triplet, "texture": texture, "view": view,
                "invariance": invariance, "elbo": recon + kl}
