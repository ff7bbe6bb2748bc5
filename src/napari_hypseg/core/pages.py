"""Keeping a pass over a memory-mapped tomogram out of the process's resident memory.

A memory map's pages that a pass has touched count as the process's resident memory until the kernel
needs them back: a pass over a 1k x 1k x 300 latent field (3.8 GB) would show as 3.8 GB resident
though none of it is the process's own. `release_pages` hands them back after each slab; they stay in
the page cache (written back if changed), so reading them again costs a page fault, not a disk read.
"""

from __future__ import annotations

import mmap

import numpy as np


def _mapping(array) -> mmap.mmap | None:
    """The mmap under a numpy memmap (or a view of one), else None."""
    while isinstance(array, np.ndarray):
        found = getattr(array, "_mmap", None)
        if isinstance(found, mmap.mmap):
            return found
        array = array.base
    return array if isinstance(array, mmap.mmap) else None


def release_pages(*arrays) -> None:
    """Drop the resident pages of every memory-mapped array given (others are ignored)."""
    for array in arrays:
        mapping = _mapping(array)
        if mapping is not None and not mapping.closed and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)
