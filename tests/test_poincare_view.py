import numpy as np

from napari_hypseg.widgets._poincare_view import PoincareView


def test_disk_view_marks_the_mean_centre_radius_of_each_level(qtbot):
    view = PoincareView()
    qtbot.addWidget(view)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, size=(50, 3))
    view.show_points(points, np.tile([0.2, 0.4, 0.6, 1.0], (50, 1)), disk=True)
    coarse = np.array([[0.1, 0.0, 0.0], [0.0, -0.3, 0.0]])
    view.set_level(np.tile([1.0, 0.0, 0.0, 1.0], (50, 1)), coarse, np.tile([0.0, 1.0, 0.0, 1.0], (2, 1)))
    assert "2 clusters, mean centre radius 0.20" in view.title.text()
    assert view._radius_circle.radius == np.linalg.norm(coarse, axis=1).mean()
    np.testing.assert_allclose(view.colors[0], [1.0, 0.0, 0.0, 1.0])
    fine = np.array([[0.6, 0.0, 0.0], [0.0, 0.0, 0.8], [0.0, 0.7, 0.0]])   # the radius uses every coordinate
    view.set_level(np.tile([1.0, 0.0, 0.0, 1.0], (50, 1)), fine, np.tile([0.0, 1.0, 0.0, 1.0], (3, 1)))
    assert "3 clusters, mean centre radius 0.70" in view.title.text()
    assert sum(patch is view._radius_circle for patch in view.axes.patches) == 1   # the old circle is gone


def test_euclidean_view_has_no_disk_radius(qtbot):
    view = PoincareView()
    qtbot.addWidget(view)
    view.show_points(np.ones((4, 2)), np.tile([0.2, 0.4, 0.6, 1.0], (4, 1)), disk=False)
    view.set_level(np.tile([0.2, 0.4, 0.6, 1.0], (4, 1)), np.ones((1, 2)), np.tile([0.0, 1.0, 0.0, 1.0], (1, 1)))
    assert view._radius_circle is None and "Euclidean" in view.title.text()


def test_segment_widget_shows_the_sampled_latents_in_the_colours_of_the_labels_layer(make_napari_viewer, qtbot,
                                                                                      tmp_path):
    """A tiny hyperbolic model segments a volume in a real viewer: the disk shows the segmentation's
    sampled latent points, each in the colour its voxel has in the labels layer, at every level."""
    from matplotlib.patches import Circle

    from napari_hypseg.core.config import get_preset
    from napari_hypseg.core.progress import run_to_completion
    from napari_hypseg.core.training import train
    from napari_hypseg.widgets import SegmentWidget, TrainWidget

    volume = np.random.default_rng(1).normal(100, 10, size=(16, 16, 16)).astype(np.float32)
    config = get_preset("fast", steps=1, batch_size=2, encoder_channels=(4,), hidden=8, n_samples=1,
                        warmup_steps=0)
    run_to_completion(train([volume], config, checkpoint_path=tmp_path / "model.pt", device="cpu"))
    viewer = make_napari_viewer(show=True)
    image = viewer.add_image(volume, name="volume")
    segmenter = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segmenter)
    TrainWidget(viewer).load_model(tmp_path / "model.pt")
    segmenter.image.value = image
    segmenter.n_fine.setValue(6)
    segmenter.devices.device = "cpu"
    segmenter.segment_button.click()
    qtbot.waitUntil(lambda: not segmenter.running and segmenter.segmentation is not None, timeout=300_000)

    segmentation, view, layer = segmenter.segmentation, segmenter.poincare, segmenter.labels_layer
    np.testing.assert_allclose(view.points, segmentation.sample_points[:, :2])
    assert any(isinstance(p, Circle) and p.radius == 1.0 for p in view.axes.patches)   # the ball's boundary
    for k in (2, 5):
        segmenter.k_slider.setValue(k)   # applied once the event loop runs
        qtbot.waitUntil(lambda k=k: f"{k} clusters" in view.title.text(), timeout=5_000)
        np.testing.assert_allclose(view.colors, layer.colormap.map(segmentation.sample_labels), atol=1e-6)
        assert len(np.unique(view.colors, axis=0)) <= k
