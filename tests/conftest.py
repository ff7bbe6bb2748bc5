"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """Tiny convolutions run ~10x faster on one thread than on two contended cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def training_tiffs(tmp_path_factory) -> list[str]:
    """Two small uint16 TIFF volumes of different shapes (noise, the right half brighter): what the
    training command line is tested on, in one process and under torchrun. Read only."""
    import numpy as np
    import tifffile

    folder = tmp_path_factory.mktemp("training-tiffs")
    paths = []
    for seed, shape in ((0, (24, 24, 24)), (1, (20, 28, 24))):
        rng = np.random.default_rng(seed)
        image = (rng.normal(100, 10, size=shape) + 50 * (np.indices(shape)[2] > shape[2] // 2)).astype(np.uint16)
        path = folder / f"volume{seed}.tif"
        tifffile.imwrite(path, image)
        paths.append(str(path))
    return paths


@pytest.fixture
def notifications():
    """Every napari notification (info, warning, error) dispatched during the test."""
    from napari.utils.notifications import notification_manager

    received = []
    notification_manager.notification_ready.connect(received.append)
    yield received
    notification_manager.notification_ready.disconnect(received.append)


@pytest.fixture
def make_read_only():
    """Make a folder read-only for this process, root included: chmod for a normal user; for root,
    who ignores permissions, the immutable attribute (chattr +i). Fails, rather than skips, where
    neither works, so a run as root never silently leaves read-only folders untested."""
    import os
    import shutil
    import subprocess

    locked = []

    def lock(folder):
        if os.geteuid() != 0:
            folder.chmod(0o555)
        else:
            chattr = shutil.which("chattr")
            done = chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True, text=True)
            if not done or done.returncode != 0:
                pytest.fail("running as root, a read-only folder needs `chattr +i` (e2fsprogs and the "
                            "CAP_LINUX_IMMUTABLE capability); run the tests as a normal user instead. "
                            + (done.stderr if done else "chattr not found"))
        locked.append(folder)
        return folder

    yield lock
    for folder in locked:
        if os.geteuid() != 0:
            folder.chmod(0o755)
        else:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
