"""How long one move of the hierarchy slider takes on a 256³ volume: the core's lookup, no model run.

The widget's slider calls `Segmentation.labels_at_k` / `labels_at_radius` and assigns the result to
one Labels layer; this measures the core part for every k and a sweep of radii.

    python benchmarks/hierarchy_slider.py [--side 256] [--n-fine 16]
    xvfb-run -a python benchmarks/hierarchy_slider.py --viewer   # also the napari Labels update
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import best_seconds, markdown_table, write_section  # noqa: E402

from napari_hypseg.core.hierarchy import ClusterHierarchy  # noqa: E402
from napari_hypseg.core.segmentation import Segmentation  # noqa: E402


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--n-fine", type=int, default=16)
    parser.add_argument("--viewer", action="store_true",
                        help="also time the update of a Labels layer in a shown napari viewer (needs a display)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(args.n_fine, 3))
    centroids = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0.2, 0.9, (args.n_fine, 1))
    fine = rng.integers(1, args.n_fine + 1, size=(args.side,) * 3, dtype=np.uint16)
    counts = np.bincount(fine.reshape(-1), minlength=args.n_fine + 1)
    hierarchy = ClusterHierarchy.from_centroids(centroids, weights=counts[1:])
    segmentation = Segmentation(fine_labels=fine, hierarchy=hierarchy, centroids=centroids, fine_counts=counts,
                                sample_points=centroids, sample_labels=np.arange(1, args.n_fine + 1))

    by_k = [milliseconds(lambda k=k: segmentation.labels_at_k(k)) for k in range(1, args.n_fine + 1)]
    low, high = hierarchy.radius_range
    radii = np.linspace(low, high, 9)
    by_radius = [milliseconds(lambda r=r: segmentation.labels_at_radius(r)) for r in radii]
    rows = [["labels at k (k = 1…%d)" % args.n_fine, float(np.median(by_k)), float(np.max(by_k))],
            ["labels at radius (9 radii)", float(np.median(by_radius)), float(np.max(by_radius))]]
    if args.viewer:
        rows.append(["… and the Labels layer updated in napari", *viewer_update_ms(segmentation, args.n_fine)])
    table = markdown_table(["slider move (core lookup)", "median ms", "max ms"], rows)
    print(table)
    if not args.no_write:
        body = (f"A {args.side}³ volume of {args.n_fine} fine clusters; best of 3 per position. "
                f"Target: under 100 ms per move.\n\n{table}\n")
        write_section("hierarchy_slider", "Hierarchy slider", body, script=__file__, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
