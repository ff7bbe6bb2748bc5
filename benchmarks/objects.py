"""Objects of a cluster against the true small objects of the toy volumes: detection precision and recall.

For every unseen toy volume (seeds 1000.. by default) the true objects are the connected components of
the small-object classes of the level-3 truth (small spheres in vesicles, small cubes in mitochondria).
A segmentation at k = 8 is made by

- k-means on smoothed intensity (core/baselines.py; no training, no truth), and, unless
  --no-model, by
- the default pipeline: a model trained with the `fast` preset (300 steps on 8 training volumes,
  seeds 0..7), one fine clustering (16 fine clusters) per test volume, the tree cut at k = 8.

In each segmentation the cluster matched to each small-object class by the Hungarian matching of the
evaluation (hypseg evaluate) is taken — an oracle choice of cluster that stands for a user picking
the cluster by eye — and its objects (core.objects.cluster_objects, 6-connected, with a size filter)
are the detections. A detection is a true positive when its centroid lies within --tolerance voxels
of a true object's centroid, each true object matched at most once (Hungarian on distance).
Precision = TP / detections, recall = TP / true objects, pooled over the volumes.

    python benchmarks/objects.py                       # both variants, 20 volumes, k-means and the model
    python benchmarks/objects.py --no-model --n-test 5 # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import markdown_table, write_section  # noqa: E402

from napari_hypseg.core.baselines import kmeans_smoothed  # noqa: E402
from napari_hypseg.core.config import get_preset  # noqa: E402
from napari_hypseg.core.metrics import score_segmentation  # noqa: E402
from napari_hypseg.core.objects import ObjectsError, cluster_objects, match_points  # noqa: E402
from napari_hypseg.core.progress import run_to_completion  # noqa: E402
from napari_hypseg.core.segmentation import segment  # noqa: E402
from napari_hypseg.core.synthetic import SMALL_CUBE, SMALL_SPHERE, make_toy_volume  # noqa: E402
from napari_hypseg.core.training import train  # noqa: E402

K = 8
CLASSES = {SMALL_SPHERE: "small sphere", SMALL_CUBE: "small cube"}


def true_centroids(truth3: np.ndarray, class_id: int) -> np.ndarray:
    return cluster_objects(truth3, class_id).centroids_px


def size_filter(text: str) -> tuple[int, int | None]:
    """"MIN:MAX" voxels (MAX may be empty: no maximum)."""
    low, _, high = text.partition(":")
    return int(low or 0), int(high) if high else None


def describe(size: tuple[int, int | None]) -> str:
    return f"{size[0]}..{size[1]}" if size[1] is not None else f"≥ {size[0]}"


def detections(labels: np.ndarray, cluster: int | None, size: tuple[int, int | None]) -> np.ndarray:
    if cluster is None:
        return np.zeros((0, 3))
    try:
        return cluster_objects(labels, cluster, min_size=size[0], max_size=size[1]).centroids_px
    except ObjectsError:      # the cluster is empty, or no object passes the size filter
        return np.zeros((0, 3))


def count(labels: np.ndarray, truth3: np.ndarray, sizes, tolerance: float) -> dict:
    """{(class, size filter): [TP, detections, true objects]} for one volume."""
    matching = score_segmentation(labels, truth3).matching
    counts = {}
    for class_id in CLASSES:
        truth = true_centroids(truth3, class_id)
        for size in sizes:
            found = detections(labels, matching.get(class_id), size)
            tp = len(match_points(found, truth, tolerance)[0])
            counts[class_id, size] = np.array([tp, len(found), len(truth)])
    return counts


def summarise(per_volume: list[dict], sizes) -> list[list]:
    rows = []
    for size in sizes:
        for classes, name in [((c,), CLASSES[c]) for c in CLASSES] + [(tuple(CLASSES), "both")]:
            tp, found, truth = sum(v[c, size] for v in per_volume for c in classes)
            precision = tp / found if found else float("nan")
            recall = tp / truth if truth else float("nan")
            rows.append([name, describe(size), int(truth), int(found), int(tp), precision, recall])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-test", type=int, default=20)
    parser.add_argument("--test-seed", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tolerance", type=float, default=2.0, help="centroid tolerance in voxels")
    parser.add_argument("--sizes", nargs="+", default=["1:", "10:400", "20:400"],
                        help="size filters to report, MIN:MAX voxels per object (MAX may be empty)")
    parser.add_argument("--variants", nargs="+", default=["regular", "irregular"], choices=["regular", "irregular"])
    parser.add_argument("--no-model", action="store_true", help="k-means on smoothed intensity only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    sizes = [size_filter(text) for text in args.sizes]

    sections = []
    header = ["segmentation", "variant", "class", "size (voxels)", "true objects", "detections", "TP",
              "precision", "recall"]
    rows = []
    for variant in args.variants:
        irregular = variant == "irregular"
        tests = [make_toy_volume(args.test_seed + i, irregular=irregular) for i in range(args.n_test)]
        started = time.perf_counter()
        per_volume = [count(kmeans_smoothed(t.image, K, seed=0), t.truth[3], sizes, args.tolerance)
                      for t in tests]
        print(f"{variant}: k-means in {time.perf_counter() - started:.0f} s", flush=True)
        rows += [["k-means, smoothed intensity", variant, *row] for row in summarise(per_volume, sizes)]
        if args.no_model:
            continue
        config = get_preset("fast", steps=args.steps, seed=0)
        images = [make_toy_volume(i, irregular=irregular).image for i in range(args.n_train)]
        started = time.perf_counter()
        trained = run_to_completion(train(images, config, device=args.device))
        print(f"{variant}: trained in {time.perf_counter() - started:.0f} s", flush=True)
        per_volume = []
        for t in tests:
            segmentation = run_to_completion(segment(trained, t.image, n_fine=16, device=args.device, seed=0))
            per_volume.append(count(segmentation.labels_at_k(K), t.truth[3], sizes, args.tolerance))
        rows += [[f"model (`fast`, {args.steps} steps), tree cut at k={K}", variant, *row]
                 for row in summarise(per_volume, sizes)]

    table = markdown_table(header, rows)
    print("\n" + table)
    sections.append(table)
    if not args.no_write:
        seeds = f"{args.test_seed}..{args.test_seed + args.n_test - 1}"
        body = (
            f"Toy volumes (50³), seeds {seeds}, {' and '.join(args.variants)} variants. True objects: the "
            "6-connected components of the level-3 classes *small sphere* and *small cube*. Each segmentation "
            f"has k = {K} clusters; for each class, the cluster the evaluation's Hungarian matching pairs with it "
            "is taken (an oracle choice standing for a user picking the cluster by eye), and its 6-connected "
            "components within the *size* range are the detections. A detection is correct when its "
            f"centroid is within {args.tolerance:g} voxels of a true object's centroid (one-to-one). "
            "Counts are pooled over the volumes; *both* pools the two classes. The model rows: `fast` preset, "
            f"{args.steps} training steps on {args.n_train} training volumes (seeds 0..{args.n_train - 1}) of the "
            "same variant, 16 fine clusters per test volume, the tree cut at k = 8.\n\n" + table + "\n")
        write_section("objects", "Objects: detection of the small objects (toy volumes)", body,
                      script=__file__, argv=argv, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
