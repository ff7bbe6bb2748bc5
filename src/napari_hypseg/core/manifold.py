"""The Poincaré ball of curvature -c and the distributions the VAE places on it.

Points live in the ball {x : c|x|^2 < 1} with metric lambda_x^2 I, lambda_x = 2 / (1 - c|x|^2).
The gyrovector operations come from geoopt's stereographic math (the curvature of geoopt's
``PoincareBall(c)`` is k = -c); every helper takes the curvature explicitly and builds k in the
dtype of its input, so float64 checks are exact and c is never rounded through geoopt's softplus.
Points are clamped to norm (1 - 1e-5)/sqrt(c) (geoopt's float32 default, 4e-3, would cut off a
tenth of the ball's radius in hyperbolic distance).

Tangent vectors are ambient vectors; a tangent vector u at x has Riemannian norm lambda_x |u|.
The wrapped normal takes its scale sigma in orthonormal coordinates of the tangent space at the
origin, so d(mu, z) = |v| for a sample built from v ~ N(0, diag sigma^2).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from geoopt.manifolds import PoincareBall
from geoopt.manifolds.stereographic import math as gmath

from .errors import ConfigError
from .validation import finite_points, real

BOUNDARY_EPS = 1e-5
"""Points are kept at norm <= (1 - BOUNDARY_EPS) / sqrt(c)."""

_LOG_2PI = math.log(2.0 * math.pi)


def _same_arithmetic_every_call(function):
    """Run geoopt's TorchScript functions unoptimised. The TorchScript executor re-plans a function
    after its first calls (its gradients then differ in the last bits), so otherwise the first
    training of a process would differ from the next ones with the same seed."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with torch.jit.optimized_execution(False):   # thread-local: set on every call
            return function(*args, **kwargs)

    return wrapper


def ball(curvature: float = 1.0) -> PoincareBall:
    """geoopt's manifold object, for code that wants geoopt's own API (e.g. Riemannian optimisers)."""
    return PoincareBall(c=curvature)


def _k(curvature: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(-float(curvature), dtype=like.dtype, device=like.device)


def project(x: torch.Tensor, curvature: float = 1.0, eps: float = BOUNDARY_EPS) -> torch.Tensor:
    """Pull points (last dim) back inside the ball, to norm at most (1 - eps)/sqrt(c)."""
    max_norm = (1.0 - eps) / math.sqrt(curvature)
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-15)
    return torch.where(norm > max_norm, x * (max_norm / norm), x)


def conformal_factor(x: torch.Tensor, curvature: float = 1.0, keepdim: bool = False) -> torch.Tensor:
    """lambda_x = 2 / (1 - c|x|^2)."""
    x2 = x.pow(2).sum(dim=-1, keepdim=keepdim)
    return 2.0 / (1.0 - curvature * x2).clamp_min(1e-15)


@_same_arithmetic_every_call
def mobius_add(x: torch.Tensor, y: torch.Tensor, curvature: float = 1.0) -> torch.Tensor:
    return gmath.mobius_add(x, y, k=_k(curvature, x))


@_same_arithmetic_every_call
def expmap0(u: torch.Tensor, curvature: float = 1.0) -> torch.Tensor:
    """exp_0(u) = tanh(sqrt(c)|u|) u / (sqrt(c)|u|), projected into the ball."""
    return project(gmath.expmap0(u, k=_k(curvature, u)), curvature)


@_same_arithmetic_every_call
def logmap0(x: torch.Tensor, curvature: float = 1.0) -> torch.Tensor:
    return gmath.logmap0(x, k=_k(curvature, x))


@_same_arithmetic_every_call
def expmap(x: torch.Tensor, u: torch.Tensor, curvature: float = 1.0) -> torch.Tensor:
    """exp_x(u), projected into the ball."""
    return project(gmath.expmap(x, u, k=_k(curvature, x)), curvature)


@_same_arithmetic_every_call
def logmap(x: torch.Tensor, y: torch.Tensor, curvature: float = 1.0) -> torch.Tensor:
    return gmath.logmap(x, y, k=_k(curvature, x))


def dist(x: torch.Tensor, y: torch.Tensor, curvature: float = 1.0, keepdim: bool = False) -> torch.Tensor:
    """Geodesic distance (2/sqrt(c)) artanh(sqrt(c)|(-x) + y|), evaluated in its equivalent form
    (2/sqrt(c)) asinh(sqrt(c)|x - y| / sqrt((1 - c|x|^2)(1 - c|y|^2))), which has no cancellation for
    nearby points in float32 and a finite gradient of d^2 at x = y."""
    sqrt_c = math.sqrt(curvature)
    diff = (x - y).norm(dim=-1, keepdim=keepdim)
    gap_x = (1.0 - curvature * x.pow(2).sum(dim=-1, keepdim=keepdim)).clamp_min(1e-15)
    gap_y = (1.0 - curvature * y.pow(2).sum(dim=-1, keepdim=keepdim)).clamp_min(1e-15)
    return (2.0 / sqrt_c) * torch.asinh(sqrt_c * diff / (gap_x * gap_y).sqrt())


def log_sinhc(x: torch.Tensor) -> torch.Tensor:
    """log(sinh(x)/x) for x >= 0, stable at 0 (series) and for large x (no sinh overflow)."""
    small = x < 0.1
    xs = torch.where(small, torch.ones_like(x), x)
    large_branch = xs + torch.log1p(-torch.exp(-2.0 * xs)) - math.log(2.0) - torch.log(xs)
    x2 = x * x
    series = x2 * (1.0 / 6.0 - x2 * (1.0 / 180.0 - x2 / 2835.0))
    return torch.where(small, series, large_branch)


def _normal_noise(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def _standard_log_density(eps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(scale*eps; 0, diag scale^2), summed over the last dim."""
    d = eps.shape[-1]
    return -0.5 * eps.pow(2).sum(-1) - scale.log().sum(-1) - 0.5 * d * _LOG_2PI


class WrappedNormal:
    """Normal N(0, diag scale^2) in the tangent space at the origin, transported to ``loc`` and
    pushed onto the ball by exp_loc (Mathieu et al. 2019; Nagano et al. 2019).

    ``loc`` (..., d) on the ball, ``scale`` (..., d) > 0, broadcastable. Densities are with respect to
    the Riemannian volume lambda_x^d dx:
        log q(z) = log N(lambda_loc log_loc(z); 0, scale) - (d-1) log(sinh(sqrt(c) r) / (sqrt(c) r)),
    r = d(loc, z): the second term is the volume change of exp in curvature -c.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, curvature: float = 1.0):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.curvature = float(curvature)

    def _push(self, v: torch.Tensor) -> torch.Tensor:
        """Tangent vector at 0 in orthonormal coordinates -> point: transport (an ambient rescaling
        by 1/lambda_loc of the orthonormal coordinates) then exp_loc."""
        lam = conformal_factor(self.loc, self.curvature, keepdim=True)
        return expmap(self.loc.expand_as(v), v / lam, self.curvature)

    def _log_density_of_tangent(self, eps: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        d = eps.shape[-1]
        return (_standard_log_density(eps, self.scale)
                - (d - 1) * log_sinhc(math.sqrt(self.curvature) * radius))

    def rsample(self, sample_shape=(), generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised samples, shape sample_shape + loc.shape."""
        return self.rsample_with_log_prob(sample_shape, generator)[0]

    def rsample_with_log_prob(self, sample_shape=(), generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples and their log-density, the latter from the tangent noise directly: equal to
        log_prob(sample) but without the float32 round trip through log_loc near the boundary."""
        shape = torch.Size(sample_shape) + self.loc.shape
        eps = _normal_noise(shape, self.loc, generator)
        v = self.scale * eps
        z = self._push(v)
        return z, self._log_density_of_tangent(eps, v.norm(dim=-1))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of points z (..., d), summed over the last dim."""
        c = self.curvature
        sqrt_c = math.sqrt(c)
        w = mobius_add(-self.loc, z, c)
        w_norm = w.norm(dim=-1, keepdim=True)
        radius = (2.0 / sqrt_c) * torch.atanh((sqrt_c * w_norm).clamp_max(1.0 - 1e-7))
        v = radius * w / w_norm.clamp_min(1e-15)  # = lambda_loc log_loc(z), transported to 0
        return self._log_density_of_tangent(v / self.scale, radius.squeeze(-1))


class DiagonalNormal:
    """The Euclidean counterpart of WrappedNormal, with the same interface, so the Euclidean VAE
    runs the same code path."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)

    def rsample(self, sample_shape=(), generator: torch.Generator | None = None) -> torch.Tensor:
        return self.rsample_with_log_prob(sample_shape, generator)[0]

    def rsample_with_log_prob(self, sample_shape=(), generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = torch.Size(sample_shape) + self.loc.shape
        eps = _normal_noise(shape, self.loc, generator)
        return self.loc + self.scale * eps, _standard_log_density(eps, self.scale)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return _standard_log_density((z - self.loc) / self.scale, self.scale)


# --- Fréchet means (points scaled into the unit ball: curvature 1; callers scale by sqrt(c)) ------


def to_unit_ball(points: np.ndarray, curvature: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Points (N, d) of the ball of curvature c as float64 points of the unit ball, pulled just
    inside its boundary; points outside the ball are a ConfigError."""
    # A float64 copy: the input may be read-only (a memory map), which torch will not wrap.
    x = torch.from_numpy(np.array(points, dtype=np.float64)).to(device) * math.sqrt(curvature)
    norm = x.norm(dim=-1, keepdim=True)
    if x.numel() and float(norm.max()) > 1.0 + 1e-6:
        raise ConfigError(
            f"points lie outside the Poincaré ball of curvature {curvature:g}: largest norm "
            f"{float(norm.max()) / math.sqrt(curvature):.6g} > 1/sqrt(c) = {1 / math.sqrt(curvature):.6g}; "
            "were they produced by a hyperbolic model with this curvature?")
    return project(x)


def augment(x: torch.Tensor) -> torch.Tensor:
    """[x, |x|², 1]: turns the assignment score into one matrix product."""
    x_sq = (x * x).sum(1, keepdim=True)
    return torch.cat([x, x_sq, torch.ones_like(x_sq)], 1)


def frechet_step(x_aug, weights, groups, mean, y):
    """One fixed-point step of the weighted Fréchet means of groups of unit-ball points (Lou et al. 2020).

    x_aug = [x, |x|², 1] (N, d+2), weights (N,) or None, groups (N,) in 0..G-1, mean (G, d),
    y_l = |x_l - m|² / ((1 - |x_l|²)(1 - |m|²)) for each point's group mean m. With
    g(y) = 2 acosh(1 + 2y) / sqrt(y² + y) = 4 asinh(√y) / sqrt(y (1 + y)), α_l = w_l g(y_l) / (1 - |x_l|²),
    a = Σα, b = Σα x, c = Σα |x|²:  m <- (a + c - sqrt((a + c)² - 4|b|²)) / (2|b|²) · b,
    written as 2 b / (a + c + sqrt(...)) to be stable as b -> 0. Groups without weight keep their mean.
    Returns the new means and each group's total weight a.
    """
    d = mean.shape[1]
    u = torch.sqrt(y)
    root = torch.sqrt(1.0 + y)
    # asinh(u) = log1p(u + u² / (1 + sqrt(1 + u²))); g -> 4 as y -> 0.
    g = torch.where(u > 1e-8, 4.0 * torch.log1p(u + y / (1.0 + root)) / (u * root).clamp_min(1e-300), 4.0)
    alpha = g / (1.0 - x_aug[:, -2])
    if weights is not None:
        alpha = alpha * weights
    sums = torch.zeros(len(mean), d + 2, dtype=x_aug.dtype, device=x_aug.device).index_add_(
        0, groups, alpha[:, None] * x_aug)
    b, c, a = sums[:, :d], sums[:, d], sums[:, d + 1]
    total = a + c
    root_term = torch.sqrt((total * total - 4.0 * (b * b).sum(1)).clamp_min(0.0))
    has_weight = a > 0
    updated = torch.where(has_weight[:, None], 2.0 * b / torch.where(has_weight, total + root_term, 1.0)[:, None], mean)
    return project(updated), a


def frechet_fixed_point(x_aug, weights, groups, init, *, max_iter, tol):
    """Iterate frechet_step from init until no mean moves more than tol (unit ball) or max_iter steps."""
    d = init.shape[1]
    x, one_minus_x_sq = x_aug[:, :d], 1.0 - x_aug[:, -2]
    mean = init
    for _ in range(max_iter):
        m = mean[groups]
        y = ((x - m) ** 2).sum(1) / (one_minus_x_sq * (1.0 - (m * m).sum(1)))
        updated, _ = frechet_step(x_aug, weights, groups, mean, y)
        shift = float((updated - mean).norm(dim=1).max())
        mean = updated
        if shift <= tol:
            break
    return mean


def frechet_mean(points, weights=None, *, curvature: float = 1.0) -> np.ndarray:
    """Weighted Fréchet (Karcher) mean of points (N, d) of the Poincaré ball of curvature c.

    It minimises Σ w_i d(m, x_i)², the hyperbolic counterpart of the weighted average; used for the
    centroids of merged groups of clusters.
    """
    curvature = real("curvature", curvature, positive=True)
    points = finite_points(points, "points")
    if len(points) == 0:
        raise ConfigError("the Fréchet mean needs at least one point")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(points),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ConfigError("weights must be one finite, non-negative number per point, not all zero")
        w = torch.as_tensor(w)
    x = to_unit_ball(points, curvature)
    # Start from the (weighted) Euclidean average: inside the ball and close to the answer.
    start = (x * (w / w.sum())[:, None] if w is not None else x / len(x)).sum(0, keepdim=True)
    groups = torch.zeros(len(x), dtype=torch.long)
    mean = frechet_fixed_point(augment(x), w, groups, start, max_iter=1000, tol=1e-13)
    return (mean[0] / math.sqrt(curvature)).numpy()
