import pytest
import torch

from napari_hypseg.core.device import available_devices, describe_device, resolve_device
from napari_hypseg.core.errors import ConfigError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto == torch.device("cpu")
    assert describe_device("cpu").startswith("CPU only (")


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
