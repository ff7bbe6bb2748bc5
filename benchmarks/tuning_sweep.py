"""One point of a tuning sweep: train the `fast` preset with some overrides, then segment 3 test
volumes under several inference settings and print one JSON line per setting (see docs/tuning.md).

    python benchmarks/tuning_sweep.py NAME '{"steps": 300, "triplet_weight": 100}' [THREADS] [--out results.jsonl]

Inference settings default to contexts 9 and 5 with several smoothing σ; override them with the keys
"_eval" (a list of [context, sigma] or [context, sigma, n_fine]) and "_nfine" (fine clusters).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from napari_hypseg.core.config import get_preset
from napari_hypseg.core.evaluation import LEVEL_K
from napari_hypseg.core.metrics import score_segmentation
from napari_hypseg.core.progress import run_to_completion
from napari_hypseg.core.segmentation import segment
from napari_hypseg.core.synthetic import make_toy_volume
from napari_hypseg.core.training import train

DEFAULT_EVAL = [[9, 0.0], [9, 1.0], [9, 1.5], [9, 2.0], [9, 1.5, 24], [5, 1.0], [5, 2.0]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", help="JSON object of HypsegConfig overrides")
    parser.add_argument("threads", nargs="?", type=int, default=1)
    parser.add_argument("--out", default=None, help="append the JSON lines to this file too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    overrides = json.loads(args.overrides)
    settings = overrides.pop("_eval", DEFAULT_EVAL)
    n_fine_list = overrides.pop("_nfine", [16])
    config = get_preset("fast", **overrides)
    train_images = [make_toy_volume(i).image for i in range(4)]
    tests = [make_toy_volume(10000 + i) for i in range(3)]
    started = time.time()
    trained = run_to_completion(train(train_images, config, device="cpu"))
    train_seconds = time.time() - started
    for setting in settings:
        context, sigma = setting[:2]
        for n_fine in [setting[2]] if len(setting) > 2 else n_fine_list:
            dice = {level: [] for level in LEVEL_K}
            seconds = []
            for test in tests:
                started = time.time()
                segmentation = run_to_completion(segment(trained, test.image, n_fine=n_fine, context=context,
                                                         device="cpu", latent_smoothing=sigma))
                seconds.append(time.time() - started)
                for level, k in LEVEL_K.items():
                    dice[level].append(score_segmentation(segmentation.labels_at_k(k), test.truth[level]).mean_dice)
            record = dict(name=args.name, ov=overrides, ctx=context, smooth=sigma, n_fine=n_fine,
                          **{f"L{level}": float(np.mean(values)) for level, values in dice.items()},
                          train_s=round(train_seconds, 1), seg_s=round(float(np.mean(seconds)), 2))
            line = json.dumps(record)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as handle:
                    handle.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
