"""Command-line options shared by `hypseg train` and `hypseg segment`: resolution level, binning, region."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_region_arguments(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """--level, --bin, --roi and --mask (one mask per volume when `several`)."""
    group = parser.add_argument_group("resolution and region")
    group.add_argument("--level", type=int, default=0, metavar="L",
                       help="resolution level of a multiscale OME-Zarr image (default: 0, the finest)")
    group.add_argument("--bin", type=int, choices=(1, 2, 4), default=1, dest="bin_factor", metavar="{1,2,4}",
                       help="average blocks of 2³ or 4³ voxels first (voxel size scaled; default: 1, no binning)")
    group.add_argument("--roi", default=None, metavar="z0:z1,y0:y1,x0:x1",
                       help="work only inside this box (voxel indices of the full volume, ends excluded; "
                            "an empty bound is the edge, e.g. 20:80,:,100:)")
    group.add_argument("--mask", type=Path, nargs="+" if several else None, default=None, metavar="MASK",
                       help=("a volume of the same size per VOLUME, nonzero inside" if several else
                             "a volume of the same size, nonzero inside")
                       + ": work only inside it (training: inside its bounding box)")


def check_region_arguments(args: argparse.Namespace, volumes) -> None:
    """Fail before any reading: a malformed --roi, a --level that the volumes lack, a mask count that
    does not match or a missing mask."""
    from ..core.errors import ConfigError
    from ..core.region import parse_roi
    from ..core.validation import integer
    from ..core.volume_io import require_level

    integer("--level", args.level, minimum=0)
    for volume in volumes:
        require_level(volume, args.level)
    if args.roi is not None:
        parse_roi(args.roi)
    masks = args.mask if isinstance(args.mask, list) or args.mask is None else [args.mask]
    if masks is not None:
        if len(masks) != len(volumes):
            raise ConfigError(f"{len(masks)} --mask file(s) for {len(volumes)} volume(s); give one mask per volume")
        missing = [m for m in masks if not m.exists()]
        if missing:
            raise ConfigError(f"--mask {missing[0]} does not exist; give the mask volume's path")


def load_region(args: argparse.Namespace, volume, index: int = 0):
    """The Region of `volume` (a core Volume) that the options ask for."""
    from ..core.region import plan_region
    from ..core.volume_io import read_volume

    masks = args.mask if isinstance(args.mask, list) or args.mask is None else [args.mask]
    mask = None if masks is None else read_volume(masks[index]).data
    return plan_region(volume.data.shape, roi=args.roi, mask=mask, factor=args.bin_factor)
