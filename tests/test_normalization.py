import numpy as np
import pytest

from napari_hypseg.core.errors import ConfigError, VolumeError
from napari_hypseg.core.normalization import IntensityStats


def test_fit_clips_outliers_and_apply_z_scores():
    rng = np.random.default_rng(0)
    volume = rng.normal(100.0, 10.0, size=(40, 40, 40))
    volume[0, 0, :5] = 1e6                      # hot pixels must not set the scale
    stats = IntensityStats.fit([volume])
    assert 60 < stats.low < 80 and 120 < stats.high < 140
    assert abs(stats.mean - 100) < 1 and abs(stats.std - 10) < 1
    out = stats.apply(volume)
    assert out.dtype == np.float32 and out.shape == volume.shape
    assert abs(out.mean()) < 0.05 and abs(out.std() - 1) < 0.05
    assert out.max() == pytest.approx((stats.high - stats.mean) / stats.std, rel=1e-5)


def test_fit_reads_a_bounded_strided_sample_of_a_memmap(tmp_path):
    path = tmp_path / "big.raw"
    shape = (64, 64, 64)
    data = np.memmap(path, dtype=np.uint16, mode="w+", shape=shape)
    data[:] = np.arange(64, dtype=np.uint16)[None, None, :]   # x ramp 0..63
    data.flush()
    volume = np.memmap(path, dtype=np.uint16, mode="r", shape=shape)
    small = IntensityStats.fit([volume], max_samples=5000)
    full = IntensityStats.fit([volume])
    assert abs(small.mean - full.mean) < 1.5 and abs(small.std - full.std) < 1.5
    out = small.apply(volume)
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_apply_never_edits_its_input():
    volume = np.linspace(-50, 50, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    original = volume.copy()
    out = IntensityStats(low=-10.0, high=10.0, mean=1.0, std=2.0).apply(volume)
    np.testing.assert_array_equal(volume, original)
    assert out.min() == -5.5 and out.max() == 4.5


def test_volumes_are_weighted_by_size():
    stats = IntensityStats.fit([np.zeros((10, 10, 10)), np.ones((30, 30, 30))], low_percentile=0,
                               high_percentile=100)
    assert stats.mean == pytest.approx(27 / 28, abs=0.02)


def test_constant_volume_maps_to_zeros():
    stats = IntensityStats.fit([np.full((8, 8, 8), 5.0)])
    assert stats.std == 1.0
    assert np.all(stats.apply(np.full((8, 8, 8), 5.0)) == 0)


def test_dict_round_trip_and_bad_values():
    stats = IntensityStats(low=-1.0, high=2.0, mean=0.5, std=0.7)
    assert IntensityStats.from_dict(stats.to_dict()) == stats
    with pytest.raises(ConfigError, match="lack"):
        IntensityStats.from_dict({"low": 0.0})
    with pytest.raises(ConfigError, match="invalid"):
        IntensityStats.from_dict({"low": 0.0, "high": 1.0, "mean": 0.0, "std": 0.0})


def test_bad_inputs():
    with pytest.raises(VolumeError, match="no volumes"):
        IntensityStats.fit([])
    with pytest.raises(VolumeError, match="NaN"):
        IntensityStats.fit([np.full((4, 4, 4), np.nan)])
    with pytest.raises(ConfigError, match="percentile"):
        IntensityStats.fit([np.zeros((4, 4, 4))], low_percentile=50, high_percentile=10)
