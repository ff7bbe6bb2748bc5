"""The terms of the objective (method.md §4): reconstruction likelihood, Monte-Carlo KL, and the
hierarchical triplet loss. Each returns per-item values or a batch mean as documented; the model
decides how they are weighted (HypsegVAE.loss)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .manifold import DiagonalNormal, WrappedNormal, dist

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """-log N(x; reconstruction, I) summed over each patch's voxels.

    x (N, C, D, H, W); reconstruction (..., N, C, D, H, W) (e.g. one per posterior sample).
    Returns (..., N) in nats per patch: intensities are z-scored, so a unit-variance Gaussian is
    the natural likelihood, and summing over voxels keeps the KL on the scale of a true ELBO."""
    return _half_squared_error(x, reconstruction) + 0.5 * x[0].numel() * _LOG_2PI


def standardised_patches(x: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Each patch of x (N, C, D, H, W) minus its mean, over its spread (+ eps, so a flat patch stays
    near 0 rather than amplifying rounding): the config's "normalised" reconstruction target."""
    per_patch = tuple(range(1, x.dim()))
    return (x - x.mean(per_patch, keepdim=True)) / (x.std(per_patch, keepdim=True) + eps)


def _half_squared_error(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """0.5 * sum over each patch's voxels of (reconstruction - x)^2: x (N, C, D, H, W),
    reconstruction (..., N, C, D, H, W) -> (..., N)."""
    squared = (reconstruction - x).pow(2).flatten(start_dim=reconstruction.dim() - x.dim() + 1)
    return 0.5 * squared.sum(-1)


def _box_mean(v: torch.Tensor) -> torch.Tensor:
    """Mean over each voxel's 3³ neighbourhood, edges replicated: (N, C, D, H, W) -> same shape."""
    return F.avg_pool3d(F.pad(v, (1,) * 6, mode="replicate"), 3, stride=1)


def local_texture(x: torch.Tensor) -> torch.Tensor:
    """Local texture amplitude of patches x (N, 1, D, H, W), same shape: the root mean square, over
    each voxel's 3³ neighbourhood, of the high-pass part x - (3³ box mean of x); edges replicated.

    Unlike the intensity of a random-phase texture, this amplitude is smooth and predictable from a
    summary of the patch, so reconstructing it makes the latent encode how textured a region is."""
    return _box_mean((x - _box_mean(x)).pow(2)).clamp_min(1e-12).sqrt()


def oriented_texture(x: torch.Tensor) -> torch.Tensor:
    """A contrast-normalised texture descriptor of patches x (N, 1, D, H, W) -> (N, 4, D, H, W):
    the local texture amplitude (local_texture), then the share of the local gradient energy along
    z, y and x (3³ box means of the squared central differences, divided by their sum).

    The shares are blind to brightness and to contrast, as the gradient histograms MaskFeat
    reconstructs are: they tell striped textures of different orientations apart (and isotropic
    ones from striped ones), which neither the mean intensity nor the amplitude does."""
    padded = F.pad(x, (1,) * 6, mode="replicate")
    core = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))

    def central_difference(axis: int) -> torch.Tensor:
        ahead = [slice(None), slice(None), *core[2:]]
        behind = list(ahead)
        ahead[axis + 2], behind[axis + 2] = slice(2, None), slice(None, -2)
        return 0.5 * (padded[tuple(ahead)] - padded[tuple(behind)])

    energy = torch.cat([_box_mean(central_difference(axis).pow(2)) for axis in range(3)], dim=1)
    shares = energy / energy.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([local_texture(x), shares], dim=1)


TEXTURE_DESCRIPTORS = {"amplitude": local_texture, "oriented": oriented_texture}
"""Name -> function(x) giving the texture target the decoder reconstructs (config.texture_descriptor)."""


def texture_error(x: torch.Tensor, reconstruction: torch.Tensor, descriptor: str = "amplitude") -> torch.Tensor:
    """Half the squared error of `reconstruction` (..., N, C, D, H, W) against x's texture
    descriptor (TEXTURE_DESCRIPTORS), summed over each patch's voxels and channels: (..., N).
    (gaussian_nll without its constant, which would only shift the reported total by texture_weight
    times it.)"""
    return _half_squared_error(TEXTURE_DESCRIPTORS[descriptor](x), reconstruction)


def monte_carlo_kl(posterior: WrappedNormal | DiagonalNormal, prior: WrappedNormal | DiagonalNormal,
                   n_samples: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised samples z (K, ..., d) of the posterior and the single-sample KL estimates
    log q(z|x) - log p(z), shape (K, ...). The wrapped normal has no closed-form KL; the estimate is
    unbiased and its gradient is the usual path derivative."""
    z, log_q = posterior.rsample_with_log_prob((n_samples,), generator)
    return z, log_q - prior.log_prob(z)


def hierarchical_triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *,
                         margin: float, curvature: float | None) -> torch.Tensor:
    """mean ReLU(d(anchor, positive)^2 - d(anchor, negative)^2 + margin) over the batch.

    anchor/positive/negative (N, d): posterior means of a parent patch, a sub-patch of it, and a
    patch from elsewhere. d is the Poincaré distance of curvature -c, or the Euclidean distance
    when curvature is None (the Euclidean VAE). Squared distances, as in the released code."""
    if curvature is None:
        d_pos = (anchor - positive).pow(2).sum(-1)
        d_neg = (anchor - negative).pow(2).sum(-1)
    else:
        d_pos = dist(anchor, positive, curvature).pow(2)
        d_neg = dist(anchor, negative, curvature).pow(2)
    return torch.relu(d_pos - d_neg + margin).mean()


def vicreg(a: torch.Tensor, b: torch.Tensor, *, target_std: float = 1.0, covariance_weight: float = 0.04) -> torch.Tensor:
    """Variance-invariance-covariance loss of two views' embeddings a, b (N, d) (Bardes et al., 2022).

    invariance: mean squared distance between paired embeddings; variance: hinge on each dimension's
    standard deviation over the batch, below target_std; covariance: the squared off-diagonal
    covariances over d. Invariance alone is minimised by one point for every input; the other two
    keep the embeddings spread and their dimensions decorrelated. The weights 1 : 1 : 0.04 are the
    paper's 25 : 25 : 1."""
    invariance = (a - b).pow(2).sum(-1).mean()
    variance = a.new_zeros(())
    covariance = a.new_zeros(())
    dims = a.shape[-1]
    for z in (a, b):
        std = torch.sqrt(z.var(dim=0) + 1e-4)
        variance = variance + torch.relu(target_std - std).mean()
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / max(len(z) - 1, 1)
        covariance = covariance + (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / dims
    return invariance + variance + covariance_weight * covariance
