"""Fuzzing the volume readers with hypothesis: random bytes and mutated valid files (header bytes
overwritten, files cut short) under every suffix. Whatever the bytes, read_volume returns a Volume or
raises VolumeError: no other exception, no hang, no memory blow-up.

A few hundred examples run with the suite; `pytest -m slow tests/test_reader_fuzz.py` runs 10,000 per
reader (MRC, TIFF, NIfTI), random bytes and mutated files mixed; `python benchmarks/reader_fuzz.py` runs
that and records it in docs/benchmarks.md. HYPSEG_FUZZ_EXAMPLES sets another count for the slow run.
"""

from __future__ import annotations

import gzip
import io
import os
import resource
import signal
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import mrcfile
import nibabel as nib
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_hypseg.core.volume_io import VolumeError, read_volume

SECONDS_PER_FILE = 10
MEMORY_GROWTH_LIMIT = 512 << 20   # bytes of peak resident memory one example may add


def _volume():
    return np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)


def _mrc() -> bytes:
    stream = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(_volume())
            mrc.voxel_size = 1.5
        stream.write(path.read_bytes())
    return stream.getvalue()


def _tiff(**options) -> bytes:
    stream = io.BytesIO()
    tifffile.imwrite(stream, _volume(), **options)
    return stream.getvalue()


def _nifti() -> bytes:
    image = nib.Nifti1Image(_volume(), np.diag([1.0, 2.0, 3.0, 1.0]))
    return image.to_bytes()


VALID = {
    ".mrc": _mrc(),
    ".tif": _tiff(imagej=True, metadata={"axes": "ZYX", "spacing": 2.0}),
    ".tiff": _tiff(compression="zlib", photometric="minisblack"),
    ".nii": _nifti(),
    ".nii.gz": gzip.compress(_nifti()),
}
HEADER_BYTES = {".mrc": 1024, ".tif": 512, ".tiff": 512, ".nii": 352, ".nii.gz": 64}


@contextmanager
def time_limit(seconds: int):
    def expire(signum, frame):
        raise TimeoutError(f"reading took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_survives(data: bytes, suffix: str) -> None:
    """The contract: a Volume whose data can be touched, or a VolumeError; in bounded time and memory."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        with time_limit(SECONDS_PER_FILE), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # as outside the test suite: a warning is not a failure
            try:
                volume = read_volume(path)
            except VolumeError:
                pass
            else:
                assert volume.data.ndim == 3 and volume.data.dtype.kind in "biuf"
                assert all(np.isfinite(s) and s > 0 for s in volume.spacing)
                np.asarray(volume.data[:1, :1, :1]).sum()   # the first voxel is really there
                del volume
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < MEMORY_GROWTH_LIMIT, f"reading grew the peak memory by {grown >> 20} MiB"


READERS = {"mrc": (".mrc",), "tiff": (".tif", ".tiff"), "nifti": (".nii", ".nii.gz")}
"""Each reader and the suffixes it is reached by."""
SLOW_EXAMPLES = int(os.environ.get("HYPSEG_FUZZ_EXAMPLES", 10_000))
"""Examples per reader in the slow run."""

suffixes = st.sampled_from(sorted(VALID))


@st.composite
def mutated_files(draw, suffixes=suffixes):
    """A valid small file of one format with some header bytes overwritten, maybe cut short."""
    suffix = draw(suffixes)
    data = bytearray(VALID[suffix])
    limit = min(len(data), HEADER_BYTES[suffix])
    for _ in range(draw(st.integers(1, 8))):
        offset = draw(st.integers(0, limit - 1))
        raw = draw(st.binary(min_size=1, max_size=4))
        data[offset:offset + len(raw)] = raw
    if draw(st.booleans()):
        del data[draw(st.integers(1, len(data))):]
    return suffix, bytes(data)


FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@settings(max_examples=150, **FUZZ_SETTINGS)
@given(suffix=suffixes, data=st.binary(max_size=4096))
def test_random_bytes_never_escape_as_anything_but_volume_error(suffix, data):
    read_survives(data, suffix)


@settings(max_examples=250, **FUZZ_SETTINGS)
@given(case=mutated_files())
def test_mutated_headers_never_escape_as_anything_but_volume_error(case):
    read_survives(case[1], case[0])


def reader_inputs(reader: str):
    """(suffix, bytes) for one reader: random bytes or a mutated valid file, half and half."""
    names = st.sampled_from(READERS[reader])
    return st.one_of(st.tuples(names, st.binary(max_size=4096)), mutated_files(names))


@pytest.mark.slow
@pytest.mark.parametrize("reader", sorted(READERS))
@settings(max_examples=SLOW_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_each_reader_at_length(reader, data):
    suffix, content = data.draw(reader_inputs(reader), label="file")
    read_survives(content, suffix)


def test_the_seed_files_are_valid():
    """The mutations start from files that read correctly, so they probe the parsers past the magic."""
    for suffix, data in VALID.items():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"v{suffix}"
            path.write_bytes(data)
            volume = read_volume(path)
            assert volume.data.shape == (4, 5, 6) or volume.data.shape == (6, 5, 4)
