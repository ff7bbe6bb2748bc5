"""The synthetic hierarchical dataset: nesting, determinism, textures and noise, files, napari samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from napari_hypseg.core.errors import ConfigError, VolumeError
from napari_hypseg.core.synthetic import (
    LEVEL_CLASSES,
    TextureSpec,
    ToyConfig,
    make_toy_volume,
    pink_noise,
    texture_field,
    toy_file_names,
    write_toy_dataset,
)
from napari_hypseg.core.volume_io import read_volume

FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, the one the recipe's wall and gap use
SEEDS = (0, 1, 2, 7)
CONFIG = ToyConfig()


def silent(config: ToyConfig = CONFIG, **changes) -> ToyConfig:
    """A config whose image holds only what ``changes`` switch back on: no means, no texture, no noise."""
    quiet = dataclasses.replace(
        config,
        intensity=(0.0, 0.0),
        textures=tuple(dataclasses.replace(t, amplitude=0.0) for t in config.textures),
        noise_magnitude=0.0,
    )
    return dataclasses.replace(quiet, **changes)


def grown(mask: np.ndarray, voxels: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, FULL, iterations=voxels)


@pytest.fixture(scope="module", params=[(irregular, seed) for irregular in (False, True) for seed in SEEDS],
                ids=lambda p: f"{'irregular' if p[0] else 'regular'}-seed{p[1]}")
def volume(request):
    irregular, seed = request.param
    return make_toy_volume(seed, irregular=irregular)


def test_arrays_have_the_documented_types_and_every_class(volume):
    assert volume.image.shape == (50, 50, 50) and volume.image.dtype == np.float32
    assert np.isfinite(volume.image).all()
    for level, names in LEVEL_CLASSES.items():
        truth = volume.truth[level]
        assert truth.shape == (50, 50, 50) and truth.dtype == np.uint8
        assert set(np.unique(truth)) == set(range(len(names)))


def test_levels_merge_small_objects_into_their_parents(volume):
    level1, level2, level3 = (volume.truth[level] for level in (1, 2, 3))
    np.testing.assert_array_equal(level1, (level3 > 0).astype(np.uint8))
    assert (level2[level3 == 4] == 2).all() and (level2[level3 == 5] == 3).all()
    unchanged = level3 <= 3
    np.testing.assert_array_equal(level2[unchanged], level3[unchanged])


def test_every_object_lies_strictly_inside_a_parent_of_the_right_kind(volume):
    level2, level3 = volume.truth[2], volume.truth[3]
    wall = CONFIG.parent_wall
    # A child grown by the wall thickness is still inside its parent's kind (the parent's mask
    # includes its own children at level 2): children never reach the parent's boundary.
    assert (level2[grown(level3 == 4, wall)] == 2).all()
    assert (level2[grown(level3 == 5, wall)] == 3).all()
    assert (volume.truth[1][grown(level2 >= 2, wall)] == 1).all()


def test_siblings_of_different_kinds_never_touch(volume):
    level2, level3 = volume.truth[2], volume.truth[3]
    for objects, kinds in ((level2 >= 2, level2), (level3 >= 4, level3)):
        components, count = ndimage.label(objects, FULL)
        for index in range(1, count + 1):
            assert len(np.unique(kinds[components == index])) == 1


def test_sibling_small_objects_never_touch():
    """Two small spheres per vesicle give exactly twice as many separate blobs as vesicles: none merged."""
    config = dataclasses.replace(CONFIG, n_small_per_parent=(2, 2))
    volume = make_toy_volume(3, config)
    level2, level3 = volume.truth[2], volume.truth[3]
    n_parents = ndimage.label(level2 == 2, FULL)[1]
    n_small = ndimage.label(level3 == 4, FULL)[1]
    assert n_small == 2 * n_parents


def test_regular_cubes_are_boxes_and_irregular_ones_are_not():
    def filled_fraction(truth: np.ndarray, class_id: int) -> list[float]:
        components, _ = ndimage.label(truth == class_id, FULL)
        return [float((components[box] == i + 1).mean()) for i, box in enumerate(ndimage.find_objects(components))]

    for seed in SEEDS:
        regular = make_toy_volume(seed).truth[2]
        assert filled_fraction(regular, 3) == pytest.approx([1.0] * len(filled_fraction(regular, 3)))
    irregular = [min(filled_fraction(make_toy_volume(seed, irregular=True).truth[2], 3)) for seed in SEEDS]
    assert max(irregular) < 0.95


def test_the_cell_is_large_and_organelles_and_small_objects_are_rare():
    truth = make_toy_volume(0).truth[3]
    fractions = np.bincount(truth.ravel(), minlength=6) / truth.size
    assert 0.3 < fractions[1] < 0.6            # radius ~25 in a 50³ cube: about half the volume
    assert fractions[4] + fractions[5] < 0.02   # the small objects: around 1 % of voxels or less


def test_same_seed_gives_identical_arrays_and_another_seed_another_volume():
    for irregular in (False, True):
        first, again = make_toy_volume(5, irregular=irregular), make_toy_volume(5, irregular=irregular)
        np.testing.assert_array_equal(first.image, again.image)
        for level in (1, 2, 3):
            np.testing.assert_array_equal(first.truth[level], again.truth[level])
        other = make_toy_volume(6, irregular=irregular)
        assert not np.array_equal(first.image, other.image)
        assert not np.array_equal(first.truth[3], other.truth[3])
    assert not np.array_equal(make_toy_volume(5).truth[3], make_toy_volume(5, irregular=True).truth[3])


def test_pink_noise_alone_has_the_configured_magnitude():
    for irregular in (False, True):
        image = make_toy_volume(1, silent(noise_magnitude=0.25), irregular=irregular).image
        assert image.std() == pytest.approx(0.25, rel=1e-4)
        assert abs(image.mean()) < 1e-4


def test_pink_noise_power_falls_as_one_over_frequency():
    rng = np.random.default_rng(0)
    noise = pink_noise((64, 64, 64), rng, magnitude=0.25, exponent=1.0)
    power = np.abs(np.fft.fftn(noise)) ** 2
    frequency = np.sqrt(sum(f ** 2 for f in np.meshgrid(*[np.fft.fftfreq(64)] * 3, indexing="ij")))
    bins = np.geomspace(0.03, 0.45, 12)
    which = np.digitize(frequency.ravel(), bins)
    centres = [frequency.ravel()[which == b].mean() for b in range(1, len(bins))]
    means = [power.ravel()[which == b].mean() for b in range(1, len(bins))]
    slope = np.polyfit(np.log(centres), np.log(means), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)


def test_an_oriented_texture_has_its_energy_at_its_wave_vector():
    spec = TextureSpec(frequency=0.25, bandwidth=0.02, amplitude=0.7, orientation=(0, 1, 0))
    field = texture_field((48, 48, 48), spec, np.random.default_rng(3))
    assert field.std() == pytest.approx(0.7)
    power = np.abs(np.fft.fftn(field)) ** 2
    peak = np.unravel_index(np.argmax(power), power.shape)
    peak_frequency = [np.fft.fftfreq(48)[i] for i in peak]
    assert np.abs(peak_frequency) == pytest.approx([0.0, 0.25, 0.0], abs=0.03)


def test_an_isotropic_texture_has_its_energy_on_a_shell():
    spec = TextureSpec(frequency=0.3, bandwidth=0.04, amplitude=0.5)
    field = texture_field((48, 48, 48), spec, np.random.default_rng(4))
    power = np.abs(np.fft.fftn(field)) ** 2
    frequency = np.sqrt(sum(f ** 2 for f in np.meshgrid(*[np.fft.fftfreq(48)] * 3, indexing="ij")))
    assert np.average(frequency, weights=power) == pytest.approx(0.3, abs=0.03)


def test_each_kind_shows_its_own_texture_strength():
    """Without means or noise, the image inside each large class varies as much as its texture."""
    volume = make_toy_volume(2, silent(textures=CONFIG.textures))
    for class_id in (0, 1, 2, 3):
        inside = volume.truth[3] == class_id
        assert volume.image[inside].std() == pytest.approx(CONFIG.textures[class_id].amplitude, rel=0.35)


def test_object_means_make_intensity_useless_for_telling_kinds_apart():
    """Objects of one kind get different mean intensities (~N(0, 1) each)."""
    means = []
    for seed in range(6):
        volume = make_toy_volume(seed, silent(intensity=(0.0, 1.0)))
        means.append(float(volume.image[volume.truth[3] == 1].mean()))  # the cell: one object
    assert np.std(means) > 0.3


@pytest.mark.parametrize("changes, needle", [
    ({"n_vesicles": (0, 2)}, "n_vesicles"),
    ({"deform_amplitude": 0.5}, "deform_amplitude"),
    ({"textures": CONFIG.textures[:3]}, "textures"),
    ({"shape": 8}, "shape"),
])
def test_invalid_configs_say_what_to_change(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        make_toy_volume(0, dataclasses.replace(CONFIG, **changes))


def test_children_that_cannot_fit_are_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="does not fit|never found room"):
        make_toy_volume(0, dataclasses.replace(CONFIG, small_sphere_radius=(9.0, 0.0)))


def test_dataset_files_read_back_as_the_volumes_of_consecutive_seeds(tmp_path):
    written = write_toy_dataset(tmp_path / "toy", 2, seed=10, irregular=True)
    assert [sorted(p.name for p in files.values()) for files in written] == [
        sorted(toy_file_names(k).values()) for k in range(2)]
    assert written[1]["level3"].name == "toy_001_level3.tif"
    for k, files in enumerate(written):
        expected = make_toy_volume(10 + k, irregular=True)
        image = read_volume(files["image"]).data
        assert image.dtype == np.float32
        np.testing.assert_array_equal(image, expected.image)
        for level in (1, 2, 3):
            labels = read_volume(files[f"level{level}"]).data
            assert labels.dtype == np.uint8
            np.testing.assert_array_equal(labels, expected.truth[level])


def test_existing_dataset_files_are_refused_unless_overwriting(tmp_path):
    write_toy_dataset(tmp_path, 1, seed=0)
    before = read_volume(tmp_path / "toy_000_image.tif").data.copy()
    with pytest.raises(VolumeError, match="already exist"):
        write_toy_dataset(tmp_path, 2, seed=1)
    assert not (tmp_path / "toy_001_image.tif").exists()  # nothing was written
    np.testing.assert_array_equal(read_volume(tmp_path / "toy_000_image.tif").data, before)
    write_toy_dataset(tmp_path, 2, seed=1, overwrite=True)
    np.testing.assert_array_equal(read_volume(tmp_path / "toy_000_image.tif").data, make_toy_volume(1).image)


def test_a_dataset_needs_at_least_one_volume(tmp_path):
    with pytest.raises(ConfigError, match=">= 1"):
        write_toy_dataset(tmp_path, 0, seed=0)


@pytest.mark.parametrize("key", ["toy", "toy_irregular"])
def test_each_sample_opens_in_napari_with_image_and_three_truth_levels(make_napari_viewer, key):
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    viewer.open_sample("napari-hypseg", key)
    assert [layer.name for layer in viewer.layers] == [
        "toy image", "truth level 1", "truth level 2", "truth level 3"]
    assert isinstance(viewer.layers[0], Image)
    assert all(isinstance(layer, Labels) for layer in viewer.layers[1:])
    assert viewer.layers["truth level 3"].data.max() == 5
