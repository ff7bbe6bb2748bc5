import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import ConfigError, VolumeError
from napari_hypseg.core.sampling import PAIR_CONTRAST, PAIR_NOISE, TripletSampler

CONFIG = get_preset("fast", encoder_channels=(4, 8), hidden=8, n_samples=1, batch_size=4, steps=4,
                    parent_min=5, parent_max=12, child_min=3, child_max=5, intensity_jitter=0.0)


def ramp(shape):
    """A linear function of position, which trilinear interpolation reproduces exactly."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    return 1.0 * z + 100.0 * y + 10000.0 * x


def linear_value(centres):
    return centres[:, 0] + 100.0 * centres[:, 1] + 10000.0 * centres[:, 2]


def test_batch_shapes_and_box_geometry():
    shapes = [(24, 24, 24), (9, 30, 14)]
    volumes = [np.random.default_rng(i).normal(size=s).astype(np.float32) for i, s in enumerate(shapes)]
    sampler = TripletSampler(volumes, CONFIG, seed=3)
    parent, positive, negative, boxes = sampler.sample(400, return_boxes=True)
    size = CONFIG.input_size
    for patch in (parent, positive, negative):
        assert patch.shape == (400, 1, size, size, size) and patch.dtype == torch.float32
        assert torch.isfinite(patch).all()
    volume_shape = np.array(shapes)[boxes.volume]
    assert set(np.unique(boxes.volume)) == {0, 1}
    # parents: odd, within [parent_min, parent_max] (capped by the volume), inside the volume
    assert np.all(boxes.parent_side % 2 == 1)
    assert np.all((boxes.parent_side >= 5) & (boxes.parent_side <= 11))
    assert np.all(boxes.parent_side[boxes.volume == 1] <= 9)          # the 9-voxel axis caps them
    half = boxes.parent_side[:, None] // 2
    assert np.all(boxes.parent_centre - half >= 0) and np.all(boxes.parent_centre + half < volume_shape)
    # children: U{child_min .. min(child_max, r - 1) - 1}, strictly smaller than the parent
    assert np.all((boxes.child_side >= 3) & (boxes.child_side <= np.minimum(5, boxes.parent_side - 1) - 1))
    assert set(np.unique(boxes.child_side)) == {3, 4}                 # even sides are kept (see module doc)
    # negatives: centred outside the parent, their cube inside the volume
    outside = np.abs(boxes.negative_centre - boxes.parent_centre) > half
    assert np.all(outside.any(axis=1))
    child_half = boxes.child_side[:, None] / 2
    assert np.all(boxes.negative_centre - child_half >= -0.5)
    assert np.all(boxes.negative_centre + child_half <= volume_shape - 0.5)


def test_patches_are_the_boxes_resampled():
    shape = (20, 26, 23)
    sampler = TripletSampler([ramp(shape)], CONFIG, seed=0)
    parent, positive, negative, boxes = sampler.sample(64, return_boxes=True)
    # Parents are at least input_size wide: exactly trilinear F.interpolate of the crop.
    for i in range(64):
        (z, y, x), h = boxes.parent_centre[i], boxes.parent_side[i] // 2
        crop = torch.from_numpy(ramp(shape)[z - h:z + h + 1, y - h:y + h + 1, x - h:x + h + 1])[None, None]
        expected = F.interpolate(crop, size=(CONFIG.input_size,) * 3, mode="trilinear", align_corners=False)
        torch.testing.assert_close(parent[i:i + 1], expected, rtol=1e-6, atol=1e-2)
    # On a linear volume a cube's mean is the value at its centre: the positive is concentric.
    np.testing.assert_allclose(positive.mean(dim=(1, 2, 3, 4)).numpy(),
                               linear_value(boxes.parent_centre.astype(np.float64)), rtol=1e-6)
    # The negative is the box it reports (away from the border, where edge voxels are repeated).
    step = boxes.child_side / CONFIG.input_size
    interior = np.all((boxes.negative_centre - boxes.child_side[:, None] / 2 + step[:, None] / 2 >= 0)
                      & (boxes.negative_centre + boxes.child_side[:, None] / 2 - step[:, None] / 2
                         <= np.array(shape) - 1), axis=1)
    assert interior.sum() > 10
    np.testing.assert_allclose(negative.mean(dim=(1, 2, 3, 4)).numpy()[interior],
                               linear_value(boxes.negative_centre[interior].astype(np.float64)), rtol=1e-6)


def test_intensity_jitter_shifts_each_patch_by_its_own_offset():
    volume = ramp((20, 26, 23))
    plain = TripletSampler([volume], CONFIG, seed=5).sample(2000, seed=1)
    jittered = TripletSampler([volume], CONFIG.with_overrides(intensity_jitter=0.5), seed=5).sample(2000, seed=1)
    offsets = torch.stack([(b - a).flatten(1) for a, b in zip(plain, jittered)], dim=1)    # (B, 3, S³)
    # The same boxes, each patch shifted by one constant ...
    torch.testing.assert_close(offsets, offsets[..., :1].expand_as(offsets), rtol=0, atol=0.05)
    per_patch = offsets[..., 0]
    # ... drawn independently for parent, positive and negative, with the configured spread.
    assert abs(float(per_patch.std()) - 0.5) < 0.03
    correlation = torch.corrcoef(per_patch.T)
    assert torch.all((correlation - torch.eye(3)).abs() < 0.1)


def test_same_seed_same_batches():
    volume = np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32)
    first = TripletSampler([volume], CONFIG, seed=7)
    second = TripletSampler([volume], CONFIG, seed=7)
    other = TripletSampler([volume], CONFIG, seed=8)
    a, b, c = first.sample(8), second.sample(8), other.sample(8)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    # reseeding per call replays a batch whatever came before
    replay = first.sample(8, seed=123)
    first.sample(8)
    assert torch.equal(first.sample(8, seed=123)[2], replay[2])


def test_volumes_are_picked_in_proportion_to_size():
    small = np.zeros((12, 12, 12), np.float32)
    large = np.ones((24, 24, 24), np.float32)
    sampler = TripletSampler([small, large], CONFIG, seed=0)
    *_, boxes = sampler.sample(900, return_boxes=True)
    share = np.mean(boxes.volume == 1)
    assert abs(share - 8 / 9) < 0.05
    parent, *_ = sampler.sample(16)
    # each patch comes from one volume only (the constant values 0 and 1 are never mixed)
    assert torch.all(torch.minimum(parent.abs(), (parent - 1).abs()) < 1e-5)


def test_log_uniform_parent_prefers_small_sides():
    volume = np.zeros((40, 40, 40), np.float32)
    sides = {}
    for log_uniform in (False, True):
        config = CONFIG.with_overrides(parent_max=33, child_max=15, log_uniform_parent=log_uniform)
        *_, boxes = TripletSampler([volume], config, seed=0).sample(1000, return_boxes=True)
        assert np.all(boxes.parent_side % 2 == 1) and boxes.parent_side.min() == 5
        assert boxes.parent_side.max() == 33
        sides[log_uniform] = boxes.parent_side
    assert np.median(sides[True]) < np.median(sides[False]) - 3


def test_read_only_volume_is_accepted():
    volume = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    volume.flags.writeable = False
    parent, *_ = TripletSampler([volume], CONFIG, seed=0).sample(2)
    assert parent.shape[0] == 2


@pytest.mark.parametrize("shape", [(4, 30, 30), (30, 30, 3), (6, 7, 7)])
def test_too_small_volume_is_refused_with_its_shape(shape):
    with pytest.raises(VolumeError, match=rf"{shape[0]}, {shape[1]}, {shape[2]}.*too small.*parent_min=5"):
        TripletSampler([np.zeros((24, 24, 24)), np.zeros(shape)], CONFIG, seed=0)


def test_smallest_usable_volume_samples():
    # one axis of parent_min, a longest axis with just room for a negative child beside the parent
    parent, positive, negative, boxes = TripletSampler([np.zeros((5, 5, 8))], CONFIG, seed=0).sample(
        32, return_boxes=True)
    assert np.all(boxes.parent_side == 5) and np.all(boxes.child_side == 3)
    assert np.all(np.abs(boxes.negative_centre - boxes.parent_centre).max(axis=1) > 2)


def test_not_3d_is_refused():
    with pytest.raises(VolumeError, match="3D"):
        TripletSampler([np.zeros((24, 24))], CONFIG)
    with pytest.raises(VolumeError, match="no volumes"):
        TripletSampler([], CONFIG)


@pytest.mark.parametrize("jitter", [-0.1, float("nan"), float("inf"), True])
def test_bad_intensity_jitter_is_refused(jitter):
    with pytest.raises(ConfigError, match="intensity_jitter must be a number >= 0"):
        CONFIG.with_overrides(intensity_jitter=jitter)


def test_same_scale_views_are_cubes_of_the_context_side_a_few_voxels_apart():
    shape = (20, 26, 23)
    config = CONFIG.with_overrides(context=5, view_shift=2)
    anchor, positive, negative = TripletSampler([ramp(shape)], config, seed=0).sample_views(500)
    size = config.input_size
    for patch in (anchor, positive, negative):
        assert patch.shape == (500, 1, size, size, size)
    # On a linear volume the mean of a cube is its centre's value, and its extent along z is
    # side * (1 - 1 / size) between the first and the last sample.
    values = [p.double().mean(dim=(1, 2, 3, 4)).round().long() for p in (anchor, positive, negative)]
    centres = [torch.stack([v % 100, v // 100 % 100, v // 10000], 1) for v in values]
    offsets = (centres[1] - centres[0]).abs()
    assert offsets.max() == 2 and (offsets == 0).any()
    extent = anchor[:, 0, -1, 0, 0] - anchor[:, 0, 0, 0, 0]
    torch.testing.assert_close(extent, torch.full_like(extent, 5 * (1 - 1 / size)), rtol=0, atol=0.02)  # float32 ulp
    limit = torch.tensor(shape) - 1 - 2
    for centre in centres:                                     # every cube lies inside the volume
        assert (centre >= 2).all() and (centre <= limit).all()
    assert (centres[2] - centres[0]).abs().max() > 10         # negatives come from anywhere


def test_views_fit_a_volume_smaller_than_the_context_and_replay_with_the_seed():
    volume = np.random.default_rng(0).normal(size=(5, 5, 8)).astype(np.float32)
    config = CONFIG.with_overrides(context=9, intensity_jitter=1.0)
    first, second = (TripletSampler([volume], config, seed=4) for _ in range(2))
    a = first.sample(4) + first.sample_views(6)
    b = second.sample(4) + second.sample_views(6)
    assert all(torch.equal(x, y) and torch.isfinite(x).all() for x, y in zip(a, b))
    assert a[3].shape == (6, 1, config.input_size, config.input_size, config.input_size)


def test_invariance_pairs_are_two_views_of_one_place_with_their_own_photometry():
    shape = (20, 26, 23)
    config = CONFIG.with_overrides(context=5, view_shift=2, intensity_jitter=0.0)
    first, second = TripletSampler([ramp(shape)], config, seed=0).sample_pairs(500)
    assert first.shape == second.shape == (500, 1, config.input_size, config.input_size, config.input_size)
    # On a ramp a cube's mean is its centre's code times the view's contrast factor, whose log is
    # N(0, PAIR_CONTRAST^2): the log ratio of the two views' means has spread sqrt(2) * PAIR_CONTRAST
    # (the centres, at most 2 voxels apart, change the mean by under 0.1 %).
    log_ratio = (first.double().mean(dim=(1, 2, 3, 4)) / second.double().mean(dim=(1, 2, 3, 4))).log()
    assert abs(log_ratio.std().item() - math.sqrt(2) * PAIR_CONTRAST) < 0.04
    # On a constant volume what varies inside a view is the noise.
    flat = TripletSampler([np.ones(shape, np.float32)], config, seed=0).sample_pairs(200)[0]
    assert abs((flat - flat.mean(dim=(2, 3, 4), keepdim=True)).std().item() - PAIR_NOISE) < 0.01
    again = TripletSampler([ramp(shape)], config, seed=0).sample_pairs(500)
    assert torch.equal(again[0], first) and torch.equal(again[1], second)


@pytest.mark.parametrize("field, bad", [("view_weight", -1.0), ("view_weight", float("nan")),
                                        ("invariance_weight", -2.0), ("invariance_weight", "1"),
                                        ("view_shift", 0), ("view_shift", 1.5), ("view_shift", True)])
def test_bad_view_settings_are_refused(field, bad):
    with pytest.raises(ConfigError, match=f"{field} must be"):
        CONFIG.with_overrides(**{field: bad})
