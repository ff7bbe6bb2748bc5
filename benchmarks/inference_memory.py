"""Peak memory of dense inference on a big memory-mapped volume, with the latents written to a .npy.

A random volume (default 512 x 512 x 256 float32, as a tomogram) is written to disk and opened as a
read-only memory map (.npy, or .mrc through volume_io.read_volume); a random-weight model of the
"fast" preset computes its latent field tile by tile into a memory-mapped .npy. A thread samples
/proc/self/status; the report separates anonymous memory (what the computation itself holds) from
file-backed pages (the memory-mapped input and output, which the kernel can drop at will).

    python benchmarks/inference_memory.py                       # about 7 min on 2 cores (bfloat16 CPU)
    python benchmarks/inference_memory.py --shape 128 128 128   # a quick look
    python benchmarks/inference_memory.py --report              # also write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import auto_precision, markdown_table, write_section  # noqa: E402

from napari_hypseg.core.config import get_preset  # noqa: E402
from napari_hypseg.core.inference import latent_field  # noqa: E402
from napari_hypseg.core.model import HypsegVAE  # noqa: E402
from napari_hypseg.core.normalization import IntensityStats  # noqa: E402
from napari_hypseg.core.progress import run_to_completion  # noqa: E402
from napari_hypseg.core.volume_io import read_volume  # noqa: E402

FIELDS = ("VmRSS", "RssAnon", "RssFile")


def memory_now() -> dict[str, float]:
    """Resident memory of this process in GiB, by kind."""
    text = Path("/proc/self/status").read_text()
    return {name: int(re.search(rf"{name}:\s+(\d+)", text).group(1)) / 2**20 for name in FIELDS}


class PeakSampler(threading.Thread):
    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval, self.peak, self.done = interval, {name: 0.0 for name in FIELDS}, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for name, value in memory_now().items():
                self.peak[name] = max(self.peak[name], value)
            time.sleep(self.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--format", choices=("npy", "mrc"), default="npy")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the volume and latents go (default: a temp dir)")
    parser.add_argument("--report", action="store_true", help="write the result to docs/benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        folder = Path(folder)
        rng = np.random.default_rng(0)
        source = folder / f"volume.{args.format}"
        if args.format == "npy":
            data = np.lib.format.open_memmap(source, mode="w+", dtype=np.float32, shape=tuple(args.shape))
        else:
            import mrcfile

            mrc = mrcfile.new_mmap(source, shape=tuple(args.shape), mrc_mode=2, overwrite=True)
            data = mrc.data
        for z in range(args.shape[0]):
            data[z] = rng.normal(size=args.shape[1:]).astype(np.float32)
        del data
        if args.format == "mrc":
            mrc.close()
        volume = read_volume(source).data if args.format == "mrc" else np.load(source, mmap_mode="r")
        stats = IntensityStats.fit(volume)
        config = get_preset("fast")
        model = HypsegVAE(config)
        before = memory_now()
        sampler = PeakSampler()
        sampler.start()
        began = time.perf_counter()
        field = run_to_completion(latent_field(model, volume, stats, tile=args.tile, batch_size=args.batch_size,
                                               device="cpu", out=folder / "latents.npy"))
        seconds = time.perf_counter() - began
        sampler.done.set()
        sampler.join()
        assert field.shape == (*args.shape, config.latent_dim)
        del field

    voxels = int(np.prod(args.shape))
    rows = [["volume", " x ".join(map(str, args.shape)) + f" float32 ({args.format}, memory-mapped)"],
            ["tile / batch", f"{args.tile} / {args.batch_size}"],
            ["encoder arithmetic", f"precision auto = {auto_precision()}"],
            ["time", f"{seconds:.0f} s ({voxels / seconds / 1e3:.0f} k voxels/s)"],
            ["RSS before inference", f"{before['VmRSS']:.2f} GiB"],
            ["peak RSS, anonymous (the computation)", f"{sampler.peak['RssAnon']:.2f} GiB"],
            ["peak RSS, file-backed (memory maps)", f"{sampler.peak['RssFile']:.2f} GiB"],
            ["peak RSS, total", f"{sampler.peak['VmRSS']:.2f} GiB"]]
    table = markdown_table(["", "fast preset, random weights, CPU"], rows)
    print(table)
    if args.report:
        body = (f"{table}\n\nTarget: under 4 GB of resident memory beyond the memory-mapped input "
                f"(the anonymous row) — {'met' if sampler.peak['RssAnon'] < 4 / 1.073741824 else 'not met'}.\n")
        write_section("inference_memory", "Dense inference: memory on a big volume", body, script=__file__,
                      argv=None)


if __name__ == "__main__":
    main()
