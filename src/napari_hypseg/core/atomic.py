"""Outputs appear whole or not at all: every writer writes to a fresh temporary name beside the
target and renames it over the target in one step, so a failed or interrupted run never leaves a
half-written file, nor destroys the one that was there."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        raise error(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if temporary.exists():
            _remove(temporary)
