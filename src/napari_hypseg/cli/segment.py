"""`hypseg segment`: label a volume with a trained model, at k clusters or at a ball radius.

The volume is clustered once into --n-fine fine clusters; the labels written are a cut of the tree
over them (method.md §7), at --k clusters or at --radius in the Poincaré ball (fine clusters whose
lowest common ancestor lies at least that far from the origin merge; a smaller radius is coarser).
Several --k values write one file each, named LABELS with _k<K> before the suffix. Labels keep the
source's voxel spacing (and NIfTI affine); an --out ending in .zarr writes OME-Zarr.

Many volumes, one model: --out-dir DIR takes several volumes (paths, globs, list files) and writes one
label file per volume into DIR, here or, with --scheduler, as dask.distributed tasks (docs/distributed.md).

--bin segments a binned volume (labels on the binned grid, voxel size scaled, unless
--full-resolution); --roi and --mask limit the work to a box or a mask: voxels outside are 0.
Latents go to a memory-mapped file beside --out while the command runs, so memory stays bounded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.config import LATENT_SCALINGS, PRECISIONS
from ._region import add_region_arguments, check_region_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment volumes with a trained model (one, or many with --out-dir)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("volumes", nargs="+", metavar="VOLUME",
                        help="volume(s) to segment (.mrc .tif .nii.gz ...); with --out-dir also globs and list "
                             "files (.txt, one path or glob per line)")
    parser.add_argument("--model", type=Path, required=True, metavar="MODEL", help="model file from `hypseg train`")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, metavar="LABELS", help="label file to write (.tif .mrc .nii.gz ...)")
    out.add_argument("--out-dir", type=Path, metavar="DIR",
                     help="write <volume name>_labels<suffix> per volume into DIR; volumes whose labels exist "
                          "are skipped (unless --overwrite), a failed volume does not stop the others")
    parser.add_argument("--format", default=None, metavar="SUFFIX",
                        help="with --out-dir: label file type, e.g. .tif (default: the volume's own, .mrc for "
                             "other MRC suffixes)")
    parser.add_argument("--scheduler", default=None, metavar="local|ADDRESS",
                        help="with --out-dir: run each volume as a dask.distributed task, on a local cluster "
                             "('local') or on a running scheduler (e.g. tcp://host:8786); default: this process")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="with --scheduler local: worker processes (default: dask's choice)")
    level = parser.add_mutually_exclusive_group(required=True)
    level.add_argument("--k", type=int, nargs="+", metavar="K", help="number of clusters (one or more levels)")
    level.add_argument("--radius", type=float, metavar="R",
                       help="ball radius of the cut, 0..1 (hyperbolic models; a distance threshold for Euclidean ones)")
    parser.add_argument("--n-fine", type=int, default=16, metavar="N", help="fine clusters (default: 16)")
    parser.add_argument("--context", type=int, default=None, metavar="C",
                        help="neighbourhood side in voxels each latent describes (default: the model's)")
    parser.add_argument("--linkage", default=None,
                        help="how fine clusters merge into the tree below its Ward top (--ward-top): "
                             "the model's (centroid for the fast preset), ward, average or single "
                             "(merges exactly by LCA depth)")
    parser.add_argument("--ward-top", type=int, default=None, metavar="N",
                        help="the top N groups of the tree are the Ward tree's, the linkage merges within "
                             "them (default: the model's, 2 for the fast preset; 0 = the linkage throughout)")
    parser.add_argument("--latent-smoothing", type=float, default=None, metavar="SIGMA",
                        help="smooth the latent field at SIGMA voxels before clustering (default: the model's, "
                             "1.5 for the fast preset; 0 = off; 0.7 with --context 3 keeps one- to two-voxel "
                             "structures such as a cortical ribbon, see docs/tuning.md)")
    parser.add_argument("--boundary-refinement", type=float, default=None, metavar="SIGMA",
                        help="re-decide the voxels along the fine clusters' boundaries on the intensity smoothed "
                             "at SIGMA voxels (default: the model's, 0.7 for the fast preset; 0 = off)")
    parser.add_argument("--latent-scaling", choices=LATENT_SCALINGS, default=None,
                        help="how the latents are scaled beside the image features: shared (one spread for all "
                             "channels, as training left them) or channel (each standardised on its own); "
                             "default: the model's (only for a model that clusters image features beside its "
                             "latents)")
    parser.add_argument("--tile", type=int, default=64, help="tile side for inference (default: 64)")
    parser.add_argument("--inference-stride", type=int, default=None, metavar="N",
                        help="compute latents at every N-th point of the encoder's grid and interpolate between: "
                             "2 is about twice as fast on a big tomogram, a little less accurate (default: the "
                             "model's, 1)")
    parser.add_argument("--save-latents", type=Path, default=None, metavar="PATH.npy",
                        help="also keep the per-voxel latent field (Z, Y, X, d) in this .npy file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="encoder arithmetic: auto (bfloat16 where the hardware has it natively, "
                             "else float32), float32 or bfloat16 (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clustering (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_region_arguments(parser)
    parser.add_argument("--full-resolution", "--unbin", action="store_true", dest="full_resolution",
                        help="with --bin: write labels on the original grid (each binned voxel repeated)")
    return parser


def _level_paths(out: Path, ks: list[int] | None) -> list[Path]:
    if not ks or len(ks) == 1:
        return [out]
    from ..core.volume_io import suffix_of

    suffix = suffix_of(out)
    stem = out.name[: len(out.name) - len(suffix)]
    return [out.with_name(f"{stem}_k{k}{suffix}") for k in ks]


MIN_TILE = 16
"""Smaller tiles spend most of each encoder pass on the halo around them: minutes for a tiny volume."""


def run(args: argparse.Namespace) -> int:
    from ..core.checkpoint import read_checkpoint
    from ..core.config import LINKAGE_NAMES
    from ..core.device import resolve_device
    from ..core.errors import ConfigError
    from ..core.progress import run_to_completion
    from ..core.segment_files import check_radius, segment_file, segment_files, summary
    from ..core.segmentation import MAX_FINE_CLUSTERS
    from ..core.validation import distinct_outputs, integer, output_path, real, writable_folder
    from ..core.volume_io import WRITE_SUFFIXES, suffix_of
    from ._progress import ProgressLine

    # Every check that can fail fast does so before minutes of inference, and before --out-dir is made.
    several = args.out_dir is not None
    if not several and len(args.volumes) != 1:
        raise ConfigError(f"{len(args.volumes)} volumes with --out LABELS; give --out-dir DIR to write one "
                          "label file per volume into DIR")
    volumes = volume_paths(args.volumes) if several else [Path(args.volumes[0])]
    if several:
        for option in ("save_latents", "mask"):
            if getattr(args, option) is not None:
                raise ConfigError(f"--{option.replace('_', '-')} works with one volume and --out, not with --out-dir")
    elif args.scheduler is not None:
        raise ConfigError("--scheduler runs volumes as dask tasks; give --out-dir DIR (one label file per volume)")
    if args.format is not None and args.format not in WRITE_SUFFIXES:
        raise ConfigError(f"--format {args.format}: use one of {', '.join(WRITE_SUFFIXES)}")
    if not several and suffix_of(args.out) not in WRITE_SUFFIXES:
        raise ConfigError(f"cannot write labels to {args.out}: use one of {', '.join(WRITE_SUFFIXES)}")
    integer("--n-fine", args.n_fine, minimum=1, maximum=MAX_FINE_CLUSTERS)
    integer("--seed", args.seed, minimum=0)
    integer("--tile", args.tile, minimum=MIN_TILE)
    for option in ("context", "inference_stride", "workers"):
        if getattr(args, option) is not None:
            integer(f"--{option.replace('_', '-')}", getattr(args, option), minimum=1)
    if args.ward_top is not None:
        integer("--ward-top", args.ward_top, minimum=0)
    for option in ("latent_smoothing", "boundary_refinement"):
        if getattr(args, option) is not None:
            real(f"--{option.replace('_', '-')}", getattr(args, option), minimum=0)
    linkages = sorted(set().union(*LINKAGE_NAMES.values()))
    if args.linkage is not None and args.linkage not in linkages:
        raise ConfigError(f"--linkage {args.linkage}: use one of {', '.join(linkages)}")
    if args.k is not None:
        bad = [k for k in args.k if not 1 <= k <= args.n_fine]
        if bad:
            raise ConfigError(f"--k {bad[0]} is outside 1..{args.n_fine} (--n-fine); ask for at most as many "
                              "clusters as fine clusters, or raise --n-fine")
        repeated = sorted({k for k in args.k if args.k.count(k) > 1})
        if repeated:
            raise ConfigError(f"--k lists {repeated[0]} more than once; give each number of clusters once")
    if args.radius is not None and not 0 <= args.radius:
        raise ConfigError(f"--radius must be >= 0 (0..1 for hyperbolic models), got {args.radius}")
    latents = args.save_latents
    if latents is not None and latents.suffix != ".npy":
        raise ConfigError(f"--save-latents writes a .npy file; give a path ending in .npy, got {latents}")
    check_region_arguments(args, volumes)
    resolve_device(args.device)
    if several:
        check_radius(read_checkpoint(args.model)["config"], args.radius)   # a wrong model fails once, not per volume
    tasks = [_task(args, volume, _level_paths(_label_path(args, volume), args.k)) for volume in volumes]
    distinct_outputs([path for task in tasks for path in task.outputs] + ([latents] if latents is not None else []))
    what = "--out-dir label file" if several else "--out labels"
    if several:
        writable_folder(args.out_dir, what=what + "s", create=True)
    inputs = (*volumes, args.model, *([args.mask] if getattr(args, "mask", None) is not None else []))
    for path in (path for task in tasks for path in task.outputs):
        # with --out-dir an existing label file is skipped, not replaced (segment_files); an input is refused
        output_path(path, inputs=inputs, overwrite=args.overwrite or several, what=what)
    if latents is not None:
        output_path(latents, inputs=inputs, overwrite=args.overwrite, what="--save-latents file")

    line = ProgressLine()
    if not several:
        try:
            lines = run_to_completion(segment_file(tasks[0]), line)
        finally:
            line.close()
        for text in lines:
            print(text, file=sys.stderr if text.startswith("merge radii") else sys.stdout)
        return 0

    def show(event) -> None:
        if event.stage != "volumes":
            line(event)
            return
        line.close()
        print(f"[{event.step}/{event.total}] {event.message}", flush=True)

    where = "in this process" if args.scheduler is None else \
        "on a local dask cluster" if args.scheduler == "local" else f"on the dask scheduler {args.scheduler}"
    print(f"segmenting {len(tasks)} volume{'s' if len(tasks) != 1 else ''} {where}", file=sys.stderr, flush=True)
    try:
        outcomes = run_to_completion(segment_files(tasks, scheduler=args.scheduler, workers=args.workers), show)
    finally:
        line.close()
    print(summary(outcomes, len(tasks)))
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0


def volume_paths(items: list[str]) -> list[Path]:
    """The volumes named by paths, globs (quoted, so the shell leaves them) and list files (.txt: one
    path or glob per line, relative to the list file's folder; # starts a comment)."""
    import glob

    from ..core.errors import ConfigError

    found: list[Path] = []
    for item in items:
        if Path(item).suffix == ".txt" and Path(item).is_file():
            listed = Path(item)
            entries = [text.split("#", 1)[0].strip() for text in listed.read_text().splitlines()]
            entries = [str(listed.parent / entry) for entry in entries if entry]
            if not entries:
                raise ConfigError(f"the list file {listed} names no volume; write one volume path per line")
            found += volume_paths(entries)
        elif glob.has_magic(item) and not Path(item).exists():
            matches = sorted(glob.glob(item))
            if not matches:
                raise ConfigError(f"no file matches {item}; check the pattern")
            found += [Path(match) for match in matches]
        else:
            found.append(Path(item))
    return found


def _label_path(args: argparse.Namespace, volume: Path) -> Path:
    """--out, or DIR/<volume name>_labels<suffix>: --format, else the volume's own type where labels can be
    written in it (MRC variants such as .rec become .mrc)."""
    if args.out_dir is None:
        return args.out
    from ..core.volume_io import WRITE_SUFFIXES, suffix_of

    suffix = suffix_of(volume)
    stem = volume.name[: len(volume.name) - len(suffix)] if suffix else volume.name
    chosen = args.format or (suffix if suffix in WRITE_SUFFIXES else ".mrc")
    return args.out_dir / f"{stem}_labels{chosen}"


def _task(args: argparse.Namespace, volume: Path, outputs: list[Path]):
    from ..core.segment_files import SegmentTask

    return SegmentTask(
        volume=volume, outputs=tuple(outputs), model=args.model, ks=tuple(args.k) if args.k else None,
        radius=args.radius, n_fine=args.n_fine, context=args.context, linkage=args.linkage,
        ward_top=args.ward_top, latent_smoothing=args.latent_smoothing,
        boundary_refinement=args.boundary_refinement, latent_scaling=args.latent_scaling, tile=args.tile,
        device=args.device, precision=args.precision, seed=args.seed, level=args.level, roi=args.roi,
        mask=args.mask, bin_factor=args.bin_factor, full_resolution=args.full_resolution,
        latents=args.save_latents, overwrite=args.overwrite, inference_stride=args.inference_stride)
