"""Which torch device to compute on: "auto" picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from .config import PRECISIONS
from .errors import ConfigError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """A usable torch.device for "auto", "cpu", "cuda", "cuda:N" or "mps".

    Asking for a device this machine lacks is an error (naming what is available) rather than a
    silent fall-back, so a run meant for the GPU never crawls on the CPU unnoticed.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use one of {_choices()}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = torch.cuda.current_device() if device.index is None and count else device.index or 0
        if index >= count:
            found = f"{count} CUDA device(s)" if count else "no CUDA device (or a CPU-only torch build)"
            raise ConfigError(f"device {name!r} is not available: this machine has {found}; "
                              f"use one of {_choices()}")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise ConfigError(f"device {name!r} is not available (Apple MPS needs a Mac with Apple "
                              f"silicon and torch built with MPS); use one of {_choices()}")
        return torch.device("mps")
    raise ConfigError(f"unsupported device {name!r}; use one of {_choices()}")


def inference_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The dtype the encoder's convolutions run in at inference.

    "auto" is bfloat16 where the hardware computes it natively (CPUs with AVX512-BF16 or AMX, CUDA
    GPUs that support it) -- 2-3x faster convolutions on such a CPU; a latent typically moves by about
    1 % of the spread of a volume's latent cloud (median), which did not change Dice on the toy
    volumes (docs/tuning.md) -- and float32 elsewhere (emulated bfloat16 is slower than float32).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float32


def training_dtype(device: torch.device, precision: str = "float32") -> torch.dtype:
    """The dtype the decoder's convolutions run in during training (HypsegVAE.loss).

    "float32" (the default) computes every step in float32. "auto" is bfloat16 where the hardware
    computes it natively (as for inference_dtype), float32 elsewhere; "bfloat16" asks for it anyway.
    Only the decoder's layers after its gyroplane input run in bfloat16: the encoder, the posterior,
    the KL and the losses stay float32. On a CPU with AMX a paper-preset step is then about 1.8 times
    faster again (benchmarks/speed.py); the gradients differ from float32 ones by about 1 % of their
    size."""
    return inference_dtype(device, precision)


def describe_device(device: str | torch.device) -> str:
    """A short human description: "CUDA: <name>", "Apple MPS" or "CPU only (N threads)"."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"CPU only ({threads} thread{'s' if threads != 1 else ''})"


def available_devices() -> list[tuple[str, str]]:
    """(value for resolve_device, label) pairs for a dropdown, "auto" first."""
    choices = [("auto", f"auto ({describe_device('auto')})")]
    if torch.cuda.is_available():
        choices += [(f"cuda:{i}", f"CUDA: {torch.cuda.get_device_name(i)}")
                    for i in range(torch.cuda.device_count())]
    if _mps_available():
        choices.append(("mps", "Apple MPS"))
    choices.append(("cpu", describe_device("cpu")))
    return choices


def _choices() -> str:
    return ", ".join(repr(value) for value, _ in available_devices())
