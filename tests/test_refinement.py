"""Boundary refinement of the fine clusters (core/refinement.py), on real volumes and segmentations."""

import threading

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_hypseg.core.checkpoint import TrainedModel
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.errors import ConfigError
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.refinement import refine_boundaries
from napari_hypseg.core.segmentation import segment
from napari_hypseg.core.synthetic import make_toy_volume


def _two_halves(shape=(24, 20, 20), offset=3, seed=0):
    """A volume dark in x < 10 and bright beyond, with noise, and a fine map whose boundary sits
    `offset` voxels too far into the bright half."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    image[..., 10:] = 1.0
    image += rng.normal(0, 0.2, shape).astype(np.float32)
    truth = np.where(np.arange(shape[2]) < 10, 1, 2).astype(np.uint16) * np.ones(shape, np.uint16)
    displaced = np.where(np.arange(shape[2]) < 10 + offset, 1, 2).astype(np.uint16) * np.ones(shape, np.uint16)
    return image, truth, displaced


def test_a_displaced_boundary_moves_towards_the_intensity_edge():
    image, truth, displaced = _two_halves(offset=1)
    refined = run_to_completion(refine_boundaries(displaced, image, 2, 0.7))
    assert (displaced != truth).sum() == 24 * 20      # one plane of voxels on the wrong side
    assert (refined != truth).sum() < 0.1 * (displaced != truth).sum()


def test_only_the_band_changes_and_unlabelled_voxels_stay_unlabelled():
    image, _, displaced = _two_halves(offset=3)
    displaced[:, :3, :] = 0          # "not labelled": neither changed nor offered
    refined = run_to_completion(refine_boundaries(displaced, image, 2, 0.7))
    assert np.array_equal(refined == 0, displaced == 0)
    changed = refined != displaced
    assert changed.any()
    boundary = ndimage.binary_dilation(displaced == 1) & (displaced == 2) | \
        ndimage.binary_dilation(displaced == 2) & (displaced == 1)
    near = ndimage.binary_dilation(boundary, iterations=2)   # band of 1, two sweeps
    assert not (changed & ~near).any()


def test_the_result_does_not_depend_on_the_slab_size():
    volume = make_toy_volume(3)
    fine = ndimage.grey_dilation(volume.truth[3].astype(np.uint16) + 1, size=3).astype(np.uint16)
    results = [run_to_completion(refine_boundaries(fine, volume.image, 6, 0.7, slab=slab)) for slab in (5, 32, 64)]
    assert not np.array_equal(results[0], fine)
    for other in results[1:]:
        assert np.array_equal(results[0], other)


def test_stop_returns_none():
    image, _, displaced = _two_halves()
    stop = threading.Event()
    stop.set()
    assert run_to_completion(refine_boundaries(displaced, image, 2, 0.7, stop=stop)) is None


def test_segment_refines_its_fine_clusters_and_counts_them_again():
    image = make_toy_volume(7).image[:24, :24, :24].copy()
    config = get_preset("fast", encoder_channels=(4, 8), hidden=8)
    trained = TrainedModel(model=HypsegVAE(config), config=config, stats=IntensityStats.fit(image), step=0,
                           device=torch.device("cpu"))
    plain = run_to_completion(segment(trained, image, n_fine=4, device="cpu", boundary_refinement=0.0))
    refined = run_to_completion(segment(trained, image, n_fine=4, device="cpu", boundary_refinement=0.7))
    assert not np.array_equal(plain.fine_labels, refined.fine_labels)
    assert np.array_equal(refined.fine_counts, np.bincount(refined.fine_labels.ravel(), minlength=5))
    assert np.array_equal(plain.hierarchy.lookup_at_k(2), refined.hierarchy.lookup_at_k(2))   # same tree


def test_a_negative_sigma_is_refused():
    with pytest.raises(ConfigError, match="boundary_refinement must be a number >= 0"):
        get_preset("fast", boundary_refinement=-1.0)
