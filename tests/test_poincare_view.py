import numpy as np

from napari_hypseg.widgets._poincare_view import PoincareView


def test_disk_view_marks_the_mean_centre_radius_of_each_level(qtbot):
    view = PoincareView()
    qtbot.addWidget(view)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, size=(50, 3))
    view.show_points(points, np.tile([0.2, 0.4, 0.6, 1.0], (50, 1)), disk=True)
    coarse = np.array([[0.1, 0.0, 0.0], [0.0, -0.3, 0.0]])
    view.set_level(np.tile([1.0, 0.0, 0.0, 1.0], (50, 1)), coarse, np.tile([0.0, 1.0, 0.0, 1.0], (2, 1)))
    assert "2 clusters, mean centre radius 0.20" in view.axes.get_title()
    assert view._radius_circle.radius == np.linalg.norm(coarse, axis=1).mean()
    np.testing.assert_allclose(view.colors[0], [1.0, 0.0, 0.0, 1.0])
    fine = np.array([[0.6, 0.0, 0.0], [0.0, 0.0, 0.8], [0.0, 0.7, 0.0]])   # the radius uses every coordinate
    view.set_level(np.tile([1.0, 0.0, 0.0, 1.0], (50, 1)), fine, np.tile([0.0, 1.0, 0.0, 1.0], (3, 1)))
    assert "3 clusters, mean centre radius 0.70" in view.axes.get_title()
    assert sum(patch is view._radius_circle for patch in view.axes.patches) == 1   # the old circle is gone


def test_euclidean_view_has_no_disk_radius(qtbot):
    view = PoincareView()
    qtbot.addWidget(view)
    view.show_points(np.ones((4, 2)), np.tile([0.2, 0.4, 0.6, 1.0], (4, 1)), disk=False)
    view.set_level(np.tile([0.2, 0.4, 0.6, 1.0], (4, 1)), np.ones((1, 2)), np.tile([0.0, 1.0, 0.0, 1.0], (1, 1)))
    assert view._radius_circle is None and "Euclidean" in view.axes.get_title()
