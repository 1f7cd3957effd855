import pytest
import torch

from inkpack.devices import resolve_device
from inkpack.errors import ConfigError


def test_cpu_and_auto(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_falls_back_with_a_message_when_absent(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cuda") == torch.device("cpu")
    assert "CUDA is not available" in capsys.readouterr().err


def test_bad_name_is_a_config_error():
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device("tpu")
