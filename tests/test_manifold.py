"""Poincaré-ball helpers and the wrapped normal, checked against independent computations:
quadrature of the density over the disk, the small-scale Euclidean limit, the radial law of the
samples, and the agreement of samples with log_prob."""

import math

import pytest
import torch
from geoopt.manifolds.stereographic import math as gmath
from scipy import stats

from napari_hypseg.core.manifold import (
    DiagonalNormal,
    WrappedNormal,
    ball,
    conformal_factor,
    dist,
    expmap,
    expmap0,
    log_sinhc,
    logmap,
    logmap0,
    mobius_add,
    project,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def random_points(n, d, curvature, seed, max_radius=0.9):
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=F64), dim=-1)
    radius = max_radius * torch.rand(n, 1, generator=g, dtype=F64) / math.sqrt(curvature)
    return direction * radius


@pytest.mark.parametrize("c", [1.0, 0.3, 2.5])
def test_ball_helpers_agree_with_the_definitions(c):
    x, y = random_points(50, 3, c, 0), random_points(50, 3, c, 1)
    # distance: our asinh form against geoopt's artanh form and against the artanh definition
    k = torch.tensor(-c, dtype=F64)
    torch.testing.assert_close(dist(x, y, c), gmath.dist(x, y, k=k))
    w = mobius_add(-x, y, c)
    torch.testing.assert_close(dist(x, y, c), 2 / math.sqrt(c) * torch.atanh(math.sqrt(c) * w.norm(dim=-1)))
    torch.testing.assert_close(dist(torch.zeros_like(y), y, c),
                               2 / math.sqrt(c) * torch.atanh(math.sqrt(c) * y.norm(dim=-1)))
    # exp/log are inverse, and exp_0 of u travels lambda_0 |u| = 2|u|
    torch.testing.assert_close(expmap0(logmap0(y, c), c), y)
    torch.testing.assert_close(expmap(x, logmap(x, y, c), c), y)
    u = 0.3 * torch.randn(50, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(dist(torch.zeros_like(u), expmap0(u, c), c), 2 * u.norm(dim=-1))
    torch.testing.assert_close(conformal_factor(x, c), 2 / (1 - c * x.pow(2).sum(-1)))
    assert ball(c).c.item() == pytest.approx(c)


def test_project_keeps_points_inside_and_leaves_inner_points_alone():
    c = 2.0
    x = torch.tensor([[10.0, 0.0], [0.1, 0.2], [0.0, 0.0]])
    p = project(x, c)
    assert p[0].norm() == pytest.approx((1 - 1e-5) / math.sqrt(c), rel=1e-6)
    assert torch.equal(p[1:], x[1:])
    assert torch.isfinite(expmap0(torch.full((2,), 1e6), c)).all()


def test_float32_distance_of_nearby_points_near_the_boundary():
    x64 = torch.tensor([0.999, 0.0], dtype=F64)
    y64 = torch.tensor([0.999, 1e-4], dtype=F64)
    truth = dist(x64, y64)
    assert dist(x64.float(), y64.float()).item() == pytest.approx(truth.item(), rel=1e-3)
    # and the gradient of the squared distance at coincident points is finite
    x = torch.tensor([0.5, 0.5], requires_grad=True)
    dist(x, x.detach()).pow(2).backward()
    assert torch.isfinite(x.grad).all()


def test_log_sinhc_is_accurate_and_stable():
    x = torch.cat([torch.zeros(1, dtype=F64), torch.logspace(-6, math.log10(60), 400, dtype=F64)])
    reference = torch.where(x < 1e-3, x**2 / 6, torch.log(torch.sinh(x) / x))
    torch.testing.assert_close(log_sinhc(x), reference, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(log_sinhc(x.float()), reference.float(), rtol=1e-4, atol=1e-6)
    assert torch.isfinite(log_sinhc(torch.tensor([1e4]))).all()
    x = torch.zeros(3, requires_grad=True)
    log_sinhc(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(3))


def disk_quadrature(c, reach, n_radial=2500, n_angular=400):
    """Nodes and weights for integrals over the Poincaré disk against the Riemannian area
    lambda_x^2 dx: polar coordinates rho = tanh(sqrt(c) t / 2)/sqrt(c), t the hyperbolic distance to
    the origin (midpoint rule in t up to ``reach``, uniform in the angle)."""
    sqrt_c = math.sqrt(c)
    dt, dtheta = reach / n_radial, 2 * math.pi / n_angular
    t = (torch.arange(n_radial, dtype=F64) + 0.5) * dt
    theta = torch.arange(n_angular, dtype=F64) * dtheta
    rho = torch.tanh(sqrt_c * t / 2) / sqrt_c
    drho_dt = 0.5 / torch.cosh(sqrt_c * t / 2) ** 2
    lam = 2 / (1 - c * rho**2)
    weight_radial = lam**2 * rho * drho_dt * dt * dtheta  # lambda^2 * (rho d rho d theta)
    points = torch.stack([rho[:, None] * torch.cos(theta), rho[:, None] * torch.sin(theta)], dim=-1)
    return points.reshape(-1, 2), weight_radial[:, None].expand(n_radial, n_angular).reshape(-1)


@pytest.mark.parametrize("c", [1.0, 2.5])
def test_wrapped_normal_density_integrates_to_one_and_samples_match_it(c):
    loc = torch.tensor([0.35, -0.25], dtype=F64) / math.sqrt(c)
    scale = torch.tensor([0.45, 0.8], dtype=F64)
    q = WrappedNormal(loc, scale, c)
    reach = dist(torch.zeros(2, dtype=F64), loc, c).item() + 10 * scale.max().item()
    points, weights = disk_quadrature(c, reach)
    log_q = q.log_prob(points)
    density = log_q.exp()
    assert (density * weights).sum().item() == pytest.approx(1.0, abs=2e-5)

    # the samples' average log-density is minus the entropy found by quadrature
    entropy = -(density * log_q * weights).sum().item()
    samples = q.rsample((20000,), generator=torch.Generator().manual_seed(0))
    sample_log_q = q.log_prob(samples)
    stderr = sample_log_q.std().item() / math.sqrt(len(sample_log_q))
    assert -sample_log_q.mean().item() == pytest.approx(entropy, abs=4 * stderr)
    # and the probability of a half-disk matches the fraction of samples in it
    inside = points[:, 0] > loc[0]
    assert (samples[:, 0] > loc[0]).double().mean().item() == pytest.approx(
        (density * weights)[inside].sum().item(), abs=0.015)


@pytest.mark.parametrize("c", [1.0, 0.4])
def test_small_scale_limit_is_a_euclidean_normal(c):
    """For sigma -> 0 the wrapped normal is the normal N(loc, (sigma/lambda_loc)^2 I) in ball
    coordinates: its Lebesgue density is the Riemannian one times lambda_z^d."""
    sigma = 1e-3
    for loc in (torch.zeros(3, dtype=F64), torch.tensor([0.2, -0.1, 0.3], dtype=F64) / math.sqrt(c)):
        q = WrappedNormal(loc, torch.full((3,), sigma, dtype=F64), c)
        spread = sigma / conformal_factor(loc, c).item()
        z = loc + spread * torch.randn(200, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
        lebesgue = q.log_prob(z) + 3 * torch.log(conformal_factor(z, c))
        euclidean = torch.distributions.Normal(loc, spread).log_prob(z).sum(-1)
        torch.testing.assert_close(lebesgue, euclidean, atol=2e-2, rtol=0)


@pytest.mark.parametrize(("c", "d"), [(1.0, 2), (0.3, 3), (2.0, 4)])
def test_sample_distances_follow_the_tangent_normal_radius(c, d):
    """d(loc, z)/sigma of isotropic samples is chi-distributed with d degrees of freedom."""
    loc = expmap0(torch.full((d,), 0.4 / math.sqrt(d), dtype=F64), c)
    sigma = 0.6
    q = WrappedNormal(loc, torch.full((d,), sigma, dtype=F64), c)
    z = q.rsample((4000,), generator=torch.Generator().manual_seed(2))
    radius = (dist(loc, z, c) / sigma).numpy()
    assert stats.kstest(radius, stats.chi(d).cdf).pvalue > 1e-3


@pytest.mark.parametrize("c", [1.0, 1.7])
def test_importance_weights_average_to_one_in_3d(c):
    """E_q[p(z)/q(z)] = 1 for samples of q: ties log_prob's normalisation (d = 3) to rsample."""
    q = WrappedNormal(torch.tensor([0.1, 0.2, -0.1], dtype=F64) / math.sqrt(c), torch.full((3,), 0.9, dtype=F64), c)
    p = WrappedNormal(torch.tensor([0.25, 0.1, 0.0], dtype=F64) / math.sqrt(c),
                      torch.tensor([0.5, 0.6, 0.4], dtype=F64), c)
    z = q.rsample((100000,), generator=torch.Generator().manual_seed(3))
    ratio = (p.log_prob(z) - q.log_prob(z)).exp()
    stderr = ratio.std().item() / math.sqrt(len(ratio))
    assert ratio.mean().item() == pytest.approx(1.0, abs=max(4 * stderr, 1e-3))


def test_rsample_log_prob_matches_log_prob_and_has_gradients():
    c = 1.3
    loc_tangent = torch.tensor([[0.3, -0.2], [0.0, 0.0], [1.0, 0.8]], dtype=F64, requires_grad=True)
    scale = torch.tensor([[0.5, 0.2], [1.0, 1.0], [0.05, 0.3]], dtype=F64, requires_grad=True)
    q = WrappedNormal(expmap0(loc_tangent, c), scale, c)
    z, log_q = q.rsample_with_log_prob((7,), generator=torch.Generator().manual_seed(4))
    assert z.shape == (7, 3, 2) and log_q.shape == (7, 3)
    torch.testing.assert_close(log_q, q.log_prob(z))
    (z.sum() + log_q.sum()).backward()
    for grad in (loc_tangent.grad, scale.grad):
        assert torch.isfinite(grad).all() and (grad != 0).all()


def test_float32_log_prob_is_finite_at_the_mean_and_near_the_boundary():
    loc = torch.tensor([[0.0, 0.0], [0.99, 0.0], [0.5, 0.5]], requires_grad=True)
    scale = torch.tensor([[1e-5, 1e-5], [1.0, 2.0], [50.0, 50.0]], requires_grad=True)
    q = WrappedNormal(loc, scale)
    z, log_q = q.rsample_with_log_prob((16,), generator=torch.Generator().manual_seed(5))
    at_mean = q.log_prob(loc)
    total = log_q.sum() + q.log_prob(z).sum() + at_mean.sum()
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
    assert (z.norm(dim=-1) < 1).all()


def test_broadcasting_shapes():
    q = WrappedNormal(torch.zeros(3), torch.ones(5, 3), 1.0)
    assert q.rsample().shape == (5, 3)
    assert q.rsample((2, 4)).shape == (2, 4, 5, 3)
    assert q.log_prob(torch.zeros(2, 5, 3)).shape == (2, 5)


def test_diagonal_normal_has_the_same_interface_and_matches_torch():
    loc = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=F64, requires_grad=True)
    scale = torch.tensor([[0.5, 2.0], [1.0, 0.1]], dtype=F64, requires_grad=True)
    q = DiagonalNormal(loc, scale)
    z, log_q = q.rsample_with_log_prob((6,), generator=torch.Generator().manual_seed(6))
    reference = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    torch.testing.assert_close(log_q, reference)
    torch.testing.assert_close(q.log_prob(z), reference)
    assert q.rsample((3,)).shape == (3, 2, 2)
    z.sum().backward()
    assert (loc.grad != 0).all() and (scale.grad != 0).all()
