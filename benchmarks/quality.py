"""The quality benchmark: does the learnt hierarchy beat hand-made features, at every level?

One run scores, on the same volumes and with the same protocol (Hungarian-matched Dice, background
included, unmatched classes count 0; k = 2 / 4 / 8 for levels 1 / 2 / 3, core/evaluation.py):
- the default pipeline (the default preset, trained once per training seed; `segment` with its
  defaults, the tree cut at k), mean ± standard deviation over the training seeds (and, with
  --cluster-seeds, over segment()'s seeds for each training);
- its control: the same model after 1 training step (what training adds);
- the ablation rows in ABLATIONS (each a configuration change of the default);
- the four classical baselines (core/baselines.py);
on (a) the regular and irregular synthetic sets -- 8 training volumes (seeds 0-7), test volumes of
seeds 5000+ that no setting was ever tuned on (`--split validation` scores the volumes of seeds 2000+
instead, on which settings are chosen; see docs/tuning.md); with `--sets phantom`, the brain-like MRI
phantom of core/phantom.py the same way (MNI152's levels: background / brain, then background / grey /
white / other), on whose validation volumes settings for MRI-like data are chosen -- and
(b) the MNI152 T1 template shipped with nilearn, binned to 2 mm (truth: background / brain, then background / grey /
white / other matter), the model trained on the volume itself. Per-class Dice and the mean, per level.
Also the hyperbolic check: the mean radius in the ball of the coarse clusters' centroids at each level.

    python benchmarks/quality.py                                  # everything: about 1-2 hours on 2 CPU cores
    python benchmarks/quality.py --sets regular --n-test 5 --train-seeds 0 --no-mni --no-write   # a quick look
    python benchmarks/quality.py --split validation --train-seeds 0 --ablations inference --no-mni  # tuning
    python benchmarks/quality.py --sets --train-seeds 0 --cluster-seeds 0 1 2 3 4 --no-write  # MNI152 vs clustering seed
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import markdown_table, write_section  # noqa: E402

from napari_hypseg.core.baselines import BASELINES  # noqa: E402
from napari_hypseg.core.config import DEFAULT_PRESET, get_preset  # noqa: E402
from napari_hypseg.core.evaluation import (  # noqa: E402
    LEVEL_K,
    TOY_TEST_SEED,
    TOY_TRAIN_VOLUMES,
    TOY_VALIDATION_SEED,
    mean_dice,
    score_levels,
)
from napari_hypseg.core.phantom import PHANTOM_LEVEL_K, PHANTOM_LEVELS, make_brain_phantom  # noqa: E402
from napari_hypseg.core.progress import run_to_completion  # noqa: E402
from napari_hypseg.core.region import bin_volume  # noqa: E402
from napari_hypseg.core.segmentation import segment  # noqa: E402
from napari_hypseg.core.synthetic import LEVEL_CLASSES, make_toy_volume  # noqa: E402
from napari_hypseg.core.training import train  # noqa: E402

DEFAULT_ROW = "napari-hypseg (default)"
CONTROL_ROW = "the same after 1 training step (control)"
ABLATIONS: dict[str, tuple[dict, dict]] = {
    "default without boundary refinement (boundary_refinement 0; the previous default)": (
        {}, {"boundary_refinement": 0.0}),
    "default with the Ward tree throughout (linkage ward)": (
        {}, {"linkage": "ward", "ward_top": 0}),
    "default without coarse stages in the tree (hierarchy_neighbours ())": ({}, {"hierarchy_neighbours": ()}),
    "default with the latent-context tree instead (hierarchy_scales 8:2, 4:6; hierarchy_neighbours ())": (
        {}, {"hierarchy_scales": ((8, 2.0), (4, 6.0)), "hierarchy_neighbours": ()}),
    "default without the texture target (texture_weight 0)": ({"texture_weight": 0.0}, {}),
    "default with the oriented texture descriptor": ({"texture_descriptor": "oriented"}, {}),
    "default with the same-scale triplet (view_weight 7.8125)": ({"view_weight": 1e3 / 128}, {}),
    "default with the photometric invariance term (invariance_weight 100)": ({"invariance_weight": 100.0}, {}),
    "default with the normalised reconstruction target": ({"reconstruction_target": "normalised"}, {}),
    "default with latents at every other grid point (inference_stride 2)": ({}, {"inference_stride": 2}),
    "default with each latent channel standardised on its own (latent_scaling channel; the previous default)": (
        {}, {"latent_scaling": "channel"}),
    "default without image features (image_features 0)": ({}, {"image_features": 0.0}),
    "the control without image features (what training adds to the latents)": ({"steps": 1}, {"image_features": 0.0}),
    "default with k-means fine clusters (fine_clustering kmeans)": ({}, {"fine_clustering": "kmeans"}),
    "MRI candidate (image_features 4, linkage ward, ward_top 0, boundary_refinement 0.01)": (
        {}, {"image_features": 4.0, "linkage": "ward", "ward_top": 0, "boundary_refinement": 0.01}),
    "MRI narrow context (context 3, latent_smoothing 0.7, linkage ward, ward_top 0)": (
        {}, {"context": 3, "latent_smoothing": 0.7, "linkage": "ward", "ward_top": 0}),
}
"""Row name -> (configuration overrides of the default preset, segment() keyword overrides)."""
SPLITS = {"test": (TOY_TEST_SEED, "unseen test"), "validation": (TOY_VALIDATION_SEED, "validation")}
"""--split -> (seed of its first synthetic volume, how the report names its volumes)."""
MNI_LEVELS, MNI_LEVEL_K = PHANTOM_LEVELS, PHANTOM_LEVEL_K   # the phantom follows MNI152's protocol
SET_LEVELS = {"regular": (LEVEL_CLASSES, LEVEL_K), "irregular": (LEVEL_CLASSES, LEVEL_K),
              "phantom": (PHANTOM_LEVELS, PHANTOM_LEVEL_K)}
"""--sets name -> (class names per level, k per level)."""


def model_rows(ablations: str | None, only=None) -> dict[str, tuple[dict, dict]]:
    """The default and its control, plus all ABLATIONS ("all") or those that only change segment()
    settings and so reuse the default's trainings ("inference"); with `only`, just the ablations
    whose name contains one of those words."""
    rows = {DEFAULT_ROW: ({}, {}), CONTROL_ROW: ({"steps": 1}, {})}
    rows.update({name: row for name, row in ABLATIONS.items() if (ablations == "all" or
                 (ablations == "inference" and not row[0])) and (not only or any(word in name for word in only))})
    return rows


_TRAINED: dict = {}
"""Models trained in this run, by (training set, configuration): rows that change only segment()
settings reuse them."""


def run_model(volumes, tests, overrides, segment_kwargs, seed, device, level_k, steps=None, cluster_seed=0):
    """Train on `volumes`, segment each test image (clustering seed `cluster_seed`); per-test scores and
    centroid radii per level."""
    config = get_preset(DEFAULT_PRESET, **{"seed": seed, "steps": steps, **overrides})
    key = (id(volumes), repr(config))
    if key not in _TRAINED:
        _TRAINED[key] = run_to_completion(train(volumes, config, device=device))
    trained = _TRAINED[key]
    scores, radii = [], []
    for image, truth in tests:
        segmentation = run_to_completion(segment(trained, image, device=device, seed=cluster_seed, **segment_kwargs))
        scores.append(score_levels(segmentation.labels_at_k, truth, level_k))
        radii.append([_mean_centroid_radius(segmentation, k) for k in level_k.values()])
    return scores, radii


def _mean_centroid_radius(segmentation, k: int) -> float:
    lookup = segmentation.hierarchy.lookup_at_k(k)
    return float(np.linalg.norm(segmentation.hierarchy.coarse_centroids(lookup), axis=1).mean())


def summarise(name, runs, class_names, level_k):
    """runs: one list of per-test {level: Score} per training run -> a table row and per-class rows."""
    levels = list(level_k)
    means = np.array([[mean_dice(run, level) for level in levels] for run in runs])
    cells = [f"{m:.3f}" if len(runs) == 1 else f"{m:.3f} ± {d:.3f}" for m, d in zip(means.mean(0), means.std(0))]
    if len(runs) > 1:
        print(f"  {name:<48} per run: " + "; ".join(" / ".join(f"{v:.3f}" for v in run) for run in means), flush=True)
    per_class = {level: [float(np.mean([s[level].per_class_dice[c] for run in runs for s in run]))
                         for c in range(len(class_names[level]))] for level in levels}
    print(f"  {name:<48} " + "  ".join(f"L{level} {cell}" for level, cell in zip(levels, cells)), flush=True)
    return [name, *cells], per_class, means.mean(0)


def synthetic_volume(variant: str, seed: int):
    """(image, truth by level) of volume `seed` of a synthetic set."""
    volume = make_brain_phantom(seed) if variant == "phantom" else \
        make_toy_volume(seed, irregular=variant == "irregular")
    return volume.image, volume.truth


def toy_section(variant, args, rows):
    volumes = [synthetic_volume(variant, i)[0] for i in range(TOY_TRAIN_VOLUMES)]
    first, _ = SPLITS[args.split]
    tests = [synthetic_volume(variant, first + i) for i in range(args.n_test)]
    print(f"[quality] {variant}: {len(volumes)} training volumes, {len(tests)} {args.split} volumes "
          f"(seeds {first}+)", flush=True)
    return evaluate(tests, volumes, rows, args, *SET_LEVELS[variant])


def evaluate(tests, training_volumes, rows, args, class_names, level_k):
    table, per_class, means, radii_rows = [], [], {}, []
    for name, function in BASELINES.items():
        scores = [score_levels(lambda k, image=image: function(image, k, 0), truth, level_k) for image, truth in tests]
        row, classes, mean = summarise(name, [scores], class_names, level_k)
        table.append(row + ["—"])
        per_class.append((name, classes))
        means[name] = mean
    for name, (overrides, segment_kwargs) in rows.items():
        runs, radii, started = [], [], time.perf_counter()
        for seed in args.train_seeds:
            for cluster_seed in args.cluster_seeds:
                scores, run_radii = run_model(training_volumes, tests, overrides, segment_kwargs, seed, args.device,
                                              level_k, args.steps, cluster_seed)
                runs.append(scores)
                radii.append(np.mean(run_radii, axis=0))
        row, classes, mean = summarise(name, runs, class_names, level_k)
        table.append(row + [f"{(time.perf_counter() - started) / len(runs):.0f}"])
        per_class.append((name, classes))
        means[name] = mean
        radii_rows.append([name, *[f"{r:.3f}" for r in np.mean(radii, axis=0)]])
    return table, per_class, means, radii_rows


def mni_tests():
    """The MNI152 2009 T1 template and its truth (method.md §11); None if nilearn is not installed."""
    import importlib.util

    from napari_hypseg.core.volume_io import read_volume

    spec = importlib.util.find_spec("nilearn")
    if spec is None:
        return None
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    name = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    t1, gm, wm = (np.asarray(read_volume(data / name.format(kind)).data, dtype=np.float32)
                  for kind in ("t1", "gm", "wm"))
    # Binned 2 x 2 x 2 (1 mm -> 2 mm) to keep the benchmark within CPU minutes.
    t1, gm, wm = (bin_volume(v, 2) for v in (t1, gm, wm))
    brain = t1 > 0.2 * t1.max()
    tissue = np.argmax(np.stack([gm, wm, np.clip(1 - gm - wm, 0, 1)]), axis=0) + 1
    truth = {1: brain.astype(np.uint8), 2: np.where(brain, tissue, 0).astype(np.uint8)}
    return t1, truth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="*", default=["regular", "irregular"], choices=list(SET_LEVELS),
                        help="synthetic sets scored (default: regular irregular; phantom: the brain-like MRI "
                             "phantom of core/phantom.py, on which settings for MRI-like data are chosen)")
    parser.add_argument("--n-test", type=int, default=20, help="volumes scored per synthetic set")
    parser.add_argument("--split", choices=list(SPLITS), default="test",
                        help="score the test volumes (seeds %d+, the default: what is reported) or the validation "
                             "volumes (seeds %d+, on which settings are chosen)" % (TOY_TEST_SEED, TOY_VALIDATION_SEED))
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cluster-seeds", type=int, nargs="+", default=[0],
                        help="segment() seeds (the fine mixture's sample and start) each training is scored with; "
                             "every (training, clustering seed) pair is one run of the mean ± spread")
    parser.add_argument("--ablations", nargs="?", const="all", choices=["all", "inference"],
                        help="also the ablation rows: all of them (regular set only), or only those that reuse "
                             "the default's trainings (every synthetic set)")
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="of the ablation rows, only those whose name contains one of these words "
                             "(e.g. hierarchy_neighbours)")
    parser.add_argument("--no-mni", action="store_true", help="skip the MNI152 volume")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    sections = []
    for variant in args.sets:
        rows = model_rows(args.ablations if args.ablations == "inference" or variant == "regular" else None,
                          args.only)
        table, per_class, means, radii = toy_section(variant, args, rows)
        title = "Synthetic brain phantom set" if variant == "phantom" else f"Synthetic {variant} set"
        sections.append(report(title, table, per_class, means, radii, *SET_LEVELS[variant]))
    if not args.no_mni:
        mni = mni_tests()
        if mni is None:
            print("[quality] nilearn is not installed: skipping MNI152 (pip install -e '.[benchmarks]')")
        else:
            image, truth = mni
            print(f"[quality] MNI152: {image.shape}, the model trained on the volume itself", flush=True)
            rows = model_rows("inference" if args.ablations else None, args.only)
            table, per_class, means, radii = evaluate([(image, truth)], [image], rows, args, MNI_LEVELS, MNI_LEVEL_K)
            sections.append(report("MNI152 T1 (nilearn), trained on itself", table, per_class, means, radii,
                                   MNI_LEVELS, MNI_LEVEL_K))
    if not sections:
        print("error: nothing was scored (no synthetic set given and MNI152 skipped); nothing written", file=sys.stderr)
        return 2
    body = "\n\n".join(sections)
    print("\n" + body)
    if not args.no_write:
        steps = get_preset(DEFAULT_PRESET).steps
        first, kind = SPLITS[args.split]
        clustering = "" if args.cluster_seeds == [0] else \
            f", each segmented with clustering seeds {', '.join(map(str, args.cluster_seeds))}"
        scored = ([f"of the mean Dice over {args.n_test} {kind} volumes of each synthetic set (seeds {first}+; "
                   f"models trained on seeds 0-{TOY_TRAIN_VOLUMES - 1})"] if args.sets else []) + \
            ([] if args.no_mni else ["of the Dice on MNI152, the model trained on the volume itself"])
        intro = (f"Default preset `{DEFAULT_PRESET}` ({steps} training steps), trained once per seed "
                 f"{', '.join(map(str, args.train_seeds))}{clustering}; cells are mean ± standard deviation over those runs "
                 + "; ".join(scored) + ". Baselines are deterministic. \"best baseline\" is the best classical row "
                 "per level; \"margin\" is the default's lead over it.\n\n")
        parts = [*args.sets, *([] if args.no_mni else ["MNI152"])]
        validation = args.split == "validation"
        key = "quality_" + "_".join(part.lower() for part in parts) + ("_validation" if validation else "")
        title = f"Quality: the learnt hierarchy against hand-made features ({', '.join(parts)})" + \
            (", validation volumes" if validation else "")
        write_section(key, title, intro + body,
                      script=__file__, argv=argv, device=args.device)
    return 0


def report(title, table, per_class, means, radii, class_names, level_k) -> str:
    levels = list(level_k)
    best = np.max([means[name] for name in BASELINES], axis=0)
    margin = means[DEFAULT_ROW] - best
    summary = markdown_table(["", *[f"L{level} (k={k})" for level, k in level_k.items()]],
                             [["best baseline", *[f"{b:.3f}" for b in best]],
                              ["default − best baseline (margin)", *[f"{m:+.3f}" for m in margin]]])
    main_table = markdown_table(["method", *[f"L{level} (k={k})" for level, k in level_k.items()], "s per run"],
                                table)
    class_tables = []
    for level in levels:
        rows = [[name, *[f"{v:.3f}" for v in classes[level]]] for name, classes in per_class]
        class_tables.append(f"Per-class Dice, level {level}:\n\n" +
                            markdown_table(["method", *class_names[level]], rows))
    radius_table = markdown_table(["model", *[f"L{level} (k={k})" for level, k in level_k.items()]], radii)
    return (f"### {title}\n\n{main_table}\n\n{summary}\n\n" + "\n\n".join(class_tables) +
            f"\n\nMean radius (Euclidean norm in the Poincaré ball) of the coarse clusters' centroids per level; "
            f"coarse structures near the origin would show as radii growing with the level:\n\n{radius_table}")


if __name__ == "__main__":
    sys.exit(main())
