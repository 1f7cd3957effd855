"""SVD low-rank factorization of LSTM and Linear layers (seed 001), in place.

The factored modules (`LowRankLSTM`, `LowRankLinear`) live in :mod:`inkpack.compress.factored`,
the record of replaced modules (`structure`, `rebuild`) in :mod:`inkpack.compress.layout`;
both are importable from here too.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn

from inkpack.compress.factored import LowRankLinear, LowRankLSTM, factorize, resolve_rank
from inkpack.compress.layers import LayerChange, energy_rank, matches, replace_module
from inkpack.compress.layout import rebuild, structure
from inkpack.errors import InkpackError

__all__ = [
    "LayerChange", "LowRankLSTM", "LowRankLinear", "energy_rank", "factorize",
    "lowrank_layers", "lowrank_linear", "lowrank_lstm", "parse_ranks", "rebuild", "structure",
]


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def lowrank_lstm(model: nn.Module, rank_ih: int | None = None, rank_hh: int | None = None, *,
                 energy: float | tuple[float, float] | None = None,
                 skip: Iterable[str] = ()) -> list[LayerChange]:
    """Swap every nn.LSTM (not in `skip`) for a LowRankLSTM, in place.

    Ranks: fixed `rank_ih`/`rank_hh`, or an energy threshold (one float, or (ih, hh)) chosen
    per matrix; an explicit rank wins over energy for that matrix.
    """
    e_ih, e_hh = energy if isinstance(energy, tuple) else (energy, energy)
    if rank_ih is None and rank_hh is None and energy is None:
        raise InkpackError("lowrank_lstm: give rank_ih/rank_hh or energy")
    skip = list(skip)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.LSTM) and n and not matches(n, skip)]
    changes = []
    for name, lstm in targets:
        new = LowRankLSTM.from_lstm(lstm, rank_ih, rank_hh, e_ih, e_hh)
        replace_module(model, name, new)
        changes.append(LayerChange(name, "lstm", _params(lstm), _params(new), f"ranks(ih,hh)={new.ranks()}"))
    return changes


def lowrank_linear(model: nn.Module, rank: int | None = None, *, energy: float | None = None,
                   skip: Iterable[str] = (), require_gain: bool = True) -> list[LayerChange]:
    """Split each nn.Linear into two by truncated SVD, in place; layers that would not shrink
    (r·(in+out) ≥ in·out) are left alone unless `require_gain` is False."""
    if rank is None and energy is None:
        raise InkpackError("lowrank_linear: give rank or energy")
    skip = list(skip)
    inside = {n for n, m in model.named_modules() if isinstance(m, (LowRankLinear, LowRankLSTM))}
    targets = [(n, m) for n, m in model.named_modules()
               if type(m) is nn.Linear and n and not matches(n, skip) and not matches(n, inside)]
    changes = []
    for name, lin in targets:
        r = resolve_rank(lin.weight, rank, energy)
        before = _params(lin)
        if require_gain and r * (lin.in_features + lin.out_features) >= lin.in_features * lin.out_features:
            changes.append(LayerChange(name, "linear", before, before, f"kept (rank {r} gives no gain)"))
            continue
        new = LowRankLinear.from_linear(lin, r)
        replace_module(model, name, new)
        changes.append(LayerChange(name, "linear", before, _params(new), f"rank={r}"))
    return changes


Rank = int | tuple[int | None, int | None]


def parse_ranks(text: str) -> dict[str, Rank]:
    """``"fc2=64,lstm2=48:128"`` → {"fc2": 64, "lstm2": (48, 128)}; an LSTM takes ``ih:hh``,
    where ``-`` keeps that matrix dense (``lstm2=-:128``)."""
    out: dict[str, Rank] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, value = item.partition("=")
        try:
            if ":" in value:
                ih, hh = value.split(":")
                out[name.strip()] = (None if ih == "-" else int(ih), None if hh == "-" else int(hh))
            else:
                out[name.strip()] = int(value)
        except ValueError:
            raise InkpackError(f"svd ranks: {item!r} is not LAYER=RANK or LAYER=IH:HH") from None
    if not out:
        raise InkpackError("svd ranks: empty")
    return out


def lowrank_layers(model: nn.Module, ranks: dict[str, Rank]) -> list[LayerChange]:
    """Factor the named layers with the given ranks, in place (the seed picks ranks per matrix)."""
    modules = dict(model.named_modules())
    changes = []
    for name, rank in ranks.items():
        layer = modules.get(name)
        if isinstance(layer, nn.LSTM):
            ih, hh = rank if isinstance(rank, tuple) else (rank, rank)
            new: nn.Module = LowRankLSTM.from_lstm(layer, ih, hh)
            detail = f"ranks(ih,hh)={new.ranks()}"
        elif type(layer) is nn.Linear and not isinstance(rank, tuple):
            new = LowRankLinear.from_linear(layer, resolve_rank(layer.weight, rank, None))
            detail = f"rank={new.rank}"
        else:
            kinds = ", ".join(n for n, m in modules.items() if n and isinstance(m, (nn.LSTM, nn.Linear)))
            raise InkpackError(f"svd ranks: {name!r} is not an LSTM (IH:HH) or Linear (RANK) layer; "
                               f"this model has: {kinds}")
        replace_module(model, name, new)
        changes.append(LayerChange(name, "lstm" if isinstance(layer, nn.LSTM) else "linear",
                                   _params(layer), _params(new), detail))
    return changes
