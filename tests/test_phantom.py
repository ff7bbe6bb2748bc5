"""The brain-like MRI phantom: what settings for MRI-like data are chosen on must look like MRI data."""

import numpy as np
import pytest
from scipy import ndimage

from napari_hypseg.core.phantom import PHANTOM_LEVEL_K, PHANTOM_LEVELS, make_brain_phantom

GREY, WHITE, OTHER = 1, 2, 3


@pytest.fixture(scope="module")
def phantom():
    return make_brain_phantom(3)


def test_a_seed_is_a_volume(phantom):
    again = make_brain_phantom(3)
    assert np.array_equal(again.image, phantom.image)
    assert all(np.array_equal(again.truth[level], phantom.truth[level]) for level in PHANTOM_LEVELS)
    assert not np.array_equal(make_brain_phantom(4).image, phantom.image)


def test_levels_nest_and_name_every_class(phantom):
    assert phantom.image.dtype == np.float32 and phantom.image.shape == (48, 56, 48)
    level1, level2 = phantom.truth[1], phantom.truth[2]
    assert level1.shape == level2.shape == phantom.image.shape
    assert np.array_equal(level1 > 0, level2 > 0)          # level 2 splits the brain of level 1
    assert set(np.unique(level2)) == set(range(len(PHANTOM_LEVELS[2])))
    assert PHANTOM_LEVEL_K == {1: 2, 2: 4}


def test_brightness_orders_the_tissues(phantom):
    level2 = phantom.truth[2]
    mean = {c: float(phantom.image[level2 == c].mean()) for c in (GREY, WHITE, OTHER)}
    assert mean[WHITE] > mean[GREY] > mean[OTHER] > float(phantom.image[level2 == 0].mean())


def test_grey_matter_is_a_thin_ribbon(phantom):
    """Almost every grey-matter voxel touches another tissue (as at MNI152's 2 mm), yet the ribbon is
    one structure around the white matter, not specks."""
    grey = phantom.truth[2] == GREY
    interior = ndimage.binary_erosion(grey, ndimage.generate_binary_structure(3, 3))   # 26 neighbours
    assert interior.sum() < 0.25 * grey.sum()
    sizes = np.bincount(ndimage.label(grey)[0].ravel())[1:]
    assert sizes.max() > 0.8 * grey.sum()
    assert 0.1 < grey.sum() / (phantom.truth[1] > 0).sum() < 0.6


def test_cortex_thickness_is_what_was_asked():
    thin = make_brain_phantom(5, cortex_thickness=1.0).truth[2] == GREY
    thick = make_brain_phantom(5, cortex_thickness=2.5).truth[2] == GREY
    assert thick.sum() > 1.5 * thin.sum()


@pytest.mark.parametrize("kwargs, message", [
    ({"cortex_thickness": 0}, "cortex_thickness must be a finite number > 0"),
    ({"fold_depth": float("nan")}, "fold_depth must be a finite number"),
    ({"shape": (8, 56, 48)}, "at least 16"),
    ({"shape": (48, 56)}, "three whole sizes"),
])
def test_bad_parameters_are_clear_errors(kwargs, message):
    from napari_hypseg.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_brain_phantom(0, **kwargs)
