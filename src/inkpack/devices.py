"""``--device auto|cpu|cuda``: one place that turns the option into a ``torch.device``."""

from __future__ import annotations

import sys

import torch

from inkpack.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | None = "auto", *, warn: bool = True) -> torch.device:
    """``auto``: CUDA when available, else the CPU. ``cuda`` without a usable GPU falls back to
    the CPU with a one-line message on stderr (a run that was configured on a GPU machine still
    runs here); ``cuda:N`` picks a GPU."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if torch.cuda.is_available():
            return torch.device(name)
        if warn:
            print(f"warning: --device {name}: CUDA is not available here; running on the CPU", file=sys.stderr)
        return torch.device("cpu")
    raise ConfigError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}")
