"""Write the objects of a cluster for the next tool: a CSV table, a RELION STAR file, surface meshes.

- **CSV**: the features table of :class:`~napari_hypseg.core.objects.Objects`, one row per object
  (read back with ``pandas.read_csv``).
- **STAR** (RELION, via the ``starfile`` package): one data block ``particles`` with
  ``rlnTomoName`` and ``rlnMicrographName`` (the tomogram's name), ``rlnCoordinateX/Y/Z`` (the
  centroid in pixels of the tomogram the labels belong to, counted from 0 at the centre of the first
  voxel; X is the last array axis) and, when the voxel size has a length unit, ``rlnPixelSize`` (Å,
  the x voxel size). Subtomogram-averaging pipelines read these as particle picks.
- **Meshes** (``.obj``, ``.ply``, ``.stl``): the surface of a mask by marching cubes (scikit-image)
  at the 0.5 level of the mask, closed at the volume's border, with vertices in physical units in
  (x, y, z) order — the order of ChimeraX, Blender and an MRC map's axes — and faces wound so that
  normals point outwards. Written with ``trimesh``.

Every file is written to a temporary file beside the target and moved into place, so a failed write
never leaves half a file or destroys an existing one; an existing file is only replaced when
``overwrite=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic import replaced_atomically
from .objects import Objects, ObjectsError
from .volume_io import LENGTH_UNIT_EXPONENTS

MESH_SUFFIXES = (".obj", ".ply", ".stl")
STAR_BLOCK = "particles"


def write_csv(objects: Objects, path, *, overwrite: bool = False) -> Path:
    """The features table as CSV, one row per object."""
    table = objects.table
    return _write_atomically(path, (".csv",), lambda tmp: table.to_csv(tmp, index=False), overwrite, "CSV table")


def pixel_size_angstrom(spacing, unit: str) -> float | None:
    """The x voxel size in Å, or None when the unit is not a length (e.g. "pixel")."""
    exponent = LENGTH_UNIT_EXPONENTS.get(unit)
    if exponent is None:
        return None
    return float(spacing[2]) * 10.0 ** (exponent + 10)


def star_table(objects: Objects, tomo_name: str):
    """The RELION particle table (a pandas DataFrame) of the objects' centroids."""
    import pandas as pd

    centroids = objects.centroids_px
    table = pd.DataFrame({
        "rlnTomoName": [tomo_name] * len(objects),
        "rlnMicrographName": [tomo_name] * len(objects),
        "rlnCoordinateX": centroids[:, 2],
        "rlnCoordinateY": centroids[:, 1],
        "rlnCoordinateZ": centroids[:, 0],
    })
    pixel_size = pixel_size_angstrom(objects.spacing, objects.unit)
    if pixel_size is not None:
        table["rlnPixelSize"] = pixel_size
    return table


def write_star(objects: Objects, path, *, tomo_name: str, overwrite: bool = False) -> Path:
    """The objects' centroids as a RELION STAR file (see the module docstring for the columns)."""
    import starfile

    name = str(tomo_name).strip()
    if not name or any(c.isspace() for c in name):
        raise ObjectsError(f"the tomogram name {tomo_name!r} must be one word without spaces (STAR files "
                           "separate columns by spaces); give the tomogram's file name.")
    table = star_table(objects, name)
    return _write_atomically(path, (".star",), lambda tmp: starfile.write({STAR_BLOCK: table}, tmp),
                             overwrite, "STAR file")


def surface_mesh(mask, spacing=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes surface of a boolean (Z, Y, X) mask: (vertices (n, 3) in x, y, z physical units,
    faces (m, 3) of vertex indices, normals outwards). Objects touching the border are closed there."""
    from skimage.measure import marching_cubes

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ObjectsError(f"a mesh needs a 3D mask, got shape {mask.shape}.")
    where = np.nonzero(mask.any(axis=(1, 2)))[0], np.nonzero(mask.any(axis=(0, 2)))[0], \
        np.nonzero(mask.any(axis=(0, 1)))[0]
    if any(len(w) == 0 for w in where):
        raise ObjectsError("nothing to mesh: the mask is empty (no voxel of the chosen object(s)). Choose a "
                           "cluster or object that has voxels.")
    box = tuple(slice(w[0], w[-1] + 1) for w in where)
    padded = np.pad(mask[box], 1).astype(np.float32)
    spacing = np.asarray([float(s) for s in spacing])
    vertices, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(spacing))
    offset = (np.array([s.start for s in box]) - 1) * spacing
    vertices = (vertices + offset)[:, ::-1]      # (z, y, x) -> (x, y, z)
    # Swapping z and x mirrors the mesh, which turns scikit-image's inward winding outwards.
    return np.ascontiguousarray(vertices, dtype=np.float64), np.ascontiguousarray(faces, dtype=np.int64)


def write_mesh(path, vertices: np.ndarray, faces: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a triangle mesh as .obj, .ply (binary) or .stl (binary), chosen by the suffix."""
    import trimesh

    if len(faces) == 0:
        raise ObjectsError("nothing to mesh: the surface has no triangle.")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    suffix = Path(path).suffix.lower()

    def write(tmp: Path) -> None:
        data = mesh.export(file_type=suffix[1:])
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())

    return _write_atomically(path, MESH_SUFFIXES, write, overwrite, "mesh")


def write_objects_mesh(objects: Objects, path, *, object_ids=None, overwrite: bool = False) -> Path:
    """The surface of the given objects (default: every kept object) as one mesh file."""
    check_target(path, MESH_SUFFIXES, overwrite, "mesh")
    vertices, faces = surface_mesh(objects.mask(object_ids), objects.spacing)
    return write_mesh(path, vertices, faces, overwrite=overwrite)


def check_target(path, suffixes: tuple[str, ...], overwrite: bool, what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ObjectsError(f"cannot write a {what} to {path}: the name must end in {' or '.join(suffixes)}.")
    if path.is_dir():
        raise ObjectsError(f"cannot write {path}: it is a folder; give a file name.")
    if path.exists() and not overwrite:
        raise ObjectsError(f"{path} already exists; choose another name or allow replacing it "
                           "(--overwrite on the command line).")
    if not path.parent.is_dir():
        raise ObjectsError(f"cannot write {path}: the folder {path.parent} does not exist.")
    return path


def _write_atomically(path, suffixes: tuple[str, ...], write: Callable[[Path], object], overwrite: bool,
                      what: str) -> Path:
    path = check_target(path, suffixes, overwrite, what)
    with replaced_atomically(path, ObjectsError, suffix=path.suffix) as temporary:
        write(temporary)
    return path
