"""Outputs appear whole or not at all: every writer writes to a fresh temporary name beside the
target and renames it over the target in one step, so a failed or interrupted run never leaves a
half-written file, nor destroys the one that was there."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import HypsegError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def replaced_atomically(path: str | os.PathLike, error: type[HypsegError], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` (ending in `suffix`, for libraries that choose the format
    by it) to write to; when the block ends, it replaces `path` in one rename (a folder, e.g. Zarr,
    replaces a folder). An OSError becomes `error`, naming `path`; the temporary never stays."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")
    try:
        yield temporary
        if temporary.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(temporary, path)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}; choose a writable folder with free "
                    "space.") from exc
    finally:
        if temporary.exists():
            _remove(temporary)


def write_durably(path: str | os.PathLike, write: Callable[[BinaryIO], object], error: type[HypsegError]) -> Path:
    """`write(file)` into a new file that replaces `path`, as replaced_atomically does, flushed to the
    disk before the rename and the rename itself made durable: for files whose loss costs a long
    run (a model), even a power cut leaves the old file or the new one."""
    path = Path(path)
    if not path.parent.is_dir():
        raise error(f"cannot write {path}: the folder {path.parent} does not exist; create it or choose "
                    "another location.")
    with replaced_atomically(path, error) as temporary:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    if hasattr(os, "O_DIRECTORY"):   # the rename is durable once its folder is (POSIX)
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path
