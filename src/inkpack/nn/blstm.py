"""Bidirectional LSTM over a padded batch whose result equals the packed-sequence one.

Each direction of each layer runs on the padded ``[T, B, C]`` batch; the backward direction
reads every sequence reversed *within its own length* (an index gather ``t -> len-1-t``,
its own inverse), so padding comes after a sequence's frames in both directions and never
reaches them. Outputs past each length are zero, as ``pad_packed_sequence`` gives. On CPU
this is 1.4-1.7x faster than ``pack_padded_sequence`` (whose per-step batches shrink) even
with the padding of random batches, and it is what the ONNX export traces.
"""

from __future__ import annotations

import torch
from torch import nn


def reversal_index(t: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[T, B]`` gather index reversing each column's first ``lengths[b]`` steps (``t``: ``[T, 1]``)."""
    return torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def flip_within(x: torch.Tensor, rev: torch.Tensor) -> torch.Tensor:
    """Apply :func:`reversal_index` ``rev`` to ``[T, B, C]`` (twice is the identity)."""
    return x.gather(0, rev[:, :, None].expand(-1, -1, x.shape[2]))


def _one_direction(lstm: nn.LSTM, layer: int, reverse: bool) -> tuple[nn.LSTM, dict]:
    """A one-layer forward LSTM and the weights of ``lstm``'s ``layer`` in one direction
    (for ``torch.func.functional_call``: gradients flow to ``lstm``'s own parameters)."""
    cache = lstm.__dict__.setdefault("_inkpack_directions", {})
    uni = cache.get(layer)
    if uni is None:
        n_in = lstm.input_size if layer == 0 else 2 * lstm.hidden_size
        with torch.random.fork_rng(devices=[]):  # its own init weights are never used: keep the RNG
            uni = cache[layer] = nn.LSTM(n_in, lstm.hidden_size, 1, bias=lstm.bias)
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ())
    return uni, {f"{n}_l0": getattr(lstm, n + sfx) for n in names}


def masked_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``lstm`` (seq-first, bidirectional, no projection) on padded ``x`` ``[T, B, C]`` with true
    ``lengths``: equals packing, running and unpacking (inter-layer dropout as ``lstm`` applies it)."""
    if lstm.batch_first or lstm.proj_size or not lstm.bidirectional:
        raise ValueError("masked_bilstm: needs a seq-first bidirectional nn.LSTM without proj_size")
    t = torch.arange(x.shape[0], device=x.device)[:, None]
    n = lengths.to(x.device)
    rev = reversal_index(t, n)
    for layer in range(lstm.num_layers):
        fwd, wf = _one_direction(lstm, layer, False)
        bwd, wb = _one_direction(lstm, layer, True)
        yf, _ = torch.func.functional_call(fwd, wf, (x,))
        yb, _ = torch.func.functional_call(bwd, wb, (flip_within(x, rev),))
        x = torch.cat([yf, flip_within(yb, rev)], -1)
        if layer < lstm.num_layers - 1 and lstm.dropout > 0:
            x = nn.functional.dropout(x, lstm.dropout, lstm.training)
    return x * (t < n[None, :])[:, :, None].to(x.dtype)
