"""The Segment widget applies the current model to every selected Image layer in one run."""

import numpy as np
from napari.layers import Labels

from napari_hypseg.core.checkpoint import load_checkpoint, save_checkpoint
from napari_hypseg.core.config import get_preset
from napari_hypseg.core.model import HypsegVAE
from napari_hypseg.core.normalization import IntensityStats
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.segmentation import segment
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.widgets import SegmentWidget

N_FINE = 4


def test_every_selected_image_layer_is_segmented_in_one_run(make_napari_viewer, qtbot, tmp_path, one_thread):
    images = {f"tomo{seed}": make_toy_volume(seed).image[8:24, 10:24, 12:24].copy() for seed in range(3)}
    config = get_preset("fast", encoder_channels=(4, 8), hidden=8)
    path = save_checkpoint(tmp_path / "model.pt", HypsegVAE(config), config,
                           IntensityStats.fit(images["tomo0"]), step=0)
    viewer = make_napari_viewer()
    layers = {name: viewer.add_image(image, name=name) for name, image in images.items()}
    segmenter = SegmentWidget(viewer)
    segmenter.load_model(path)
    segmenter.n_fine.setValue(N_FINE)
    segmenter.devices.device = "cpu"
    segmenter.every_selected.setChecked(True)
    viewer.layers.selection = {layers["tomo0"], layers["tomo2"]}
    assert segmenter.images == [layers["tomo0"], layers["tomo2"]]

    segmenter.segment_button.click()     # Stop at once: nothing is added
    segmenter.stop_button.click()
    qtbot.waitUntil(lambda: not segmenter.running, timeout=60_000)
    assert not [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert "Stopped" in segmenter.status.text()

    segmenter.segment_button.click()
    assert segmenter.running and not segmenter.every_selected.isEnabled()
    qtbot.waitUntil(lambda: not segmenter.running, timeout=120_000)
    shown = {layer.name: layer for layer in viewer.layers if isinstance(layer, Labels)}
    assert sorted(shown) == ["tomo0 segmentation", "tomo2 segmentation"]
    trained = load_checkpoint(path)
    for name in ("tomo0", "tomo2"):
        expected = run_to_completion(segment(trained, images[name], n_fine=N_FINE, device="cpu", seed=0))
        np.testing.assert_array_equal(shown[f"{name} segmentation"].data, expected.fine_labels)
    assert segmenter.labels_layer is shown["tomo2 segmentation"] and segmenter.source_name == "tomo2"
    assert "Segmented 2 images" in segmenter.status.text()

    viewer.layers.selection = set()              # nothing selected: nothing to segment
    assert not segmenter.segment_button.isEnabled()
    segmenter.every_selected.setChecked(False)   # back to the one chosen image
    assert segmenter.segment_button.isEnabled()


def test_segment_progress_shows_the_latent_points_done_and_the_eta(make_napari_viewer, one_thread):
    """The events of a real inference (several tiles) reach the Segment widget's status line: tiles done
    of all, voxels per second and the time left."""
    from napari_hypseg.core.inference import latent_field

    image = make_toy_volume(0).image[:24, :24, :24].copy()
    config = get_preset("fast", encoder_channels=(4, 8), hidden=8)
    events = []
    run_to_completion(latent_field(HypsegVAE(config), image, IntensityStats.fit(image), tile=12, batch_size=2,
                                   device="cpu"), events.append)
    segmenter = SegmentWidget(make_napari_viewer())
    middle = next(event for event in events if 0 < event.step < event.total)
    segmenter._on_progress(middle)
    status = segmenter.status.text()
    assert f"latent points</b> {middle.step}/{middle.total}" in status
    assert "ETA " in status and "voxels/s" in status, status
