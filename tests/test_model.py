"""HypsegVAE: shapes, fully-convolutional equivalence, finite losses and gradients for every
ablation, learning on a tiny batch, determinism."""

import io
import math

import pytest
import torch

from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import ConfigError
from napari_hypseg.core.losses import local_texture, vicreg
from napari_hypseg.core.manifold import logmap0
from napari_hypseg.core.model import HypsegVAE



pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(encoder_channels=(4, 8), hidden=8, n_samples=2, texture_weight=0.0)   # texture: opt-in here


def tiny(**overrides):
    return get_preset("fast", **{**TINY, **overrides})


def structured_batch(n, size, seed):
    """Patches with learnable structure: random linear ramps plus an offset, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    coeffs = torch.randn(n, 4, generator=g)
    ramps = (coeffs[:, 0, None, None, None] * zz + coeffs[:, 1, None, None, None] * yy
             + coeffs[:, 2, None, None, None] * xx + coeffs[:, 3, None, None, None])
    return (ramps + 0.1 * torch.randn(n, size, size, size, generator=g)).unsqueeze(1)


def triplet_batch(config, n=3, seed=0):
    s = config.input_size
    return [structured_batch(n, s, seed + i) for i in range(3)]


def test_shapes():
    cfg = tiny(latent_grid=3)
    model = HypsegVAE(cfg)
    assert cfg.patch_size == 5 and cfg.input_size == 7 and model.patch_size == 5
    x = torch.randn(2, 1, cfg.input_size, cfg.input_size, cfg.input_size)
    mu, sigma = model.encode(x)
    assert mu.shape == sigma.shape == (2, cfg.latent_dim, 3, 3, 3)
    assert (sigma > 0).all()
    assert model.decode(mu).shape == x.shape
    textured = HypsegVAE(tiny(latent_grid=3, texture_weight=30.0))
    assert textured.decode(mu).shape == (2, 2, *x.shape[2:])  # intensity and texture amplitude
    losses = model.loss(x, x, x)
    assert set(losses) == {"total", "recon", "kl", "triplet", "texture", "view", "invariance", "elbo"}
    assert all(v.dim() == 0 for v in losses.values())


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_dense_mean_equals_encoding_every_patch(geometry):
    cfg = tiny(geometry=geometry)
    model = HypsegVAE(cfg).eval()
    p = cfg.patch_size
    volume = torch.randn(1, 1, p + 3, p + 4, p + 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        dense = model.dense_mean(volume)
        assert dense.shape == (1, cfg.latent_dim, 4, 5, 3)
        patches = volume.unfold(2, p, 1).unfold(3, p, 1).unfold(4, p, 1)  # (1, 1, 4, 5, 3, p, p, p)
        patches = patches.reshape(-1, 1, p, p, p)
        mu, _ = model.encode(patches)
    per_patch = mu.reshape(4, 5, 3, cfg.latent_dim).permute(3, 0, 1, 2).unsqueeze(0)
    torch.testing.assert_close(dense, per_patch, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_cpu_kernels_give_the_plain_layers_result(stride):
    """On a CPU, channels-last activations take oneDNN's fused convolution + ReLU (model._convolve),
    contiguous ones the plain convolution and ReLU. Same numbers. (The fused 1x1 layers, model._pointwise,
    are checked against the encoder's own modules by test_dense_mean_equals_encoding_every_patch.)"""
    from napari_hypseg.core import model as model_module

    if model_module._ONEDNN is None:
        pytest.skip("this PyTorch build has no oneDNN fused kernels")
    model = HypsegVAE(tiny()).eval()
    volume = torch.randn(2, 1, 14, 15, 13, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = model.dense_mean(volume, stride=stride)
        fused = model.to(memory_format=torch.channels_last_3d).dense_mean(
            volume.contiguous(memory_format=torch.channels_last_3d), stride=stride)
    assert plain.shape == fused.shape
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("overrides", [
    dict(geometry="hyperbolic", gyroplane=True),
    dict(geometry="hyperbolic", gyroplane=False),
    dict(geometry="euclidean"),
    dict(geometry="hyperbolic", gyroplane=True, latent_grid=3),
    dict(geometry="hyperbolic", gyroplane=False, latent_grid=3),
    dict(geometry="euclidean", latent_grid=3),
    dict(geometry="hyperbolic", triplet=False),
    dict(geometry="euclidean", triplet=False),
    dict(geometry="hyperbolic", curvature=2.5, latent_dim=2),
    dict(geometry="hyperbolic", texture_weight=30.0),
    dict(geometry="hyperbolic", gyroplane=False, triplet=False, texture_weight=30.0),
    dict(geometry="euclidean", texture_weight=30.0),
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_loss_and_gradients_are_finite(overrides):
    cfg = tiny(**overrides)
    model = HypsegVAE(cfg)
    losses = model.loss(*triplet_batch(cfg))
    assert all(torch.isfinite(v) for v in losses.values())
    expected = losses["recon"] + cfg.kl_weight * losses["kl"]
    if cfg.triplet:
        expected = expected + cfg.triplet_weight * losses["triplet"]
    else:
        assert not losses["triplet"].requires_grad
    if cfg.texture_weight > 0:
        assert losses["texture"] > 0
        expected = expected + cfg.texture_weight * losses["texture"]
    else:
        assert losses["texture"] == 0
    torch.testing.assert_close(losses["total"], expected)
    losses["total"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("geometry", ["hyperbolic", "euclidean"])
def test_extreme_inputs_stay_finite_and_inside_the_ball(geometry):
    cfg = tiny(geometry=geometry, curvature=2.0)
    model = HypsegVAE(cfg)
    s = cfg.input_size
    huge = 1e4 * torch.randn(2, 1, s, s, s, generator=torch.Generator().manual_seed(0))
    for x in (huge, torch.zeros(2, 1, s, s, s), -huge):
        losses = model.loss(x, x, x)
        assert all(torch.isfinite(v) for v in losses.values())
        losses["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        model.zero_grad()
    if geometry == "hyperbolic":
        mu, _ = model.encode(huge)
        assert (mu.norm(dim=1) < 1 / math.sqrt(cfg.curvature)).all()


def test_posterior_means_lie_inside_the_ball():
    cfg = tiny(curvature=0.5)
    model = HypsegVAE(cfg)
    volume = 10 * torch.randn(1, 1, 9, 9, 9, generator=torch.Generator().manual_seed(1))
    mu = model.dense_mean(volume)
    assert (mu.norm(dim=1) < 1 / math.sqrt(cfg.curvature)).all()


@pytest.mark.parametrize("overrides", [dict(geometry="hyperbolic"), dict(geometry="euclidean")],
                         ids=["hyperbolic", "euclidean"])
def test_a_few_adam_steps_reduce_the_loss(overrides):
    cfg = tiny(triplet_weight=1e3, **overrides)  # a strong triplet term: both parts must be learnt
    model = HypsegVAE(cfg)
    batch = triplet_batch(cfg, n=4)
    constant = 0.5 * cfg.input_size**3 * math.log(2 * math.pi)  # the recon NLL of a perfect fit

    def evaluate():
        with torch.no_grad():
            return model.loss(*batch, generator=torch.Generator().manual_seed(7))

    before = evaluate()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimiser.zero_grad()
        model.loss(*batch)["total"].backward()
        optimiser.step()
    after = evaluate()
    assert after["total"] < 0.7 * before["total"]
    assert after["recon"] - constant < 0.85 * (before["recon"] - constant)


def test_local_texture_ignores_brightness_and_smooth_gradients():
    noise = torch.randn(2, 1, 11, 11, 11, generator=torch.Generator().manual_seed(0))
    texture = local_texture(noise)
    assert texture.shape == noise.shape
    assert 0.8 < texture.mean() < 1.1                             # white noise of std 1 is textured
    torch.testing.assert_close(local_texture(noise + 5.0), texture, atol=1e-5, rtol=1e-5)  # brightness
    torch.testing.assert_close(local_texture(3.0 * noise), 3.0 * texture)                  # contrast
    axis = torch.linspace(-4, 4, 11)
    ramp = sum(c * a for c, a in zip((0.5, -1.0, 2.0), torch.meshgrid(axis, axis, axis, indexing="ij")))
    assert local_texture(ramp[None, None])[..., 2:-2, 2:-2, 2:-2].max() < 1e-3  # a smooth ramp has none


def test_texture_term_is_learnt():
    cfg = tiny(texture_weight=30.0, triplet=False)
    model = HypsegVAE(cfg)
    g = torch.Generator().manual_seed(2)
    s = cfg.input_size
    # half the patches rough (noise), half smooth ramps: the latent must tell them apart
    rough = 0.7 * torch.randn(4, 1, s, s, s, generator=g)
    batch = [torch.cat([rough[:2], structured_batch(2, s, i)]) for i in range(3)]
    before = model.loss(*batch)["texture"].item()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimiser.zero_grad()
        model.loss(*batch)["total"].backward()
        optimiser.step()
    assert model.loss(*batch)["texture"].item() < 0.5 * before


@pytest.mark.parametrize("weight, term, argument", [("view_weight", "view", "views"),
                                                     ("invariance_weight", "invariance", "pairs")])
def test_same_scale_terms_are_weighted_terms_of_the_total_and_off_by_default(weight, term, argument):
    """The same-scale triplet (views: anchor, positive, negative) and the invariance term (pairs: two
    views of 8 places, for the batch statistics of VICReg)."""
    cfg = tiny(**{weight: 5.0})
    model = HypsegVAE(cfg)
    batch = triplet_batch(cfg)
    extra = {argument: triplet_batch(cfg, seed=10) if argument == "views" else triplet_batch(cfg, n=8, seed=10)[:2]}
    with_term = model.loss(*batch, **extra, generator=torch.Generator().manual_seed(0))
    without = model.loss(*batch, generator=torch.Generator().manual_seed(0))
    assert with_term[term] > 0 and without[term] == 0
    torch.testing.assert_close(with_term["total"], without["total"] + 5.0 * with_term[term])
    off = HypsegVAE(tiny()).loss(*batch, **extra, generator=torch.Generator().manual_seed(0))
    assert off[term] == 0                                       # weight 0: the extra cubes are ignored
    with_term[term].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_vicreg_punishes_a_collapse_and_a_mismatch_not_spread_matching_views():
    g = torch.Generator().manual_seed(0)
    spread = 2.0 * torch.randn(4096, 3, generator=g)
    assert vicreg(spread, spread) < 0.01                        # identical, spread, decorrelated: ~0
    collapsed = torch.zeros(64, 3)
    assert vicreg(collapsed, collapsed) == pytest.approx(2.0, abs=0.02)   # the variance hinge of both views
    shifted = spread + torch.tensor([1.0, 0.0, 0.0])
    assert vicreg(spread, shifted) == pytest.approx(1.0, abs=0.02)        # squared distance of each pair
    correlated = torch.cat([spread[:, :1]] * 3, dim=1)
    assert vicreg(correlated, correlated) > 1.0                 # one direction three times: covariance


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "30"])
def test_bad_texture_weight_is_refused(bad):
    with pytest.raises(ConfigError, match="texture_weight must be a number >= 0"):
        tiny(texture_weight=bad)


def test_same_seed_same_weights_and_loss_and_the_global_rng_is_untouched():
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = HypsegVAE(tiny()), HypsegVAE(tiny()), HypsegVAE(tiny(seed=1))
    batch = triplet_batch(tiny())
    loss_a, loss_b = a.loss(*batch)["total"], b.loss(*batch)["total"]
    assert torch.equal(torch.rand(3), expected_draw)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))
    assert torch.equal(loss_a, loss_b)


def test_weights_load_with_weights_only():
    model = HypsegVAE(tiny(latent_grid=3))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other = HypsegVAE(tiny(latent_grid=3, seed=5))
    other.load_state_dict(state)
    x = torch.randn(1, 1, 7, 7, 7)
    torch.testing.assert_close(other.dense_mean(x), model.dense_mean(x))


def test_wrong_shapes_are_rejected():
    cfg = tiny()
    model = HypsegVAE(cfg)
    s = cfg.input_size
    good = torch.zeros(2, 1, s, s, s)
    with pytest.raises(ValueError, match="input_size"):
        model.loss(good, good, torch.zeros(2, 1, s + 2, s + 2, s + 2))
    with pytest.raises(ValueError, match="patch_size"):
        model.encode(torch.zeros(1, 1, s - 1, s, s))


def test_oriented_texture_tells_orientations_apart_and_ignores_brightness():
    from napari_hypseg.core.losses import oriented_texture

    axis = torch.arange(11.0)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    for stripes, along in ((torch.sin(1.3 * z), 0), (torch.sin(1.3 * x), 2)):
        descriptor = oriented_texture(stripes[None, None])
        assert descriptor.shape == (1, 4, 11, 11, 11)
        centre = descriptor[0, :, 5, 5, 5]
        assert centre[1 + along] > 0.99 and centre[1:].sum().sub(1).abs() < 1e-5
        torch.testing.assert_close(oriented_texture(2.0 * stripes[None, None] + 7.0)[:, 1:], descriptor[:, 1:],
                                   atol=1e-5, rtol=1e-5)   # shares: blind to brightness and contrast


def test_texture_descriptor_sets_the_decoder_outputs():
    assert HypsegVAE(tiny(texture_weight=30.0, texture_descriptor="oriented")).decoder[-1].out_channels == 5
    assert HypsegVAE(tiny(texture_weight=0.0, texture_descriptor="oriented")).decoder[-1].out_channels == 1


def test_a_posterior_wider_than_the_prior_cannot_buy_an_unbounded_negative_kl():
    # Past a few prior scales, wrapped-normal samples sit at the ball's float32 boundary and the
    # single-sample KL falls without bound as the scale grows (-230 nats at scale 100): training once
    # ran away to KL -8e9. The encoder's scale ceiling keeps the KL where the objective is sound.
    model = HypsegVAE(tiny(prior_sigma=0.5))
    with torch.no_grad():
        model.sigma_head.weight.zero_()
        model.sigma_head.bias.fill_(1e4)           # softplus -> 1e4: a runaway posterior scale
    x = triplet_batch(model.config)
    with torch.no_grad():
        kl = model.loss(*x)["kl"].item()
        _, sigma = model.encode(x[0])
    assert math.isfinite(kl) and kl > -10.0, kl
    torch.testing.assert_close(sigma, torch.full_like(sigma, 2.0 * 0.5 + 1e-5))


def test_the_normalised_target_is_blind_to_each_patch_brightness_and_contrast():
    """reconstruction_target "normalised" reconstructs every patch standardised by its own mean and
    spread: a patch and its brighter, higher-contrast copy give one target; the intensity target
    differs, and a name that is not a target is refused."""
    from napari_hypseg.core.losses import standardised_patches

    x = torch.randn(4, 1, 5, 5, 5, generator=torch.Generator().manual_seed(0)) * 3
    target = standardised_patches(x)
    assert torch.allclose(target.mean((1, 2, 3, 4)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(target.std((1, 2, 3, 4)), torch.ones(4), atol=0.01)
    # equal but for eps (1e-2) against each patch's spread (about 3 here, 15 in the copy): < 0.4 %
    assert torch.allclose(standardised_patches(x * 5 + 7), target, rtol=4e-3, atol=1e-4)
    batch = [torch.randn(2, 1, 5, 5, 5, generator=torch.Generator().manual_seed(s)) * 4 + 10 for s in (1, 2, 3)]
    recon = {}
    for name in ("intensity", "normalised"):
        model = HypsegVAE(tiny(reconstruction_target=name))
        recon[name] = model.loss(*batch, generator=torch.Generator().manual_seed(0))["recon"].item()
    assert recon["normalised"] < recon["intensity"]     # the same untrained decoder is far from intensities ~10
    with pytest.raises(ConfigError, match="reconstruction_target must be one of"):
        tiny(reconstruction_target="pixels")


def _plain_decode(model, z):
    """The reference decoder: the modules' own forward, layer after layer (what decode computes
    with matrix products, channel-last activations and in-place ReLUs)."""
    if model.hyperbolic and not model.config.gyroplane:
        z = logmap0(z.movedim(1, -1), model.curvature).movedim(-1, 1)
    return model.decoder(model.decoder_input(z))


@pytest.mark.parametrize("overrides", [
    dict(),                                                          # latent_grid 1: one latent voxel
    dict(latent_grid=3, texture_weight=30.0, texture_descriptor="oriented"),   # 5 output channels
    dict(geometry="euclidean", latent_grid=3),
    dict(gyroplane=False),
    dict(encoder_channels=(16, 32, 64, 128), hidden=300, latent_dim=2),   # the paper preset's layers
])
def test_decode_equals_the_plain_layers_with_gradients(overrides):
    model = HypsegVAE(tiny(**overrides)).double()
    g = model.config.latent_grid
    torch.manual_seed(0)
    z = (0.3 * torch.randn(5, model.latent_dim, g, g, g, dtype=torch.float64)).requires_grad_()
    fast, plain = model.decode(z), _plain_decode(model, z)
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(plain)          # a loss that weighs every output differently
    named = [("z", z), *model.decoder_input.named_parameters("decoder_input"), *model.decoder.named_parameters("decoder")]
    got = torch.autograd.grad((fast * weights).sum(), [t for _, t in named])
    want = torch.autograd.grad((plain * weights).sum(), [t for _, t in named])
    for (name, _), a, b in zip(named, got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_paper_loss_and_gradients_equal_the_plain_decoder_in_float32():
    """One paper-preset batch (float32): the objective and every gradient as with the modules' own
    forward, to float32 rounding (only the order of the sums differs)."""
    cfg = get_preset("paper", batch_size=8)
    model = HypsegVAE(cfg)
    batch = triplet_batch(cfg, n=8)

    def run():
        model.zero_grad()
        losses = model.loss(*batch, generator=torch.Generator().manual_seed(3))
        losses["total"].backward()
        return {k: v.item() for k, v in losses.items()}, [p.grad.clone() for p in model.parameters()]

    got, got_grads = run()
    model.decode = lambda z, compute_dtype=torch.float32: _plain_decode(model, z)   # the reference
    want, want_grads = run()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), key
    for (name, _), a, b in zip(model.named_parameters(), got_grads, want_grads):
        # the decoder's gradients are sums over 3B x K x S^3 voxels that mostly cancel: float32
        # rounding moves them by up to ~5e-4 of their largest entry (exact in float64, see above)
        torch.testing.assert_close(a, b, rtol=0, atol=2e-3 * float(b.abs().max()), msg=name)


def test_bfloat16_decoder_stays_close_to_float32():
    """compute_dtype=bfloat16 runs the decoder's convolutions in bfloat16 only: the loss moves by
    rounding, the KL and the triplet (encoder, posterior) not at all."""
    cfg = get_preset("paper", batch_size=8)
    model = HypsegVAE(cfg)
    batch = triplet_batch(cfg, n=8)
    exact = model.loss(*batch, generator=torch.Generator().manual_seed(3))
    rounded = model.loss(*batch, generator=torch.Generator().manual_seed(3), compute_dtype=torch.bfloat16)
    assert rounded["kl"].item() == exact["kl"].item() and rounded["triplet"].item() == exact["triplet"].item()
    assert rounded["recon"].item() == pytest.approx(exact["recon"].item(), rel=1e-3)
    assert rounded["total"].dtype == torch.float32
    rounded["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
