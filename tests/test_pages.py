import sys
from pathlib import Path

import numpy as np
import pytest

from napari_hypseg.core.pages import release_pages


def _resident_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_released_pages_leave_the_resident_set_and_keep_their_data(tmp_path):
    """A pass over a memory map (here 64 MiB, written then read) counts it as resident until the pages
    are released; released, they no longer count, and what was written reads back unchanged, through
    a view of the map as through the map."""
    field = np.lib.format.open_memmap(tmp_path / "field.npy", mode="w+", dtype=np.float32, shape=(64, 512, 512))
    field[:] = np.arange(64, dtype=np.float32)[:, None, None]
    assert float(field.sum()) == 512 * 512 * sum(range(64))
    before = _resident_file_kib()
    release_pages(field[10:20])                 # a view finds its map
    after = _resident_file_kib()
    assert before - after > 48 * 1024, (before, after)
    np.testing.assert_array_equal(field[:, 0, 0], np.arange(64))
    del field
    again = np.load(tmp_path / "field.npy", mmap_mode="r")
    np.testing.assert_array_equal(again[:, 100, 100], np.arange(64))


def test_arrays_that_are_not_memory_maps_are_left_alone():
    data = np.ones((4, 4))
    release_pages(data, data[1:], [1, 2], None)
    assert data.sum() == 16
