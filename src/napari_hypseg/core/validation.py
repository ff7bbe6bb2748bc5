"""Checks of user-given numbers and output paths, in one place, so a mistake gets the same message
from the Python API, the CLI and the widgets.

Output checks run before long work starts: a folder that is missing, is a file, or cannot be written
into is found before minutes of training or inference, and an output is never one of the run's
inputs, whatever the flags (paths are compared as files, so links and other spellings count).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from .errors import ConfigError, OutputError


def integer(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within [minimum, maximum]; bools are not integers here."""
    if isinstance(value, bool) or not isinstance(value, Integral) or \
            (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be an integer{_range_text(minimum, maximum)}, got {value!r}")
    return int(value)


def real(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
         positive: bool = False) -> float:
    """``value`` as a finite float within [minimum, maximum] (and > 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or \
            (positive and value <= 0) or (minimum is not None and value < minimum) or \
            (maximum is not None and value > maximum):
        bounds = " > 0" if positive else _range_text(minimum, maximum)
        raise ConfigError(f"{name} must be a finite number{bounds}, got {value!r}")
    return float(value)


def points_array(X, name: str = "X") -> np.ndarray:
    """A 2-D (N, d) array of real numbers, checked as scikit-learn checks it, without reading it whole
    (memory maps stay memory maps; finiteness is checked on the rows used, see finite_points)."""
    from sklearn.utils import check_array

    if hasattr(X, "detach"):   # a torch tensor (torch is not imported for this check)
        X = X.detach().cpu().numpy()
    try:
        return check_array(X, ensure_all_finite=False, input_name=name)
    except ValueError as error:   # a TypeError (e.g. an object array of dicts) is a programming error
        raise ConfigError(f"{name} must be a 2-D array of real numbers (n_points, n_dims): {error}") from None


def finite_points(X, name: str = "X") -> np.ndarray:
    """``points_array`` whose every value is finite (read whole: use on samples and chunks)."""
    X = points_array(X, name)
    if not np.isfinite(X).all():
        raise ConfigError(f"{name} contains NaN or infinite values; remove or replace them first")
    return X


def _range_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""


def output_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
                what: str = "output", create_folder: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written and that writing it destroys nothing.

    Refused: a folder, a missing folder (created instead with ``create_folder``), a folder that
    cannot be written into, an existing file without ``overwrite``, and, even with ``overwrite``,
    any of ``inputs``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder; give a file name inside it.")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise OutputError(f"the {what} {path} is the input {source}; writing it would destroy the input. "
                              "Choose another name.")
    writable_folder(path.parent, what=what, create=create_folder)
    if path.exists() and not overwrite:
        raise OutputError(f"the {what} {path} already exists; pass --overwrite (or allow overwriting) to "
                          "replace it, or choose another name.")
    return path


def writable_folder(folder: str | os.PathLike, *, what: str = "output", create: bool = False) -> Path:
    """``folder`` exists (or is created, with ``create``), is a folder, and a file can be created in it
    (tried, so it holds for root, read-only mounts and full disks alike)."""
    folder = Path(folder)
    if create and not folder.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)   # torchrun's processes may race to create it
        except OSError as error:
            raise OutputError(f"cannot create the folder {folder} for the {what} "
                              f"({error.strerror or error}); choose another location.") from None
    if not folder.exists():
        raise OutputError(f"the folder {folder} of the {what} does not exist; create it first or choose "
                          "another location.")
    if not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder; choose a folder for the {what}.")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputError(f"cannot write into {folder} ({error.strerror or error}); choose a writable "
                          f"folder for the {what}.") from None
    return folder


def distinct_outputs(paths: Iterable[Path]) -> None:
    """Several outputs of one run must be different files (the second would replace the first)."""
    seen: list[Path] = []
    for path in paths:
        if any(_same_file(path, other) for other in seen):
            raise OutputError(f"{path} is named twice among this run's outputs; give each output its own name.")
        seen.append(path)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return os.path.abspath(os.path.realpath(a)) == os.path.abspath(os.path.realpath(b))
