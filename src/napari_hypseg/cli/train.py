"""`hypseg train`: fit a model on one or more volumes and write it to a model file.

Ctrl-C stops after the current step and still writes the model; `--resume MODEL` continues it.
Started by torchrun (`torchrun --nproc_per_node N -m napari_hypseg.cli train ...`), the N processes
train one model together, each drawing --batch-size triplets per step; rank 0 writes the model.
--bin trains on binned volumes (segment them with the same --bin); --roi and --mask keep every
training patch inside a box (a mask's bounding box).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from ..core.config import DEFAULT_PRESET, PRECISIONS, PRESETS
from ._region import add_region_arguments, check_region_arguments, load_region

MODEL_SUFFIX = ".pt"
"""What a model file's name ends in (the Train widget adds it too), so a model is never taken for a volume."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a model on volumes (Ctrl-C stops and saves)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("volumes", nargs="+", type=Path, metavar="VOLUME",
                        help="training volumes (.mrc .tif .nii.gz ...); several volumes train one model")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL",
                        help="model file to write (.pt); a <MODEL>.json summary is written beside it")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help=f"parameter preset (default: {DEFAULT_PRESET}, or the --resume model's settings)")
    parser.add_argument("--steps", type=int, default=None, help="training steps in all (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=None, help="triplets per step (default: the preset's)")
    parser.add_argument("--lr", type=float, default=None, dest="learning_rate",
                        help="learning rate (default: the preset's)")
    parser.add_argument("--intensity-jitter", type=float, default=None, metavar="S",
                        help="spread of the random brightness offset of each training patch; 0 where "
                             "brightness alone defines the classes (default: the preset's)")
    parser.add_argument("--texture-weight", type=float, default=None, metavar="W",
                        help="weight of the texture reconstruction target; 0 = off, the paper's objective "
                             "(default: the preset's)")
    parser.add_argument("--view-weight", type=float, default=None, metavar="W",
                        help="weight of the same-scale triplet (nearby patches of the segmentation context "
                             "pulled together, a distant one pushed away); 0 = off (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="arithmetic of the decoder's convolutions: float32, auto (bfloat16 where the "
                             "hardware has it natively, else float32) or bfloat16 (default: float32)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the whole run (default: the preset's)")
    parser.add_argument("--resume", type=Path, default=None, metavar="MODEL",
                        help="continue training this model file (it may be --out itself)")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                        help="save the model every N steps (default: the preset's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_region_arguments(parser, several=True)
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core.checkpoint import read_checkpoint, require_sidecar_free
    from ..core.config import get_preset
    from ..core.device import resolve_device
    from ..core.distributed import torchrun_processes
    from ..core.errors import ConfigError
    from ..core.progress import run_to_completion
    from ..core.region import region_volume
    from ..core.training import train
    from ..core.validation import integer, output_path
    from ..core.volume_io import READ_SUFFIXES, read_volume, suffix_of
    from ._progress import ProgressLine

    # Every check runs before the model's folder is made and before training starts.
    out: Path = args.out
    if out.is_dir() or out.suffix.lower() != MODEL_SUFFIX:
        volume_type = suffix_of(out) in READ_SUFFIXES
        found = "is a folder" if out.is_dir() else \
            f"ends in {suffix_of(out)}, a volume file type" if volume_type else f"does not end in {MODEL_SUFFIX}"
        example = out / f"model{MODEL_SUFFIX}" if out.is_dir() else \
            out.with_name((out.name[:-len(suffix_of(out))] if volume_type else out.stem) + MODEL_SUFFIX)
        raise ConfigError(f"--out {out} {found}; a model file name ends in {MODEL_SUFFIX}, e.g. {example}")
    continuing_out = args.resume is not None and out.exists() and args.resume.exists() and \
        os.path.samefile(out, args.resume)
    if out.exists() and not out.is_dir() and not args.overwrite and not continuing_out:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it, or --resume {out} to "
                          "continue training it.")
    require_sidecar_free(out)
    if args.seed is not None:
        integer("--seed", args.seed, minimum=0)
    if args.preset is None and args.resume is not None:
        base = read_checkpoint(args.resume)["config"]
    else:
        base = get_preset(args.preset or DEFAULT_PRESET)
    config = base.with_overrides(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                 intensity_jitter=args.intensity_jitter, texture_weight=args.texture_weight,
                                 view_weight=args.view_weight, seed=args.seed, checkpoint_every=args.checkpoint_every)
    check_region_arguments(args, args.volumes)
    resolve_device(args.device)
    sources = [read_volume(path, level=args.level) for path in args.volumes]   # mapped where the format allows
    regions = [load_region(args, volume, index) for index, volume in enumerate(sources)]
    output_path(out, inputs=args.volumes, overwrite=True, what="--out model", create_folder=True)
    volumes = [np.asarray(region_volume(volume.data, region)) for volume, region in zip(sources, regions)]

    stop = threading.Event()
    with torchrun_processes(args.device) as (device, writes):
        line = ProgressLine() if writes else None
        with _ctrl_c_requests_stop(stop, line):
            trained = run_to_completion(
                train(volumes, config, checkpoint_path=out, resume=args.resume, device=device, stop=stop,
                      precision=args.precision), line)
    if line is None:   # another rank of a torchrun: rank 0 reports
        return 130 if trained.step < config.steps else 0
    line.close()
    if trained.step < config.steps:
        print(f"stopped at step {trained.step} of {config.steps}; the model is saved in {out}. Continue with: "
              f"hypseg train VOLUME... --out {out} --resume {out}", file=sys.stderr)
        return 130
    print(f"model written to {out} ({trained.step} steps)")
    return 0


@contextmanager
def _ctrl_c_requests_stop(stop: threading.Event, line):
    """The first Ctrl-C asks training to stop after the current step (it then saves); a second one
    aborts at once without writing.

    Python runs a handler once for signals that arrive during one long tensor operation, so the
    handler also counts the bytes the interpreter writes to the wakeup pipe for every signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    receiver, sender = socket.socketpair()
    receiver.setblocking(False)
    sender.setblocking(False)

    def signals_received() -> int:
        try:
            return len(receiver.recv(64))
        except BlockingIOError:
            return 0

    def request_stop(signum, frame):
        if stop.is_set() or signals_received() > 1:
            raise KeyboardInterrupt
        stop.set()
        if line is None:
            return
        line.close()
        print("stopping after this step and saving the model (Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)

    previous_wakeup = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.set_wakeup_fd(previous_wakeup)
        receiver.close()
        sender.close()
