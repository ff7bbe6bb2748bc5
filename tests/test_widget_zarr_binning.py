"""Widgets at scale, in a real viewer: an OME-Zarr opened through the plugin (multiscale, lazy), trained
and segmented binned; the segmentation sits on the binned grid over the image and shows labels_at_k."""

from __future__ import annotations

import numpy as np
import zarr

from napari_hypseg._layer_labels import displayed_labels


def _ome_zarr(path, data, scale=(2.0, 1.0, 1.0)):
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for level, step in enumerate((1, 2)):
        array = data[::step, ::step, ::step]
        root.create_array(str(level), shape=array.shape, dtype=array.dtype, chunks=(8, 16, 16))[...] = array
        datasets.append({"path": str(level),
                         "coordinateTransformations": [{"type": "scale", "scale": [s * step for s in scale]}]})
    root.attrs["multiscales"] = [{"version": "0.4", "datasets": datasets,
                                  "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]}]
    return path


def test_zarr_image_trained_and_segmented_binned(make_napari_viewer, qtbot, tmp_path):
    from napari_hypseg.core.synthetic import make_toy_volume
    from napari_hypseg.widgets import SegmentWidget, TrainWidget

    image = make_toy_volume(4).image[:32, :36, :40].copy()
    path = _ome_zarr(tmp_path / "cell.zarr", image)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-hypseg")
    assert layer.multiscale and len(layer.data) == 2 and layer.data[0].shape == image.shape
    assert tuple(layer.scale) == (2.0, 1.0, 1.0)

    trainer = TrainWidget(viewer)
    trainer.images.value = [layer]
    trainer.form.set_values(steps=2, batch_size=4, encoder_channels=(4, 8), hidden=8, n_samples=1)
    trainer.devices.device = "cpu"
    trainer.binning.setCurrentIndex(trainer.binning.findData(2))
    trainer.checkpoint.setText(str(tmp_path / "model.pt"))
    trainer.start_training()
    qtbot.waitUntil(lambda: not trainer.running, timeout=120_000)
    assert (tmp_path / "model.pt").exists()

    segmenter = SegmentWidget(viewer)
    segmenter.image.value = layer
    segmenter.n_fine.setValue(4)
    segmenter.devices.device = "cpu"
    segmenter.binning.setCurrentIndex(segmenter.binning.findData(2))
    segmenter.segment_button.click()
    qtbot.waitUntil(lambda: not segmenter.running, timeout=120_000)
    labels = segmenter.labels_layer
    assert labels.data.shape == (16, 18, 20)
    assert tuple(labels.scale) == (4.0, 2.0, 2.0) and tuple(labels.translate) == (1.0, 0.5, 0.5)
    for k in (1, 2, 4):
        segmenter.k_slider.setValue(k)
        qtbot.waitUntil(lambda k=k: np.array_equal(displayed_labels(labels), segmenter.segmentation.labels_at_k(k)),
                        timeout=5_000)
    table = labels.features
    assert table["voxel_count"].groupby(table["label"]).first().sum() == 16 * 18 * 20


def test_a_region_layer_limits_training_and_segmentation(make_napari_viewer, qtbot, tmp_path, notifications):
    """A Labels layer as the region (the widgets' --mask): training sees only its box, segmentation
    labels only its voxels, and the result still covers the whole image, binned or not."""
    from napari_hypseg.core.normalization import IntensityStats
    from napari_hypseg.core.synthetic import make_toy_volume
    from napari_hypseg.widgets import SegmentWidget, TrainWidget

    image = make_toy_volume(4).image[:32, :36, :40].astype(np.float32)
    image[:, :, 30:] += 500.0   # a bright slab outside the region: in the statistics only if trained on
    mask = np.zeros(image.shape, np.uint8)
    mask[4:20, 6:30, 2:26] = 1
    mask[4:8, 6:10, 2:6] = 0      # a hole inside the box: clustered, but not labelled
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, scale=(2.0, 1.0, 1.0))
    region = viewer.add_labels(mask, name="where", scale=(2.0, 1.0, 1.0))

    trainer = TrainWidget(viewer)
    assert trainer.region.value is None   # the whole image unless a region is chosen
    trainer.images.value = [layer]
    trainer.region.value = region
    trainer.form.set_values(steps=2, batch_size=4, encoder_channels=(4, 8), hidden=8, n_samples=1)
    trainer.devices.device = "cpu"
    trainer.checkpoint.setText(str(tmp_path / "model.pt"))
    trainer.start_training()
    qtbot.waitUntil(lambda: not trainer.running, timeout=120_000)
    stats = trainer.last_model.trained.stats
    assert stats == IntensityStats.fit([image[4:20, 6:30, 2:26]])
    assert stats != IntensityStats.fit([image])

    segmenter = SegmentWidget(viewer)
    segmenter.image.value = layer
    segmenter.region.value = region
    segmenter.n_fine.setValue(4)
    segmenter.devices.device = "cpu"
    for factor in (1, 2):
        segmenter.binning.setCurrentIndex(segmenter.binning.findData(factor))
        segmenter.segment_button.click()
        qtbot.waitUntil(lambda: not segmenter.running, timeout=120_000)
        labels = segmenter.labels_layer
        inside = mask if factor == 1 else mask.reshape(16, 2, 18, 2, 20, 2).mean(axis=(1, 3, 5)) >= 0.5
        assert labels.data.shape == inside.shape
        assert not labels.data[inside == 0].any() and labels.data[inside != 0].all()
        for k in (1, 3):
            segmenter.k_slider.setValue(k)
            qtbot.waitUntil(lambda k=k: np.array_equal(displayed_labels(labels),
                                                       segmenter.segmentation.labels_at_k(k)), timeout=5_000)
        table = labels.features
        assert table["voxel_count"].groupby(table["label"]).first().sum() == np.count_nonzero(inside)

    wrong = viewer.add_labels(np.ones((8, 8, 8), np.uint8), name="too small")
    segmenter.region.value = wrong
    before = segmenter.segmentation
    segmenter.segment_button.click()
    assert segmenter.worker is None and segmenter.segmentation is before
    assert any("'too small' has shape (8, 8, 8)" in str(n.message) for n in notifications)
