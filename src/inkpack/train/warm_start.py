"""Warm start a fresh training run from a trained model (what Kraken's ``--load`` does).

Only tensors whose name and shape match the new architecture are copied, so a model of
another architecture can hand over the parts they share: e.g. the DBLSTM and IP layers of
a trained ``darknet-dblstm`` start a ``vgg-dblstm`` teacher, whose CNN trains from scratch.

Fine-tuning on data with characters the model lacks (Kraken's ``--resize``): the trainer asks
:meth:`WarmStart.resolve` for the run's alphabet once the training texts are read,

* ``union`` (default): the model's symbols keep their labels, the data's new characters are
  appended;
* ``new``: only the data's characters (those the model knew keep what it learnt for them);
* ``fail``: the model's alphabet; characters it lacks are a :class:`ConfigError`,

and :meth:`WarmStart.apply` copies the old output layer's rows (blank, each kept symbol,
unknown) into their new positions; the rows of new characters keep the fresh model's
initialisation. Without ``resolve`` the run keeps the source model's alphabet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from inkpack.data.alphabet import RESIZE_MODES, Alphabet, label_map, resize_alphabet
from inkpack.errors import ConfigError, InkpackError


def class_tensor_names(model: nn.Module, num_classes: int) -> list[str]:
    """State-dict names of ``model``'s output layer, whose first dimension is the class: the
    weight and bias of the last ``nn.Linear`` with ``num_classes`` outputs, and the
    ``[num_classes]`` parameters of the module holding it (the MDLSTM head's bias)."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == num_classes:
            last = name
    if last is None:
        return []
    parent = last.rpartition(".")[0]
    holder = model.get_submodule(parent) if parent else model
    names = [f"{last}.{n}" for n, p in model.get_submodule(last).named_parameters() if p.shape[0] == num_classes]
    prefix = f"{parent}." if parent else ""
    names += [prefix + n for n, p in holder.named_parameters(recurse=False) if p.dim() == 1 and p.shape[0] == num_classes]
    return names


@dataclass
class WarmStart:
    source: str
    state: dict[str, torch.Tensor]
    alphabet: Alphabet  # the source model's
    prefixes: tuple[str, ...]
    resize: str = "union"
    target: Alphabet | None = None  # the run's alphabet, once resolve() has seen the texts
    config: dict | None = None  # the source model's config (arch, options, preprocessing, ...)

    def resolve(self, texts: Iterable[str]) -> Alphabet:
        """The run's alphabet for the training ``texts`` (see the module doc); remembered for
        :meth:`apply`."""
        self.target = resize_alphabet(self.alphabet, texts, self.resize)
        return self.target

    def describe(self) -> str:
        """One line on what the resize did to the alphabet."""
        if self.target is None or self.target.symbols == self.alphabet.symbols:
            return f"alphabet of {self.source}: {len(self.alphabet.symbols)} characters, unchanged"
        added = [s for s in self.target.symbols if s not in self.alphabet]
        dropped = [s for s in self.alphabet.symbols if s not in self.target]
        parts = [f"{len(self.target.symbols) - len(added)} kept"]
        if added:
            parts.append(f"{len(added)} added {''.join(added)!r}")
        if dropped:
            parts.append(f"{len(dropped)} dropped {''.join(dropped)!r}")
        return f"alphabet of {self.source} resized ({self.resize}): " + ", ".join(parts)

    def apply(self, model: nn.Module) -> str:
        """Copy the matching tensors into ``model``; the line to print says how many. With a
        resolved alphabet, the output layer's rows go to their labels in it."""
        own = model.state_dict()
        wanted = (lambda k: k.startswith(self.prefixes)) if self.prefixes else (lambda k: True)
        take = {k: v for k, v in self.state.items() if k in own and own[k].shape == v.shape and wanted(k)}
        rows = 0
        if self.target is not None:
            pairs = label_map(self.alphabet, self.target)
            dst = torch.tensor([n for n, _ in pairs])
            src = torch.tensor([o for _, o in pairs])
            for k in class_tensor_names(model, len(self.target)):
                old = self.state.get(k)
                take.pop(k, None)  # same shape is no proof of the same labels
                if old is None or not wanted(k) or old.shape[0] != len(self.alphabet) \
                        or old.shape[1:] != own[k].shape[1:]:
                    continue
                t = own[k].clone()
                t[dst] = old[src].to(t.dtype)
                take[k] = t
                rows = len(pairs)
        if not take:
            raise InkpackError(f"init_from {self.source}: no tensor matches the new model by name and shape")
        model.load_state_dict(take, strict=False)
        n = sum(v.numel() for v in take.values())
        total = sum(v.numel() for v in own.values())
        msg = f"warm start from {self.source}: {len(take)} tensors, {n:,} of {total:,} values"
        if rows:
            msg += f"; output rows of {rows} of {len(self.target)} classes copied"
        return msg


def read_init(path: str, layers: list[str] | None = None, resize: str = "union") -> WarmStart:
    """The weights and alphabet of a shipped/saved model (stem, .json or bundled name);
    ``resize`` (union | new | fail) is how :meth:`WarmStart.resolve` fits the alphabet to data."""
    from inkpack.models.io import load_model

    if layers is not None and (not isinstance(layers, list) or not all(isinstance(x, str) for x in layers)):
        raise InkpackError(f"init_layers must be a list of tensor-name prefixes, not {layers!r}")
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize: must be one of {', '.join(RESIZE_MODES)}, not {resize!r}")
    model, cfg, alphabet = load_model(path)
    return WarmStart(path, model.state_dict(), alphabet, tuple(layers or ()), resize, config=cfg)
