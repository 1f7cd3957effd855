"""Packed batches: examples tiled into a few canvases instead of padded (seed 000).

* :mod:`inkpack.packing.layout`: the geometry (``pack_layout``, ``pack``, ``pack_batch``,
  ``repack``, ``transfer``), for any model;
* :mod:`inkpack.packing.cnn`: the packed forward pass of the CNN-DBLSTM line models;
* :mod:`inkpack.packing.mdlstm`: the packed forward pass of the ``mdlstm`` model.

An architecture names its packed pass in its registry entry (``packing="inkpack.packing.cnn"``,
see :mod:`inkpack.models.registry`); :func:`pack_options`, :func:`prepare` and
:func:`packed_forward` here dispatch to it, so the trainer needs no list of architectures.
"""

from __future__ import annotations

from inkpack.errors import InkpackError
from inkpack.packing.layout import (
    PackLayout,
    example_boxes,
    pack,
    pack_batch,
    pack_layout,
    pack_tensors,
    repack,
    transfer,
)

__all__ = ["PackLayout", "example_boxes", "pack", "pack_batch", "pack_layout", "pack_options", "pack_tensors",
           "packed_forward", "packer_of", "prepare", "repack", "transfer"]


def packer_of(model):
    """The packed-forward module that ``model``'s architecture declares, or a one-line error."""
    from inkpack.models.registry import load_capability, spec_for, with_capability

    spec = spec_for(model)
    if spec is None or spec.packing is None:
        raise InkpackError(f"packed_forward: no packed forward pass for {type(model).__name__} "
                           f"(architectures with one: {', '.join(with_capability('packing'))})")
    return load_capability(spec.packing)


def pack_options(model) -> dict:
    """Packer options for the input canvas of ``model`` (what :func:`packed_forward` expects)."""
    return packer_of(model).pack_options(model)


def prepare(model, batch):
    """Return ``batch`` re-packed for ``model`` unless its layout already suits it."""
    return packer_of(model).prepare(model, batch)


def packed_forward(model, batch, stats: dict | None = None):
    """``model`` on a packed batch -> ``(logits [T, B, K], out_lengths)``, as the padded
    forward pass gives for the same examples; ``stats`` receives ``layout_s`` (CPU seconds
    spent computing layouts)."""
    return packer_of(model).packed_forward(model, batch, stats)
