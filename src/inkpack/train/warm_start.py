"""Warm start a fresh training run from a trained model (what Kraken's ``--load`` does).

Only tensors whose name and shape match the new architecture are copied, so a model of
another architecture can hand over the parts they share: e.g. the DBLSTM and IP layers of
a trained ``darknet-dblstm`` start a ``vgg-dblstm`` teacher, whose CNN trains from scratch.
The run keeps the source model's alphabet (its IP layer's outputs mean those symbols).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError


@dataclass
class WarmStart:
    source: str
    state: dict[str, torch.Tensor]
    alphabet: Alphabet
    prefixes: tuple[str, ...]

    def apply(self, model: nn.Module) -> str:
        """Copy the matching tensors into ``model``; the line to print says how many."""
        own = model.state_dict()
        take = {
            k: v for k, v in self.state.items()
            if k in own and own[k].shape == v.shape and (not self.prefixes or k.startswith(self.prefixes))
        }
        if not take:
            raise InkpackError(f"init_from {self.source}: no tensor matches the new model by name and shape")
        model.load_state_dict(take, strict=False)
        n = sum(v.numel() for v in take.values())
        total = sum(v.numel() for v in own.values())
        return f"warm start from {self.source}: {len(take)} tensors, {n:,} of {total:,} values"


def read_init(path: str, layers: list[str] | None = None) -> WarmStart:
    """The weights and alphabet of a shipped/saved model (stem, .json or bundled name)."""
    from inkpack.model_io import load_model

    if layers is not None and (not isinstance(layers, list) or not all(isinstance(x, str) for x in layers)):
        raise InkpackError(f"init_layers must be a list of tensor-name prefixes, not {layers!r}")
    model, _, alphabet = load_model(path)
    return WarmStart(path, model.state_dict(), alphabet, tuple(layers or ()))
