"""Gyroplane layers against the definition: the closed form, a brute-force geodesic distance to the
gyroplane, and a naive per-voxel, per-offset loop for the convolution."""

import itertools
import math

import pytest
import torch

from napari_hypseg.core.gyroplane import Gyroplane, GyroplaneConv3d, gyroplane_responses
from napari_hypseg.core.manifold import logmap0

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# --- independent float64 reference, written from the definitions -----------------------------
def ref_mobius_add(x, y, c):
    xy = (x * y).sum(-1, keepdim=True)
    x2, y2 = (x * x).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True)
    return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c**2 * x2 * y2)


def ref_dist(x, y, c):
    return 2 / math.sqrt(c) * torch.atanh(math.sqrt(c) * ref_mobius_add(-x, y, c).norm(dim=-1))


def ref_distance_to_plane(z, p, a, c):
    """d(z, H_{a,p}) = (1/sqrt c) asinh(2 sqrt(c) |<w, a>| / ((1 - c|w|^2)|a|)),  w = (-p) + z."""
    w = ref_mobius_add(-p, z, c)
    wa = (w * a).sum(-1)
    return torch.asinh(2 * math.sqrt(c) * wa.abs() / ((1 - c * (w * w).sum(-1)) * a.norm(dim=-1))) / math.sqrt(c)


def ref_response(z, p, a, c):
    """f_{a,p}(z) = sign(<w, a>) lambda_p |a| d(z, H)."""
    w = ref_mobius_add(-p, z, c)
    lam_p = 2 / (1 - c * (p * p).sum(-1))
    return torch.sign((w * a).sum(-1)) * lam_p * a.norm(dim=-1) * ref_distance_to_plane(z, p, a, c)


def random_ball(shape, c, seed, max_radius=0.85):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(*shape, generator=g, dtype=F64), dim=-1)
    return x * max_radius * torch.rand(*shape[:-1], 1, generator=g, dtype=F64) / math.sqrt(c)


def set_planes(layer, p, a):
    """Give a layer the gyroplanes (p, a) through its tangent parameterisation."""
    c = layer.curvature
    with torch.no_grad():
        layer.p_tangent.copy_(logmap0(p, c))
        layer.a_tangent.copy_(a / (1 - c * (p * p).sum(-1, keepdim=True)))  # a * lambda_p / 2


# --- Gyroplane ----------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1.0, 0.5, 3.0])
def test_gyroplane_matches_the_closed_form(c):
    d, planes = 3, 5
    layer = Gyroplane(d, planes, c).double()
    p = random_ball((planes, d), c, seed=1)
    a = torch.randn(planes, d, dtype=F64, generator=torch.Generator().manual_seed(2))
    set_planes(layer, p, a)
    torch.testing.assert_close(layer.offsets[0], p)
    torch.testing.assert_close(layer.normals[0], a)
    z = random_ball((4, 7, d), c, seed=3, max_radius=0.99)
    expected = ref_response(z.unsqueeze(-2), p, a, c)
    assert layer(z).shape == (4, 7, planes)
    torch.testing.assert_close(layer(z), expected, rtol=1e-10, atol=1e-10)


def test_gyroplane_sign_and_zero_set():
    c = 1.5
    p = torch.tensor([[0.2, -0.3]], dtype=F64)
    a = torch.tensor([[1.0, 0.5]], dtype=F64)
    layer = Gyroplane(2, 1, c).double()
    set_planes(layer, p, a)
    along = ref_mobius_add(p, 0.2 * a / a.norm(), c)
    on_plane = ref_mobius_add(p, 0.3 * torch.tensor([[-0.5, 1.0]], dtype=F64), c)
    assert layer(along).item() > 0 and layer(ref_mobius_add(p, -0.2 * a / a.norm(), c)).item() < 0
    assert abs(layer(on_plane).item()) < 1e-12


@pytest.mark.parametrize(("c", "seed"), [(1.0, 0), (1.0, 1), (0.4, 2), (2.5, 3)])
def test_distance_formula_equals_brute_force_minimum_in_2d(c, seed):
    """min over x in H of d(z, x), with H = p + {w : w perpendicular to a}, on a dense line grid."""
    p = random_ball((1, 2), c, seed)
    z = random_ball((6, 2), c, seed + 10, max_radius=0.95)
    a = torch.randn(1, 2, dtype=F64, generator=torch.Generator().manual_seed(seed + 20))
    perp = torch.stack([-a[:, 1], a[:, 0]], dim=-1) / a.norm()
    bound = (1 - 1e-9) / math.sqrt(c)
    t = torch.linspace(-bound, bound, 200001, dtype=F64)
    plane = ref_mobius_add(p, t[:, None] * perp, c)  # (T, 2)
    for point in z:
        distances = ref_dist(point.expand_as(plane), plane, c)
        best = distances.argmin()
        fine_t = torch.linspace(t[max(best - 1, 0)], t[min(best + 1, len(t) - 1)], 20001, dtype=F64)
        fine = ref_mobius_add(p, fine_t[:, None] * perp, c)
        brute = ref_dist(point.expand_as(fine), fine, c).min()
        closed = gyroplane_responses(point[None, None], p[None], a[None], c).abs() / (
            2 / (1 - c * p.pow(2).sum()) * a.norm())
        assert closed.item() == pytest.approx(brute.item(), rel=1e-8, abs=1e-10)


@pytest.mark.parametrize("c", [1.0, 0.7, 2.0])
def test_distance_formula_equals_lbfgs_minimum_in_3d(c):
    p = random_ball((3,), c, seed=5)
    a = torch.randn(3, dtype=F64, generator=torch.Generator().manual_seed(6))
    basis = torch.linalg.svd(a[None]).Vh[1:]  # two orthonormal vectors perpendicular to a
    starts = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(7))
    for z in random_ball((5, 3), c, seed=8, max_radius=0.95):
        brute = math.inf
        for start in starts:
            s = start.clone().requires_grad_(True)  # w = exp_0(s1 e1 + s2 e2) stays in the ball
            optimiser = torch.optim.LBFGS([s], lr=1, max_iter=200, tolerance_grad=1e-14,
                                          tolerance_change=1e-16, line_search_fn="strong_wolfe")

            def closure():
                optimiser.zero_grad()
                u = s @ basis
                w = torch.tanh(math.sqrt(c) * u.norm()) * u / (math.sqrt(c) * u.norm())
                loss = ref_dist(z, ref_mobius_add(p, w, c), c).pow(2)
                loss.backward()
                return loss

            brute = min(brute, optimiser.step(closure).item(), closure().item())
        closed = ref_distance_to_plane(z, p, a, c)
        assert closed.item() == pytest.approx(math.sqrt(brute), rel=1e-6, abs=1e-7)
        layer_distance = gyroplane_responses(z[None, None], p[None, None], a[None, None], c).abs() / (
            2 / (1 - c * p.pow(2).sum()) * a.norm())
        torch.testing.assert_close(layer_distance.squeeze(), closed)


# --- GyroplaneConv3d ------------------------------------------------------------------------------
def test_conv_with_kernel_1_is_the_gyroplane_per_voxel():
    c = 1.2
    conv = GyroplaneConv3d(3, 4, 1, c).double()
    layer = Gyroplane(3, 4, c).double()
    with torch.no_grad():
        layer.p_tangent.copy_(conv.p_tangent)
        layer.a_tangent.copy_(conv.a_tangent)
    x = random_ball((2, 5, 4, 6, 3), c, seed=9).permute(0, 4, 1, 2, 3)  # (B, d, D, H, W)
    expected = layer(x.movedim(1, -1)).movedim(-1, 1) + conv.bias[:, None, None, None]
    torch.testing.assert_close(conv(x), expected)


@pytest.mark.parametrize("c", [1.0, 2.0])
def test_conv_with_kernel_3_is_the_sum_over_offsets(c):
    k, d, out = 3, 2, 4
    conv = GyroplaneConv3d(d, out, k, c).double()
    with torch.no_grad():  # planes away from the origin, so every offset's bank matters
        conv.p_tangent.normal_(0, 0.4, generator=torch.Generator().manual_seed(10))
    x = random_ball((2, 5, 4, 6, d), c, seed=11, max_radius=0.97).permute(0, 4, 1, 2, 3)
    result = conv(x)
    assert result.shape == (2, out, 3, 2, 4)
    p, a = conv.offsets, conv.normals  # (27, out, d)
    expected = torch.zeros_like(result)
    for i, j, l in itertools.product(range(3), range(2), range(4)):
        for o, (di, dj, dl) in enumerate(itertools.product(range(k), repeat=3)):
            z = x[:, :, i + di, j + dj, l + dl]  # (B, d)
            expected[:, :, i, j, l] += ref_response(z[:, None, :], p[o], a[o], c)
        expected[:, :, i, j, l] += conv.bias
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("k", "pad"), [(3, 1), (5, 2)])
def test_padding_keeps_the_shape_and_pads_with_the_origin(k, pad):
    conv = GyroplaneConv3d(3, 2, k, 1.0, padding=pad).double()
    x = random_ball((1, 4, 5, 6, 3), 1.0, seed=12).permute(0, 4, 1, 2, 3)
    assert conv(x).shape == (1, 2, 4, 5, 6)
    unpadded = GyroplaneConv3d(3, 2, k, 1.0).double()
    unpadded.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x), unpadded(torch.nn.functional.pad(x, (pad,) * 6)))


def test_gradients_flow_and_stay_finite_near_the_boundary():
    conv = GyroplaneConv3d(2, 3, 3, 1.0, padding=1)
    x = random_ball((2, 3, 3, 3, 2), 1.0, seed=13, max_radius=1 - 1e-5).float()
    x = x.permute(0, 4, 1, 2, 3).contiguous().requires_grad_(True)
    y = conv(x)
    y.pow(2).sum().backward()
    assert torch.isfinite(y).all()
    for grad in (x.grad, conv.p_tangent.grad, conv.a_tangent.grad, conv.bias.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_even_kernels_are_rejected():
    with pytest.raises(ValueError, match="odd"):
        GyroplaneConv3d(2, 3, 2)


def test_seeded_initialisation_is_reproducible():
    a = GyroplaneConv3d(2, 3, 3, generator=torch.Generator().manual_seed(0))
    b = GyroplaneConv3d(2, 3, 3, generator=torch.Generator().manual_seed(0))
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name
