"""`hypseg segment`: label a volume with a trained model, at k clusters or at a ball radius.

The volume is clustered once into --n-fine fine clusters; the labels written are a cut of the tree
over them (method.md §7), at --k clusters or at --radius in the Poincaré ball (fine clusters whose
lowest common ancestor lies at least that far from the origin merge; a smaller radius is coarser).
Several --k values write one file each, named LABELS with _k<K> before the suffix. Labels keep the
source's voxel spacing (and NIfTI affine); an --out ending in .zarr writes OME-Zarr.

--bin segments a binned volume (labels on the binned grid, voxel size scaled, unless
--full-resolution); --roi and --mask limit the work to a box or a mask: voxels outside are 0.
Latents go to a memory-mapped file beside --out while the command runs, so memory stays bounded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.config import PRECISIONS
from ._region import add_region_arguments, check_region_arguments, load_region


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment a volume with a trained model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("volume", type=Path, metavar="VOLUME", help="volume to segment (.mrc .tif .nii.gz ...)")
    parser.add_argument("--model", type=Path, required=True, metavar="MODEL", help="model file from `hypseg train`")
    parser.add_argument("--out", type=Path, required=True, metavar="LABELS",
                        help="label file to write (.tif .mrc .nii.gz ...)")
    level = parser.add_mutually_exclusive_group(required=True)
    level.add_argument("--k", type=int, nargs="+", metavar="K", help="number of clusters (one or more levels)")
    level.add_argument("--radius", type=float, metavar="R",
                       help="ball radius of the cut, 0..1 (hyperbolic models; a distance threshold for Euclidean ones)")
    parser.add_argument("--n-fine", type=int, default=16, metavar="N", help="fine clusters (default: 16)")
    parser.add_argument("--context", type=int, default=None, metavar="C",
                        help="neighbourhood side in voxels each latent describes (default: the model's)")
    parser.add_argument("--linkage", default=None,
                        help="how fine clusters merge into the tree: ward (default), centroid (a finer radius "
                             "control), average or single (merges exactly by LCA depth)")
    parser.add_argument("--tile", type=int, default=64, help="tile side for inference (default: 64)")
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
    from ..core.checkpoint import load_checkpoint
    from ..core.errors import ConfigError
    from ..core.progress import run_to_completion
    from ..core.region import full_labels, latent_file, region_volume
    from ..core.segmentation import segment
    from ..core.validation import distinct_outputs, integer, output_path
    from ..core.volume_io import WRITE_SUFFIXES, read_volume, suffix_of, write_labels
    from ._progress import ProgressLine

    # Every check that can fail fast does so before minutes of inference.
    if suffix_of(args.out) not in WRITE_SUFFIXES:
        raise ConfigError(f"cannot write labels to {args.out}: use one of {', '.join(WRITE_SUFFIXES)}")
    integer("--n-fine", args.n_fine, minimum=1)
    integer("--seed", args.seed, minimum=0)
    integer("--tile", args.tile, minimum=MIN_TILE)
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
    paths = _level_paths(args.out, args.k)
    latents = args.save_latents
    if latents is not None and latents.suffix != ".npy":
        raise ConfigError(f"--save-latents writes a .npy file; give a path ending in .npy, got {latents}")
    inputs = tuple(p for p in (args.volume, args.model, getattr(args, "mask", None)) if p is not None)
    for path in paths:
        output_path(path, inputs=inputs, overwrite=args.overwrite, what="--out labels")
    if latents is not None:
        output_path(latents, inputs=inputs, overwrite=args.overwrite, what="--save-latents file")
    distinct_outputs([*paths, *([latents] if latents is not None else [])])
    check_region_arguments(args)

    trained = load_checkpoint(args.model, device=args.device)
    if args.radius is not None and trained.config.geometry == "hyperbolic" and args.radius > 1:
        raise ConfigError(f"--radius {args.radius} is outside the Poincaré ball: give a radius from 0 to 1")
    volume = read_volume(args.volume, level=args.level)
    region = load_region(args, volume)
    line = ProgressLine()
    try:
        with latent_file(latents, beside=args.out) as latents_out:
            segmentation = run_to_completion(
                segment(trained, region_volume(volume.data, region), n_fine=args.n_fine, context=args.context,
                        device=args.device, tile=args.tile, seed=args.seed, latents_out=latents_out,
                        linkage=args.linkage, precision=args.precision), line)
    except KeyboardInterrupt:
        if latents is not None:
            latents.unlink(missing_ok=True)   # a partial latent file would look complete
        raise
    finally:
        line.close()
    full = args.full_resolution
    spacing = volume.spacing if full else region.spacing(volume.spacing)

    hierarchy = segmentation.hierarchy
    cuts = ([(k, hierarchy.lookup_at_k(k)) for k in args.k] if args.k is not None
            else [(hierarchy.k_at_radius(args.radius), hierarchy.lookup_at_radius(args.radius))])
    for path, (k, lookup) in zip(paths, cuts):
        labels = full_labels(segmentation.labels_from_lookup(lookup), region, full_resolution=full)
        write_labels(path, labels, spacing=spacing, unit=volume.unit,
                     affine=region.affine(volume.affine, full_resolution=full), overwrite=args.overwrite)
        print(f"labels written to {path} ({k} cluster{'s' if k != 1 else ''} of {segmentation.n_fine} fine ones)")
    if args.radius is not None:
        low, high = hierarchy.radius_range
        print(f"merge radii of this volume span {low:.3f}..{high:.3f}", file=sys.stderr)
    if latents is not None:
        print(f"latents written to {latents}")
    return 0
