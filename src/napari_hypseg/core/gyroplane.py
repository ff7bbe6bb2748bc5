"""Gyroplanes: the hyperbolic counterpart of a linear layer (Ganea et al. 2018, hyperbolic MLR).

A gyroplane H_{a,p} = {x : <(-p) + x, a> = 0} (Möbius +) has offset p in the ball and normal a in
T_p. A unit's response to a point z is its signed distance to the gyroplane, scaled by the
Riemannian norm of the normal:
    f_{a,p}(z) = sign(<w, a>) |a|_p d(z, H),   w = (-p) + z,   |a|_p = lambda_p |a|,
    d(z, H) = (1/sqrt(c)) asinh(2 sqrt(c) |<w, a>| / ((1 - c|w|^2) |a|)).
With 1 - c|w|^2 = (1 - c|p|^2)(1 - c|z|^2) / D and w = num / D (Möbius addition), D cancels and
    f = (lambda_p |a| / sqrt(c)) asinh(2 sqrt(c) [(1 - c|p|^2)<z,â> - (1 - 2c<p,z> + c|z|^2)<p,â>]
                                         / ((1 - c|p|^2)(1 - c|z|^2))),
so all units see a point through two inner products, <z, p> and <z, â>: one matrix product for a
whole bank of gyroplanes, no Möbius addition per (point, unit) pair.

Parameters are plain Euclidean tensors (checkpoints load with weights_only=True, plain Adam
optimises them): p = exp_0(p_tangent), and a = (lambda_0 / lambda_p) a_tangent is a_tangent
parallel-transported from the origin to p, so |a|_p = 2 |a_tangent| whatever p is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .manifold import conformal_factor, expmap0


def gyroplane_responses(points: torch.Tensor, offsets: torch.Tensor, normals: torch.Tensor,
                        curvature: float = 1.0) -> torch.Tensor:
    """f_{a,p}(z) for points (..., O, d) against O banks of J gyroplanes each: offsets p (O, J, d) in
    the ball and normals a (O, J, d) in T_p (ambient coordinates). Returns (..., O, J); point i of
    the O axis meets bank i only (a convolution's kernel offsets, or O = 1 for a plain layer)."""
    c = curvature
    sqrt_c = math.sqrt(c)
    n_planes = offsets.shape[1]
    a_norm = normals.norm(dim=-1).clamp_min(1e-15)  # (O, J)
    a_unit = normals / a_norm.unsqueeze(-1)
    p2 = offsets.pow(2).sum(-1)  # (O, J)
    pa = (offsets * a_unit).sum(-1)
    p_gap = (1.0 - c * p2).clamp_min(1e-15)
    scale = 2.0 / p_gap * a_norm / sqrt_c  # lambda_p |a| / sqrt(c)

    both = torch.einsum("...od,ojd->...oj", points, torch.cat([offsets, a_unit], dim=1))
    pz, za = both[..., :n_planes], both[..., n_planes:]
    z2 = points.pow(2).sum(-1, keepdim=True)  # (..., O, 1)
    z_gap = (1.0 - c * z2).clamp_min(1e-15)
    numerator = p_gap * za - (1.0 - 2.0 * c * pz + c * z2) * pa
    return scale * torch.asinh(2.0 * sqrt_c * numerator / (p_gap * z_gap))


class _GyroplaneBanks(nn.Module):
    """O banks of J gyroplanes, stored as Euclidean tangent parameters at the origin."""

    def __init__(self, in_dim: int, out_planes: int, n_banks: int, curvature: float):
        super().__init__()
        self.in_dim, self.out_planes, self.curvature = in_dim, out_planes, float(curvature)
        self.p_tangent = nn.Parameter(torch.empty(n_banks, out_planes, in_dim))
        self.a_tangent = nn.Parameter(torch.empty(n_banks, out_planes, in_dim))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Near the origin with p = 0, f(z) ~ 4 <z, a_tangent>: a linear unit of weight 4 a_tangent,
        so a_tangent gets He-uniform bounds / 4 (ReLU follows); offsets start close to the origin."""
        fan_in = self.a_tangent.shape[0] * self.in_dim
        bound = math.sqrt(6.0 / fan_in) / 4.0
        with torch.no_grad():
            self.a_tangent.uniform_(-bound, bound, generator=generator)
            self.p_tangent.normal_(0.0, 0.05 / math.sqrt(self.curvature), generator=generator)

    @property
    def offsets(self) -> torch.Tensor:
        """p (O, J, d), in the ball."""
        return expmap0(self.p_tangent, self.curvature)

    @property
    def normals(self) -> torch.Tensor:
        """a (O, J, d) in T_p: a_tangent transported from the origin, lambda_0 / lambda_p = 2 / lambda_p."""
        p = self.offsets
        return self.a_tangent * (2.0 / conformal_factor(p, self.curvature, keepdim=True))

    def responses(self, points: torch.Tensor) -> torch.Tensor:
        return gyroplane_responses(points, self.offsets, self.normals, self.curvature)


class Gyroplane(_GyroplaneBanks):
    """Hyperbolic MLR layer: (..., in_dim) points of the ball -> (..., out_planes) responses."""

    def __init__(self, in_dim: int, out_planes: int, curvature: float = 1.0, *,
                 generator: torch.Generator | None = None):
        super().__init__(in_dim, out_planes, 1, curvature)
        self.reset_parameters(generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.responses(z.unsqueeze(-2)).squeeze(-2)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_planes={self.out_planes}, curvature={self.curvature}"


class GyroplaneConv3d(_GyroplaneBanks):
    """3D convolution over a latent volume (B, d, D, H, W) whose voxels are points of the ball.

    Each of the k^3 kernel offsets (C order: depth, height, width) has its own bank of
    ``out_channels`` gyroplanes; the output at a voxel is the sum of the responses of its
    neighbours to their offset's bank, plus a bias. Padding adds origin points (zeros).
    Memory: B * (output voxels) * k^3 * out_channels values, the same as an unfolded convolution.
    """

    def __init__(self, in_dim: int, out_channels: int, kernel_size: int, curvature: float = 1.0,
                 padding: int = 0, *, generator: torch.Generator | None = None):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        super().__init__(in_dim, out_channels, kernel_size**3, curvature)
        self.kernel_size, self.padding = kernel_size, padding
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        bound = 1.0 / math.sqrt(self.a_tangent.shape[0] * self.in_dim)
        with torch.no_grad():
            self.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, pad = self.kernel_size, self.padding
        if pad:
            x = F.pad(x, (pad,) * 6)
        batch, dim = x.shape[:2]
        patches = x.unfold(2, k, 1).unfold(3, k, 1).unfold(4, k, 1)  # (B, d, D', H', W', k, k, k)
        out_shape = patches.shape[2:5]
        patches = patches.permute(0, 2, 3, 4, 5, 6, 7, 1).reshape(batch, -1, k**3, dim)
        out = self.responses(patches).sum(-2) + self.bias  # (B, L, J)
        return out.transpose(1, 2).reshape(batch, self.out_planes, *out_shape)

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, out_channels={self.out_planes}, kernel_size={self.kernel_size}, "
                f"curvature={self.curvature}, padding={self.padding}")
