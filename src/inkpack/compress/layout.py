"""Which modules compression replaced, as a JSON-able record, and that record rebuilt on a
fresh base model (kind + ranks; the weights come after, from the model's files).

Below :mod:`inkpack.compress.lowrank`, :mod:`inkpack.compress.kmeans` and
:mod:`inkpack.compress.structure` in the import graph (tucker, which needs tensorly, is imported
where it runs).
"""

from __future__ import annotations

from torch import nn

from inkpack.compress.factored import LowRankLinear, LowRankLSTM
from inkpack.compress.layers import replace_module
from inkpack.errors import InkpackError

__all__ = ["rebuild", "structure"]


def structure(model: nn.Module) -> dict[str, dict]:
    """JSON-able record of every module the compress functions replaced (kind + ranks), so a
    checkpoint of the compressed model can be loaded into a freshly built base model."""
    from inkpack.compress.tucker import TuckerConv2d

    spec: dict[str, dict] = {}
    for name, m in model.named_modules():
        if isinstance(m, LowRankLSTM):
            spec[name] = {"kind": "lowrank_lstm", "ranks": [list(r) for r in m.ranks()]}
        elif isinstance(m, LowRankLinear):
            spec[name] = {"kind": "lowrank_linear", "rank": m.rank}
        elif isinstance(m, TuckerConv2d):
            spec[name] = {"kind": "tucker", "ranks": list(m.ranks)}
    return spec


def rebuild(model: nn.Module, spec: dict[str, dict]) -> nn.Module:
    """Apply a `structure()` record to an uncompressed model of the same architecture, in place
    (weights are placeholders until load_state_dict)."""
    from inkpack.compress.tucker import tucker_skeleton

    for name, s in spec.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise InkpackError(f"compressed structure: model has no module {name!r}") from None
        kind = s.get("kind")
        if kind == "lowrank_lstm" and isinstance(old, nn.LSTM):
            new: nn.Module = LowRankLSTM.from_lstm(old, cell_ranks=[tuple(r) for r in s["ranks"]])
        elif kind == "lowrank_linear" and type(old) is nn.Linear:
            new = LowRankLinear.from_linear(old, int(s["rank"]))
        elif kind == "tucker" and type(old) is nn.Conv2d:
            new = tucker_skeleton(old, *map(int, s["ranks"]))
        else:
            raise InkpackError(f"compressed structure: {name!r} is {type(old).__name__}, cannot hold {kind!r}")
        replace_module(model, name, new)
    return model
