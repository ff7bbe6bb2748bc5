"""`hypseg objects`: the objects of one cluster — its 3D connected components — as a table, particle
picks for subtomogram averaging, and surface meshes.

The components of cluster C in LABELS are found (voxels that share a face are connected unless
--connectivity says otherwise), those outside the size range are dropped, and one line per object is
printed: id, voxel count, physical volume and centroid. The voxel size and its unit come from the
LABELS file (as written by `hypseg segment`, which keeps the source's voxel size).

Outputs (each only when asked for; an existing file is only replaced with --overwrite):
  --csv FILE    the features table: object_id, cluster, voxel_count, volume (unit³),
                centroid_z/y/x_px (voxel indices from 0), centroid_z/y/x (physical units),
                bbox_z0..bbox_x1 (half-open voxel ranges), mean_intensity (with --image),
                mean_latent_radius (with --latents), unit
  --star FILE   RELION particles: rlnTomoName, rlnMicrographName, rlnCoordinateX/Y/Z (pixels of the
                tomogram, from 0 at the first voxel's centre) and rlnPixelSize (Å) when the voxel size
                has a length unit
  --mesh FILE   the surface of every kept object, one mesh (.obj, .ply or .stl) by marching cubes,
                in physical units with (x, y, z) vertex order

Examples:
  hypseg objects tomo_k8.mrc --cluster 5 --min-size 20 --star picks.star --image tomo.mrc
  hypseg objects labels.tif --cluster 3 --csv objects.csv --mesh objects.ply
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "objects",
        help="connected components of a cluster: table, STAR picks, meshes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("labels", type=Path, metavar="LABELS",
                        help="label volume (.tif .mrc .nii.gz ...), e.g. written by `hypseg segment`")
    parser.add_argument("--cluster", type=int, required=True, metavar="C",
                        help="the cluster (label id in LABELS) whose objects are wanted")
    size = parser.add_argument_group("size filter (bounds are inclusive; every bound given applies)")
    size.add_argument("--min-size", type=int, default=None, metavar="N",
                      help="drop objects with fewer than N voxels (e.g. specks of noise)")
    size.add_argument("--max-size", type=int, default=None, metavar="N",
                      help="drop objects with more than N voxels (e.g. a membrane in a particle cluster)")
    size.add_argument("--min-volume", type=float, default=None, metavar="V",
                      help="drop objects smaller than V in the voxel size's unit cubed (e.g. Å³)")
    size.add_argument("--max-volume", type=float, default=None, metavar="V",
                      help="drop objects larger than V in the voxel size's unit cubed")
    parser.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=6,
                        help="voxels are connected when they share a face (6, default), also an edge "
                             "(18), or also a corner (26)")
    parser.add_argument("--image", type=Path, default=None, metavar="IMAGE",
                        help="the volume LABELS was made from: adds mean_intensity to the table, and "
                             "its file name is the STAR tomogram name")
    parser.add_argument("--latents", type=Path, default=None, metavar="PATH.npy",
                        help="the latent field written by `hypseg segment --save-latents`: adds "
                             "mean_latent_radius (small: coarse structure, near the centre of the ball)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--csv", type=Path, default=None, metavar="FILE", help="write the features table (.csv)")
    out.add_argument("--star", type=Path, default=None, metavar="FILE",
                     help="write the centroids as RELION particle picks (.star)")
    out.add_argument("--tomo-name", default=None, metavar="NAME",
                     help="tomogram name in the STAR file (default: the file name of --image, else of "
                          "LABELS, without suffix)")
    out.add_argument("--mesh", type=Path, default=None, metavar="FILE",
                     help="write the surface of the objects (.obj, .ply or .stl)")
    out.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    parser.add_argument("--quiet", action="store_true", help="print the summary only, not one line per object")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..core.export_objects import MESH_SUFFIXES, check_target, write_csv, write_objects_mesh, write_star
    from ..core.objects import cluster_objects
    from ..core.volume_io import read_volume, suffix_of

    # Refuse unusable output names before any work.
    targets = [(args.csv, (".csv",), "CSV table"), (args.star, (".star",), "STAR file"),
               (args.mesh, MESH_SUFFIXES, "mesh")]
    for path, suffixes, what in targets:
        if path is not None:
            check_target(path, suffixes, args.overwrite, what)

    volume = read_volume(args.labels)
    image = read_volume(args.image).data if args.image is not None else None
    latents = _read_latents(args.latents) if args.latents is not None else None
    objects = cluster_objects(
        volume.data, args.cluster, spacing=volume.spacing, unit=volume.unit,
        min_size=args.min_size, max_size=args.max_size, min_volume=args.min_volume, max_volume=args.max_volume,
        connectivity=args.connectivity, image=image, latents=latents)

    unit = volume.unit
    dropped = len(objects.dropped_sizes)
    print(f"cluster {objects.cluster} of {args.labels.name}: {objects.n_found} component(s), {len(objects)} kept"
          + (f", {dropped} outside the size filter" if dropped else "")
          + f" (voxel size {' x '.join(f'{s:g}' for s in volume.spacing)} {unit})")
    if not args.quiet:
        print(f"{'id':>5} {'voxels':>8} {'volume (' + unit + '³)':>18}   centroid z, y, x ({unit})")
        for row in objects.table.itertuples(index=False):
            print(f"{row.object_id:>5} {row.voxel_count:>8} {row.volume:>18.6g}   "
                  f"{row.centroid_z:.6g}, {row.centroid_y:.6g}, {row.centroid_x:.6g}")
    if args.csv is not None:
        print(f"wrote {write_csv(objects, args.csv, overwrite=args.overwrite)}")
    if args.star is not None:
        source = args.image if args.image is not None else args.labels
        name = args.tomo_name or source.name[: -len(suffix_of(source))] or source.name
        print(f"wrote {write_star(objects, args.star, tomo_name=name, overwrite=args.overwrite)}"
              + ("" if unit != "pixel" else " (no rlnPixelSize: LABELS has no physical voxel size)"))
    if args.mesh is not None:
        print(f"wrote {write_objects_mesh(objects, args.mesh, overwrite=args.overwrite)}")
    return 0


def _read_latents(path: Path):
    """The latent field, memory-mapped: only the objects' bounding boxes are read."""
    import numpy as np

    from ..core.objects import ObjectsError

    if path.suffix != ".npy":
        raise ObjectsError(f"--latents reads a .npy file (from `hypseg segment --save-latents`), got {path}.")
    try:
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise ObjectsError(f"cannot open the latent field {path}: it does not exist; give the file written "
                           "by `hypseg segment --save-latents`.") from None
    except (OSError, ValueError) as error:
        raise ObjectsError(f"cannot read the latent field {path} ({error}); give the .npy file written by "
                           "`hypseg segment --save-latents`.") from None
