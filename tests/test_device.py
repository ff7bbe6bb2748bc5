import re
from pathlib import Path

import pytest
import torch

from napari_hypseg.core.device import (available_devices, describe_device, inference_dtype,
                                       resolve_device)
from napari_hypseg.core.errors import ConfigError

HAS_GPU = torch.cuda.is_available() or torch.backends.mps.is_available()


def test_cpu_by_any_spelling():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert re.fullmatch(r"CPU only \(\d+ threads?\)", describe_device("cpu"))


def test_auto_picks_a_device_that_computes():
    auto = resolve_device("auto")
    assert (torch.arange(4.0, device=auto) * 2).sum().item() == 12.0
    assert resolve_device(auto) == auto   # a resolved device stays itself


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_takes_the_cuda_gpu():
    assert resolve_device("auto").type == "cuda"


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_auto_is_the_cpu_on_a_machine_without_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert available_devices()[0] == ("auto", f"auto ({describe_device('cpu')})")


def _cpu_flags() -> set[str] | None:
    """The x86 CPU's feature flags from /proc/cpuinfo (None elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), None)


@pytest.mark.skipif(_cpu_flags() is None, reason="needs the CPU flags of /proc/cpuinfo (Linux on x86)")
def test_auto_precision_on_the_cpu_follows_its_bfloat16_hardware():
    """bfloat16 where the CPU computes it natively (AVX512-BF16, AMX), float32 where it has no AVX-512
    nor AMX at all (emulated bfloat16 would be slower). Read from the CPU's flags, not from torch."""
    flags = _cpu_flags()
    auto = inference_dtype(torch.device("cpu"))
    if flags & {"avx512_bf16", "amx_bf16"}:
        assert auto == torch.bfloat16
    elif not any(flag.startswith(("avx512", "amx")) or flag == "avx_ne_convert" for flag in flags):
        assert auto == torch.float32
    else:
        pytest.skip("AVX-512 without BF16: oneDNN converts bfloat16 there; either precision is plausible")


def test_dropdown_lists_auto_first_and_cpu():
    choices = available_devices()
    assert choices[0][0] == "auto" and ("cpu", describe_device("cpu")) in choices
    for value, _ in choices:
        resolve_device(value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_missing_cuda_says_what_is_available(name):
    with pytest.raises(ConfigError, match=r"not available.*'auto'.*'cpu'"):
        resolve_device(name)


def test_nonsense_device():
    with pytest.raises(ConfigError, match="unknown device 'gpu please'"):
        resolve_device("gpu please")
