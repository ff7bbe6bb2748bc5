"""Shared by the benchmark scripts: describe the machine and write one section of docs/benchmarks.md."""

from __future__ import annotations

import fcntl
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nWritten by the scripts in `benchmarks/`; each section says how to reproduce it.\n"


def best_seconds(function, repeats: int = 3) -> float:
    """The fastest of a few runs: the least disturbed by other work on a shared machine."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def machine_description(device: str = "cpu") -> str:
    """CPU model, cores, memory and accelerator, so numbers are never read without their machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    text = (f"{cpu}, {os.cpu_count()} cores{memory}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f"; GPU: {torch.cuda.get_device_name(0)}"
    return text


def auto_precision(device: str = "cpu") -> str:
    """What precision="auto" runs the encoder in on this machine ("bfloat16" or "float32")."""
    from napari_hypseg.core.device import inference_dtype, resolve_device

    return str(inference_dtype(resolve_device(device))).removeprefix("torch.")


def invocation(script: str, argv: list[str] | None) -> str:
    """The command line that reproduces a run, for the report's "Run `...`" line."""
    arguments = argv if argv is not None else sys.argv[1:]
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *arguments])


def git_revision() -> str:
    """The checkout's commit, "-dirty" when files differ from it."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True,
                              text=True, cwd=REPORT.parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


REVISION_AT_START = git_revision()
"""Read when a benchmark starts, so a long run is stamped with the code it ran, not a later commit."""


def write_section(key: str, title: str, body: str, *, script: str, argv: list[str] | None,
                  device: str = "cpu") -> Path:
    """Replace (or append) the section `key` of docs/benchmarks.md, stamped with the command line that
    reproduces it (`script` run with `argv`), the machine and the date; say where it went."""
    command = invocation(script, argv)
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = (f"{start}\n## {title}\n\n"
               f"Run `{command}` on {date.today().isoformat()} at revision {REVISION_AT_START}.\n"
               f"Machine: {machine_description(device)}.\n\n{body.strip()}\n{end}")
    # Locked: benchmarks running side by side (steps_curve.py --jobs) write their sections into one file.
    with open(REPORT.with_name(".benchmarks.md.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = REPORT.read_text() if REPORT.exists() else HEADER
        if start in text:
            text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        REPORT.write_text(text)
    print(f"written to {REPORT}")
    return REPORT


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
