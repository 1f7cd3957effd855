"""What every compressor shares: the record of one replaced layer, layer-name matching,
the energy rank of a spectrum and in-place module replacement (used by :mod:`.lowrank`,
:mod:`.tucker`, :mod:`.quantize`; below them in the import graph)."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Iterable

import torch
from torch import Tensor, nn

from inkpack.errors import InkpackError

__all__ = ["LayerChange", "energy_rank", "matches", "replace_module"]


@dataclass
class LayerChange:
    """One replaced (or skipped) layer: what a compression report table needs."""

    name: str
    kind: str
    params_before: int
    params_after: int
    detail: str = ""


def matches(name: str, patterns: Iterable[str]) -> bool:
    """A module is skipped when its name equals a pattern, sits below it, or glob-matches it."""
    return any(name == p or name.startswith(p + ".") or fnmatch(name, p) for p in patterns)


def energy_rank(singular_values: Tensor, energy: float) -> int:
    """Smallest rank keeping `energy` of the squared Frobenius norm (1.0 keeps full rank)."""
    if not 0.0 < energy <= 1.0:
        raise InkpackError(f"energy must be in (0, 1], got {energy}")
    s2 = singular_values.double() ** 2
    total = s2.sum()
    if total <= 0:
        return 1
    frac = torch.cumsum(s2, 0) / total
    return int(torch.searchsorted(frac, torch.tensor(energy - 1e-12, dtype=frac.dtype)).item()) + 1


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Swap in place; the new module inherits train/eval mode (LowRankLSTM has dropout)."""
    new.train(model.get_submodule(name).training)
    model.set_submodule(name, new)
