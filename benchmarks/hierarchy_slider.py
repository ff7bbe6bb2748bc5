"""How long one move of the hierarchy slider takes: the core's lookup, and the move in a real viewer.

The Segment widget's Labels layer holds the fine labels once; a slider move gives it a new colour table
(fine id -> colour of its coarse cluster, widgets/_cluster_colormap.py) and a features table of n_fine
rows, so its cost does not depend on the volume's size. `--viewer` times that move where users make
it, the Segment widget's k slider in a shown viewer (2D, as the widget starts), napari's redraw included
(Qt events processed), next to the old way (the lookup over every voxel and `layer.data = ...`).

    python benchmarks/hierarchy_slider.py [--shape 256x256x256] [--n-fine 16]
    xvfb-run -a python benchmarks/hierarchy_slider.py --viewer --shape 300x1024x1024
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import best_seconds, markdown_table, write_section  # noqa: E402

from napari_hypseg.core.hierarchy import ClusterHierarchy  # noqa: E402
from napari_hypseg.core.segmentation import SAMPLE_POINTS, Segmentation  # noqa: E402


def milliseconds(function) -> float:
    return 1000 * best_seconds(function)


def viewer_update_ms(segmentation: Segmentation, n_fine: int) -> list[float]:
    """Lookup plus `layer.data = ...` and the redraw, in a shown viewer (2D, as the widget starts)."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    layer = viewer.add_labels(segmentation.labels_at_k(n_fine))
    QApplication.processEvents()

    def move(k: int) -> None:
        layer.data = segmentation.labels_at_k(k)
        QApplication.processEvents()

    times = [milliseconds(lambda k=k: move(k)) for k in range(1, n_fine + 1)]
    viewer.close()
    return [float(np.median(times)), float(np.max(times))]


def widget_move_ms(segmentation: Segmentation, n_fine: int) -> list[list]:
    """Moves of the Segment widget's k slider in a shown viewer, napari's redraw included (Qt events
    processed): the widget's own `apply_level` (colour table, features, metadata, disk view) on the
    segmentation shown as the widget shows a finished run. A first visit of every level, then revisits
    (cached tables), each position timed at its best of 3 passes."""
    import time

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_hypseg.core.checkpoint import TrainedModel
    from napari_hypseg.core.config import get_preset
    from napari_hypseg.core.model import HypsegVAE
    from napari_hypseg.core.normalization import IntensityStats
    from napari_hypseg.widgets._segment import SegmentWidget
    from napari_hypseg.widgets._session import ModelEntry

    viewer = napari.Viewer(show=True)
    image = segmentation.fine_labels.astype(np.float32)     # a picture of the regions, same grid
    image_layer = viewer.add_image(image, name="tomogram")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    config = get_preset("fast")
    entry = ModelEntry("model", TrainedModel(model=HypsegVAE(config), config=config,
                                             stats=IntensityStats.fit(image[:1]), step=0, device=torch.device("cpu")))
    widget._show_result(image_layer, entry, image, segmentation)   # what a finished run does (fine sums once)
    QApplication.processEvents()

    def move(k: int) -> float:
        time.sleep(0.1)                  # past the slider's throttle, so this move is drawn at once
        QApplication.processEvents()
        started = time.perf_counter()
        widget.k_slider.setValue(k)
        QApplication.processEvents()
        elapsed = 1000 * (time.perf_counter() - started)
        if widget.labels_layer.metadata["hypseg"]["level"] != k:
            raise RuntimeError(f"the slider move to k = {k} was not applied")
        return elapsed

    order = list(range(1, n_fine + 1))
    shown = widget.k_slider.value()      # drawn by _show_result already: not a first visit
    first = [move(k) for k in order if k != shown]
    again = np.min([[move(k) for k in order] for _ in range(3)], axis=0)
    viewer.close()
    return [["the Segment widget's move, first visit of a level, napari redraw included",
             float(np.median(first)), float(np.max(first))],
            ["the Segment widget's move, a level seen before, napari redraw included",
             float(np.median(again)), float(np.max(again))]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="256x256x256", help="Z x Y x X of the fine labels (default: 256³)")
    parser.add_argument("--n-fine", type=int, default=16)
    parser.add_argument("--viewer", action="store_true",
                        help="also time the update of a Labels layer in a shown napari viewer (needs a display)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(args.n_fine, 3))
    centroids = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0.2, 0.9, (args.n_fine, 1))
    shape = tuple(int(v) for v in args.shape.lower().split("x"))
    fine = rng.integers(1, args.n_fine + 1, size=shape, dtype=np.uint8 if args.n_fine < 256 else np.uint16)
    counts = np.bincount(fine.reshape(-1), minlength=args.n_fine + 1)
    hierarchy = ClusterHierarchy.from_centroids(centroids, weights=counts[1:])
    # As many sampled latent points as a segmentation keeps for the disk view, around their centroids.
    sample_labels = rng.integers(1, args.n_fine + 1, size=SAMPLE_POINTS)
    sample_points = (centroids[sample_labels - 1] + rng.normal(scale=0.02, size=(SAMPLE_POINTS, 3))).astype(np.float32)
    segmentation = Segmentation(fine_labels=fine, hierarchy=hierarchy, centroids=centroids, fine_counts=counts,
                                sample_points=sample_points, sample_labels=sample_labels)

    by_k = [milliseconds(lambda k=k: segmentation.labels_at_k(k)) for k in range(1, args.n_fine + 1)]
    low, high = hierarchy.radius_range
    radii = np.linspace(low, high, 9)
    by_radius = [milliseconds(lambda r=r: segmentation.labels_at_radius(r)) for r in radii]
    rows = [["labels at k (k = 1…%d)" % args.n_fine, float(np.median(by_k)), float(np.max(by_k))],
            ["labels at radius (9 radii)", float(np.median(by_radius)), float(np.max(by_radius))]]
    if args.viewer:
        rows += widget_move_ms(segmentation, args.n_fine)
        rows.append(["(old way) labels at k written into the Labels layer, redraw included",
                     *viewer_update_ms(segmentation, args.n_fine)])
    table = markdown_table(["slider move", "median ms", "max ms"], rows)
    print(table)
    if not args.no_write:
        body = (f"Fine labels of shape {' x '.join(map(str, shape))} (Z x Y x X), {args.n_fine} fine clusters; best of "
                "3 per position, k = 1…n. Target: under 50 ms per move of the widget, napari redraw included "
                "(the first two rows are the per-voxel lookup that export and per-cluster layers apply when "
                f"asked).\n\n{table}\n")
        write_section("hierarchy_slider", "Hierarchy slider", body, script=__file__, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
