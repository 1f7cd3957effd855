"""The factored modules of SVD low-rank compression (seed 001): `LowRankLinear` and `LowRankLSTM`.

An LSTM's input-to-hidden and hidden-to-hidden matrices get separate ranks because the seed
found LSTMs more sensitive to input connections while most latency sits in the recurrent ones.
`LowRankLSTM` keeps nn.LSTM's call signature and outputs; its factors are plain `nn.Linear`
modules, so pruning, k-means sharing and `quantize_dynamic` reach them without special cases.
While the factors are plain fp32 Linears it runs as one fused nn.LSTM call on the rebuilt
dense matrices (W = U V, autograd reaching U and V): 2.6x faster to retrain lstm-char than a
per-step Python loop and exact to float rounding. Quantized factors take the loop.
:mod:`inkpack.compress.lowrank` swaps them into a model.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from inkpack.compress.layers import energy_rank
from inkpack.errors import InkpackError

__all__ = ["LowRankLSTM", "LowRankLinear", "factorize", "resolve_rank"]


def factorize(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """W (m, n) ≈ U (m, r) @ V (r, n), sqrt(S) split evenly so both factors train alike."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    r = max(1, min(rank, s.numel()))
    root = s[:r].sqrt()
    return (u[:, :r] * root).to(weight.dtype), (root[:, None] * vh[:r]).to(weight.dtype)


def resolve_rank(weight: Tensor, rank: int | None, energy: float | None) -> int | None:
    if rank is not None:
        return max(1, min(int(rank), min(weight.shape)))
    if energy is not None:
        return energy_rank(torch.linalg.svdvals(weight.detach().double()), energy)
    return None


def _factored(weight: Tensor, bias: Tensor | None, rank: int | None) -> nn.Module:
    """x @ W.T + b as one Linear (rank None) or as Linear(n→r) then Linear(r→m)."""
    m, n = weight.shape
    with_bias = bias is not None
    if rank is None:
        lin = nn.Linear(n, m, bias=with_bias, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(weight)
            if with_bias:
                lin.bias.copy_(bias)
        return lin
    u, v = factorize(weight, rank)
    first = nn.Linear(n, u.shape[1], bias=False, device=weight.device, dtype=weight.dtype)
    second = nn.Linear(u.shape[1], m, bias=with_bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        first.weight.copy_(v)
        second.weight.copy_(u)
        if with_bias:
            second.bias.copy_(bias)
    return nn.Sequential(first, second)


class LowRankLinear(nn.Sequential):
    """Linear(in→r, no bias) then Linear(r→out): r·(in+out) weights instead of in·out."""

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> "LowRankLinear":
        seq = _factored(linear.weight, linear.bias, rank)
        return cls(*seq)

    @property
    def rank(self) -> int:
        return self[0].out_features


class _Direction(nn.Module):
    """One layer, one direction: gates = ih(x_t) + hh(h_{t-1}); ih carries the merged bias."""

    def __init__(self, ih: nn.Module, hh: nn.Module, hidden: int) -> None:
        super().__init__()
        self.ih, self.hh, self.hidden = ih, hh, hidden


def _plain_factors(hh: nn.Module) -> tuple[Tensor | None, Tensor] | None:
    """(V or None, U) of a plain fp32 factor module (ih or hh), None for anything else (e.g. a quantized Linear)."""
    if type(hh) is nn.Linear:
        return None, hh.weight
    if isinstance(hh, nn.Sequential) and len(hh) == 2 and all(type(m) is nn.Linear for m in hh):
        return hh[0].weight, hh[1].weight
    return None


def _dense(m: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """(W, b) with m(x) = x W^T + b for a plain Linear or a plain factor pair, else None."""
    facs = _plain_factors(m)
    if facs is None:
        return None
    v, u = facs
    if v is None:
        return u, m.bias
    return (u @ v, m[1].bias) if m[0].bias is None else None


def _linear_macs(m: nn.Module) -> int:
    return sum(x.in_features * x.out_features for x in m.modules() if hasattr(x, "in_features"))


def _recurrence(cells: Sequence[_Direction]):
    """h [D, B, H] -> hh(h) [D, B, 4H] for all directions at once: two batched matmuls when the
    factors are plain tensors (ranks zero-padded to the largest), module calls otherwise."""
    facs = [_plain_factors(c.hh) for c in cells]
    if any(f is None for f in facs) or len({f[0] is None for f in facs}) > 1:
        return lambda xp, h: xp + torch.stack([c.hh(h[d]) for d, c in enumerate(cells)])
    if facs[0][0] is None:
        ut = torch.stack([u.t() for _, u in facs])
        return lambda xp, h: torch.baddbmm(xp, h, ut)
    r = max(v.shape[0] for v, _ in facs)
    vt = torch.stack([nn.functional.pad(v.t(), (0, r - v.shape[0])) for v, _ in facs])
    ut = torch.stack([nn.functional.pad(u.t(), (0, 0, 0, r - u.shape[1])) for _, u in facs])
    return lambda xp, h: torch.baddbmm(xp, torch.bmm(h, vt), ut)


def _run(xp: Tensor, h: Tensor, c: Tensor, recur, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """xp [T, D, B, 4H] precomputed input projections; per step only the recurrent matmuls."""
    H = h.shape[-1]
    outs = []
    if lengths is not None:
        alive_at = (torch.arange(xp.shape[0], device=xp.device)[:, None] < lengths[None, :]).unsqueeze(2)
    for t in range(xp.shape[0]):
        gates = recur(xp[t], h)
        sig = torch.sigmoid(gates)
        c_new = torch.addcmul(sig[..., H:2 * H] * c, sig[..., :H], torch.tanh(gates[..., 2 * H:3 * H]))
        h_new = sig[..., 3 * H:] * torch.tanh(c_new)
        if lengths is not None:  # finished sequences keep their state
            alive = alive_at[t]
            h_new = torch.where(alive, h_new, h)
            c_new = torch.where(alive, c_new, c)
        h, c = h_new, c_new
        outs.append(h)
    return torch.stack(outs), h, c


def _reverse_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x [T, B, F] inside its own length (padding stays at the end)."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)
    L = lengths.to(x.device).unsqueeze(0)
    idx = torch.where(t < L, L - 1 - t, t)
    return x.gather(0, idx.unsqueeze(2).expand_as(x))


class LowRankLSTM(nn.Module):
    """Drop-in for nn.LSTM (no proj_size) with W_ih ≈ U_i V_i and W_hh ≈ U_h V_h per layer/direction.

    Accepts padded input (batch_first or not) or a PackedSequence, and optional (h0, c0);
    returns (output, (h_n, c_n)) shaped like nn.LSTM's. b_ih + b_hh are merged into one bias.
    """

    def __init__(self, input_size: int, hidden_size: int, directions: Sequence[_Direction],
                 num_layers: int = 1, bidirectional: bool = False, batch_first: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.batch_first, self.dropout = bidirectional, batch_first, dropout
        self.cells = nn.ModuleList(directions)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, rank_ih: int | None = None, rank_hh: int | None = None,
                  energy_ih: float | None = None, energy_hh: float | None = None, *,
                  cell_ranks: Sequence[Sequence[int | None]] | None = None) -> "LowRankLSTM":
        """Factor every layer/direction; a None rank (and no energy) keeps that matrix dense.
        `cell_ranks` ([(rank_ih, rank_hh)] per layer/direction, as `.ranks()` gives) overrides."""
        if lstm.proj_size:
            raise InkpackError("LowRankLSTM: nn.LSTM with proj_size > 0 is not supported")
        if not lstm.bias:
            raise InkpackError("LowRankLSTM: nn.LSTM with bias=False is not supported")
        cells = []
        for layer in range(lstm.num_layers):
            for suffix in ("", "_reverse")[: 2 if lstm.bidirectional else 1]:
                key = f"l{layer}{suffix}"
                w_ih, w_hh = getattr(lstm, f"weight_ih_{key}"), getattr(lstm, f"weight_hh_{key}")
                bias = getattr(lstm, f"bias_ih_{key}") + getattr(lstm, f"bias_hh_{key}")
                if cell_ranks is not None:
                    r_ih, r_hh = cell_ranks[len(cells)]
                else:
                    r_ih, r_hh = resolve_rank(w_ih, rank_ih, energy_ih), resolve_rank(w_hh, rank_hh, energy_hh)
                ih = _factored(w_ih, bias.detach(), r_ih)
                hh = _factored(w_hh, None, r_hh)
                cells.append(_Direction(ih, hh, lstm.hidden_size))
        return cls(lstm.input_size, lstm.hidden_size, cells, lstm.num_layers,
                   lstm.bidirectional, lstm.batch_first, float(lstm.dropout))

    def ranks(self) -> list[tuple[int | None, int | None]]:
        """(rank_ih, rank_hh) per layer/direction; None where the matrix stayed dense."""
        def r(m: nn.Module) -> int | None:
            return m[0].out_features if isinstance(m, nn.Sequential) else None
        return [(r(d.ih), r(d.hh)) for d in self.cells]

    def flops(self, steps: int) -> int:
        """Gate matmul FLOPs over `steps` positions computed in factored form (what the seed's
        speed-up counts; the fused path's one dense rebuild per call is not included)."""
        return 2 * steps * sum(_linear_macs(c.ih) + _linear_macs(c.hh) for c in self.cells)

    def _dense_parameters(self) -> dict[str, Tensor] | None:
        """nn.LSTM's parameters rebuilt from the factors, or None if one is not plain fp32."""
        D = 2 if self.bidirectional else 1
        out: dict[str, Tensor] = {}
        for i, cell in enumerate(self.cells):
            ih, hh = _dense(cell.ih), _dense(cell.hh)
            if ih is None or hh is None or ih[1] is None or ih[0].dtype != torch.float32:
                return None
            key = f"l{i // D}{'_reverse' if i % D else ''}"
            out[f"weight_ih_{key}"], out[f"bias_ih_{key}"] = ih
            out[f"weight_hh_{key}"], out[f"bias_hh_{key}"] = hh[0], torch.zeros_like(ih[1])
        return out

    def _fused(self, dense: dict[str, Tensor]) -> nn.LSTM:
        lstm = self.__dict__.get("_template")  # not a submodule: its own weights are never used
        device = next(iter(dense.values())).device
        if lstm is None or lstm.weight_ih_l0.device != device:
            lstm = nn.LSTM(self.input_size, self.hidden_size, self.num_layers, batch_first=self.batch_first,
                           dropout=self.dropout, bidirectional=self.bidirectional, device=device)
            self.__dict__["_template"] = lstm
        return lstm.train(self.training)

    def _dense_for_call(self) -> dict[str, Tensor] | None:
        """``_dense_parameters``, kept between calls while no autograd is recorded and no factor
        changed (their tensor versions): at inference the rebuild cost about 60% of the LSTM's
        own gate matmuls on a hooker line at ranks 64:48."""
        if torch.is_grad_enabled():
            self.__dict__.pop("_dense_cache", None)
            return self._dense_parameters()
        key = tuple((id(p), p._version, p.data_ptr()) for p in self.parameters())
        hit = self.__dict__.get("_dense_cache")
        if hit is None or hit[0] != key:
            hit = (key, self._dense_parameters())
            self.__dict__["_dense_cache"] = hit
        return hit[1]

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None):
        dense = self._dense_for_call()
        if dense is not None:
            return functional_call(self._fused(dense), dense, (input,) if hx is None else (input, hx))
        return self._loop(input, hx)

    def _loop(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None):
        """The factored recurrence step by step (any factor modules, quantized ones too)."""
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=False)
            lengths = lengths.to(x.device)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
            lengths = None
        if x.dim() == 2 and not packed:  # unbatched [T, F], as nn.LSTM accepts
            b = 0 if self.batch_first else 1
            out, (h, c) = self._loop(input.unsqueeze(b),
                                       None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1)))
            return out.squeeze(b), (h.squeeze(1), c.squeeze(1))
        if x.dim() != 3:
            raise InkpackError(f"LowRankLSTM: expected a 2-D or 3-D input, got shape {tuple(x.shape)}")
        B, D, H = x.shape[1], 2 if self.bidirectional else 1, self.hidden_size
        if hx is None:
            h0 = x.new_zeros(self.num_layers * D, B, H)
            c0 = h0
        else:
            h0, c0 = hx
        hs, cs = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
            cells = self.cells[layer * D:(layer + 1) * D]
            xins = [x, _reverse_within(x, lengths)][:D]
            xp = torch.stack([cell.ih(xin) for cell, xin in zip(cells, xins, strict=True)], 1)
            k = slice(layer * D, (layer + 1) * D)
            y, h, c = _run(xp, h0[k], c0[k], _recurrence(cells), lengths)
            hs.append(h)
            cs.append(c)
            x = y[:, 0] if D == 1 else torch.cat([y[:, 0], _reverse_within(y[:, 1], lengths)], 2)
        h_n, c_n = torch.cat(hs), torch.cat(cs)
        if packed:
            mask = torch.arange(x.shape[0], device=x.device)[:, None] < lengths[None, :]
            x = x * mask.unsqueeze(2)
            order = input.sorted_indices
            xs = x if order is None else x.index_select(1, order)
            ls = lengths if order is None else lengths.index_select(0, order)
            data = pack_padded_sequence(xs, ls.cpu(), enforce_sorted=True).data
            out = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
            return out, (h_n, c_n)
        return (x.transpose(0, 1) if self.batch_first else x), (h_n, c_n)

    def flatten_parameters(self) -> None:
        """No-op, so code written for nn.LSTM (which calls this) keeps working."""

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}, ranks={self.ranks()}")

