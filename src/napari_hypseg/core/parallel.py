"""Work on every CPU core from threads: scipy's filters and numpy's loops release the GIL, so the
volume-sized passes of segmentation (Gaussian filters, the image features) need no processes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MAX_WORKERS = 4
"""More threads than this gain little: these passes are bound by memory bandwidth."""

_END = object()


def worker_count() -> int:
    """Threads for one pass: the cores this process may run on, at most MAX_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:      # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def one_ahead(items: Iterable) -> Iterator:
    """Yield `items`, the next one computed in a thread while the caller works on this one (e.g. the
    image features of a slab while the one before is labelled). Leaving early waits for the one item
    under way."""
    iterator = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="hypseg-ahead") as pool:
        pending = pool.submit(next, iterator, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, iterator, _END)
            yield item


def gaussian_filter(values: np.ndarray, sigma: float, *, mode: str = "nearest") -> np.ndarray:
    """scipy.ndimage.gaussian_filter of a 3-D float array, in place, on every core: the filter is one
    1-D pass per axis, and each pass runs on blocks cut across another axis (no margins needed), so
    the result is scipy's to the bit."""
    from scipy import ndimage

    if sigma <= 1e-15:          # scipy leaves such axes unfiltered
        return values
    workers = worker_count()
    with ThreadPoolExecutor(workers, thread_name_prefix="hypseg-filter") as pool:
        for axis in range(values.ndim):
            across = 0 if axis != 0 else 1
            edges = np.linspace(0, values.shape[across], workers + 1).astype(int)
            blocks = [tuple(slice(a, b) if d == across else slice(None) for d in range(values.ndim))
                      for a, b in zip(edges[:-1], edges[1:]) if b > a]

            def one(block, axis=axis):
                part = values[block]
                ndimage.gaussian_filter1d(part, sigma, axis=axis, mode=mode, output=part)

            list(pool.map(one, blocks))
    return values
