"""Four-directional 2D LSTM (MDLSTM) computed as a wavefront over anti-diagonals.

Why a wavefront: cell (i, j) needs only cells (i, j-1) and (i-1, j), so all cells of
anti-diagonal k = i + j can be computed at once from diagonal k-1; an H x W map takes
H + W - 1 steps instead of H * W. Cells are stored *skewed*, ``[D, K, N, X]`` (direction,
step = diagonal, row, feature) with ``N = B * (H + 1)`` rows: row 0 of every example is a
masked separator, so the vertical predecessor of row r is simply row r - 1 and the
horizontal one is row r of the previous step. Each direction sees its input flipped.

One step is ONE batched matmul over all directions, ``Z_k [D, N, C+1+2h] @ W [D, C+1+2h, 5h]``
with ``Z_k = [x | 1 | h(r) | h(r-1)]`` (input, bias, both predecessors), followed by a few
in-place elementwise ops. The input-to-gate projection is fused into that matmul rather than
computed for the whole map beforehand: a precomputed 5h-wide gate map has to stream through
memory once more, and on CPU that costs more than it saves (forward matmuls at B=32,
24x256, C=h=16: 100 ms fused vs 145 ms precomputed). The backward pass is hand-written: per
step two small matmuls for the state gradient, one for the input gradient and one that
accumulates the weight gradient, so the gate gradients never leave the cache.

Masking: a masked-out cell gets i = f1 = f2 = 0, so c = 0 and h = o * tanh(0) = 0: it passes
nothing on and its input never matters, which is what packing (any mask) relies on.
Parameter layout and gate order: see :mod:`inkpack.nn.mdlstm_reference`.
"""

from __future__ import annotations

import gc
import math
import threading
from contextlib import contextmanager, suppress

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from inkpack.errors import InkpackError
from inkpack.nn.mdlstm_reference import FLIPS

_sigmoid_bwd = torch.ops.aten.sigmoid_backward.grad_input
_tanh_bwd = torch.ops.aten.tanh_backward.grad_input


def mask_from_sizes(heights: torch.Tensor, widths: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Bool ``[B, H, W]``: True on each example's real top-left ``heights x widths`` area."""
    rows = torch.arange(H, device=heights.device)
    cols = torch.arange(W, device=widths.device)
    return (rows[None, :, None] < heights[:, None, None]) & (cols[None, None, :] < widths[:, None, None])


class _Pool:
    """Reusable flat buffers. Fresh multi-MB allocations are page-faulted on first touch
    (about 1 GB/s on the reference VM, slower than the layer itself), so the big scan
    buffers are recycled across calls instead. Each buffer counts how often it was taken,
    so a holder can tell whether its contents survived a give-back."""

    def __init__(self, keep: int = 6) -> None:
        self.keep, self.free, self.lock = keep, [], threading.RLock()  # re-entered from __del__

    def take(self, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        with self.lock:
            fits = [(t.numel(), i) for i, t in enumerate(self.free)
                    if t.dtype == dtype and t.device == device and t.numel() >= numel]
            if fits:
                buf = self.free.pop(min(fits)[1])
            else:  # never an inference tensor: a later forward outside inference_mode reuses it
                with torch.inference_mode(False):
                    buf = torch.empty(numel, dtype=dtype, device=device)
            buf._inkpack_takes = getattr(buf, "_inkpack_takes", 0) + 1
            return buf

    def give(self, buf: torch.Tensor) -> None:
        with self.lock:
            self.free.append(buf)
            if len(self.free) > self.keep:
                self.free.pop(min((t.numel(), i) for i, t in enumerate(self.free))[1])

    def reclaim(self, buf: torch.Tensor) -> None:
        with self.lock:
            for i, t in enumerate(self.free):
                if t is buf:
                    self.free.pop(i)
                    return

    def clear(self) -> None:
        with self.lock:
            self.free.clear()


_POOL = _Pool()


def clear_workspace() -> None:
    """Release the recycled scan buffers (e.g. after evaluating a huge batch)."""
    _POOL.clear()


class _Lease:
    """A forward pass's saved buffers: given back to the pool after backward (or when the
    graph is freed without one) and taken back if backward runs again (retain_graph)."""

    def __init__(self, buf: torch.Tensor) -> None:
        self.buf, self.takes, self.pooled = buf, buf._inkpack_takes, False

    def release(self) -> None:
        if not self.pooled:
            self.pooled = True
            _POOL.give(self.buf)

    def reclaim(self) -> None:
        if self.pooled:
            if self.buf._inkpack_takes != self.takes:
                raise RuntimeError(
                    "MDLSTM: a second backward through the same graph after other MDLSTM calls "
                    "is not supported (its saved state was recycled); recompute the forward pass"
                )
            _POOL.reclaim(self.buf)
            self.pooled = False

    def __del__(self) -> None:
        with suppress(AttributeError, TypeError):  # module globals may be gone at shutdown
            self.release()


def _carve(buf: torch.Tensor, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    out, pos = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(buf[pos : pos + n].view(s))
        pos += n
    return out


def _indices(b: int, H: int, W: int, flips, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``fwd [B, H, W, D]``: skewed row (in ``[D, K, N]``) of each cell and direction;
    ``inv [K, D, N]``: the cell ``(b*H + i)*W + j`` at each skewed row, ``B*H*W`` if none."""
    D, K, R = len(flips), H + W - 1, H + 1
    N = b * R
    i = torch.arange(H, device=device)[:, None]
    j = torch.arange(W, device=device)[None, :]
    bb = torch.arange(b, device=device)[:, None, None]
    fwd = torch.empty(b, H, W, D, dtype=torch.long, device=device)
    inv = torch.full((K * D * N,), b * H * W, dtype=torch.long, device=device)
    cells = torch.arange(b * H * W, device=device).view(b, H, W)
    for d, flip in enumerate(flips):
        ii = H - 1 - i if 2 in flip else i
        jj = W - 1 - j if 3 in flip else j
        k, n = ii + jj, bb * R + ii + 1
        fwd[..., d] = d * K * N + k * N + n
        inv[(k * (D * N) + d * N + n).view(-1)] = cells.view(-1)
    return fwd, inv.view(K, D, N)


@contextmanager
def _gc_paused():
    """The scans create thousands of short-lived tensor views (one per step and buffer), which
    would otherwise trigger full garbage collections costing ~50 ms per call; none of them
    forms a reference cycle, so collection simply waits until the scan is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _MDLSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *args):
        with _gc_paused():
            return _MDLSTMFunction._forward(ctx, *args)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        with _gc_paused():
            return _MDLSTMFunction._backward(ctx, grad_out)

    @staticmethod
    def _forward(ctx, x, mask, weight_ih, weight_hh, bias, flips, scale, merge):
        b, C, H, W = x.shape
        D, G, _ = weight_ih.shape
        h, K, N = G // 5, H + W - 1, b * (H + 1)
        Zw, BHW = C + 1 + 2 * h, b * H * W
        hs, hv = C + 1, C + 1 + h  # column offsets of h(r) and h(r-1) in Z
        fwd, inv = _indices(b, H, W, flips, x.device)
        # W_all[d] = [W_ih^T; bias; U_horizontal; U_vertical]: [C+1+2h, 5h]. tanh is ~5x slower
        # than sigmoid on CPU, so g = tanh(p) = 2*sigmoid(2p) - 1 (the 2 goes into the weights and
        # one sigmoid covers all five gates) and tanh(c) = 1 - 2*sigmoid(-2c).
        w_all = torch.cat([weight_ih, bias[:, :, None], weight_hh], dim=2).transpose(1, 2).clone()
        w_all[..., 4 * h :] *= 2.0
        tmp = _POOL.take((BHW + 1) * (C + 1) + D * K * N * h, x.dtype, x.device)
        x_ext, Hout = _carve(tmp, (BHW + 1, C + 1), (D, K, N, h))
        x_ext[:BHW, :C] = x.permute(0, 2, 3, 1).reshape(BHW, C)  # rows [x | 1]; the last row
        x_ext[BHW, :C] = 0.0  # stands for "no cell" (triangle or separator row)
        x_ext[:, C] = 1.0
        m_ext = torch.cat([mask.reshape(-1).to(x.dtype), x.new_zeros(1)])
        buf = _POOL.take(D * (K + 1) * N * (Zw + h) + D * K * N * G + K * D * N, x.dtype, x.device)
        Z, Cb, A, ms = _carve(buf, (D, K + 1, N, Zw), (D, K + 1, N, h), (D, K, N, G), (K, D, N, 1))
        torch.index_select(m_ext, 0, inv.view(-1), out=ms.view(-1))
        Z[:, 0, :, hs:].zero_()
        Z[:, 1:, 0, hv:].zero_()
        Cb[:, 0].zero_()
        Zs, Zx, As, A3 = Z.unbind(1), Z[..., :hs].unbind(1), A.unbind(1), A[..., : 3 * h].unbind(1)
        Gi, Gf1, Go, Gg = (A[..., s * h : (s + 1) * h].unbind(1) for s in (0, 1, 3, 4))
        Gf2 = A[:, :, 1:, 2 * h : 3 * h].unbind(1)
        Cs, Cup, Cdn = Cb.unbind(1), Cb[:, :, :-1].unbind(1), Cb[:, :, 1:].unbind(1)
        Hn, Hdst = Z[..., hs:hv].unbind(1), Z[:, :, 1:, hv:].unbind(1)
        Hk, Hkup = Hout.unbind(1), Hout[:, :, :-1].unbind(1)
        mss, invs = ms.unbind(0), inv.view(K, -1).unbind(0)
        sg, xk = x.new_empty(D, N, h), x.new_empty(D, N, C + 1)
        xk2 = xk.view(D * N, C + 1)
        for k in range(K):
            torch.index_select(x_ext, 0, invs[k], out=xk2)
            Zx[k].copy_(xk)
            torch.bmm(Zs[k], w_all, out=As[k])
            As[k].sigmoid_()
            A3[k].mul_(mss[k])
            Gg[k].mul_(2.0).sub_(1.0)
            c = torch.mul(Gi[k], Gg[k], out=Cs[k + 1])
            c.addcmul_(Gf1[k], Cs[k], value=scale)
            Cdn[k + 1].addcmul_(Gf2[k], Cup[k], value=scale)
            torch.mul(c, -2.0, out=sg).sigmoid_()
            torch.addcmul(Go[k], Go[k], sg, value=-2.0, out=Hk[k])
            Hn[k + 1].copy_(Hk[k])
            Hdst[k + 1].copy_(Hkup[k])
        out = torch.index_select(Hout.view(-1, h), 0, fwd.view(-1)).view(b, H, W, D, h)
        out = out.sum(3) if merge == "sum" else out.view(b, H, W, D * h)
        _POOL.give(tmp)
        if any(ctx.needs_input_grad):
            ctx.lease = _Lease(buf)
            ctx.save_for_backward(weight_ih, weight_hh)
            ctx.bufs = (Z, Cb, A, fwd, inv)
            ctx.cfg = (b, C, H, W, scale, merge)
        else:
            _POOL.give(buf)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def _backward(ctx, grad_out):
        weight_ih, weight_hh = ctx.saved_tensors
        ctx.lease.reclaim()
        Z, Cb, A, fwd, inv = ctx.bufs
        b, C, H, W, scale, merge = ctx.cfg
        D, K, N, G = A.shape
        h, Zw, BHW = G // 5, Z.shape[-1], b * H * W
        hs = C + 1
        g_rows = grad_out.permute(0, 2, 3, 1).reshape(-1, h)
        sentinel = inv == BHW
        if merge == "sum":
            inv_g = inv.masked_fill(sentinel, 0)
        else:
            inv_g = (inv * D + torch.arange(D, device=inv.device)[:, None]).masked_fill_(sentinel, 0)
        inv_g = inv_g.view(K, D * N)
        need_x = ctx.needs_input_grad[0]
        dbuf = _POOL.take(2 * D * K * N * C if need_x else 1, A.dtype, A.device)
        dX, dx_rows = _carve(dbuf, (D, K, N, C), (b * H * W * D, C)) if need_x else (None, None)
        dXs = dX.unbind(1) if need_x else ()
        u1t, u2t = weight_hh[:, :, :h], weight_hh[:, :, h:]  # [D, 5h, h]: DP @ u = state grads
        dWt = A.new_zeros(D, Zw, G)  # accumulated Z^T @ DP (this orientation is faster than DP^T @ Z)
        DP = A.new_zeros(D, N, G)  # gate gradients of one step (pre-activation)
        DP4, DPi, DPf1, DPo, DPg = DP[..., : 4 * h], *(DP[..., s * h : (s + 1) * h] for s in (0, 1, 3, 4))
        DPf2, DP_dn = DP[:, 1:, 2 * h : 3 * h], DP[:, 1:]
        dh, sg, th = (A.new_empty(D, N, h) for _ in range(3))
        dh_rows, dh_up = dh.view(-1, h), dh[:, :-1]
        gcs = (A.new_zeros(D, N, h), A.new_zeros(D, N, h))  # gradient reaching c, ping-pong
        gcs_up, gcs_dn = [g[:, :-1] for g in gcs], [g[:, 1:] for g in gcs]
        A4 = A[..., : 4 * h].unbind(1)
        Gi, Gf1, Go, Gg = (A[..., s * h : (s + 1) * h].unbind(1) for s in (0, 1, 3, 4))
        Gf2 = A[:, :, 1:, 2 * h : 3 * h].unbind(1)
        Cs, Cup, ZTs = Cb.unbind(1), Cb[:, :, :-1].unbind(1), Z.transpose(2, 3).unbind(1)
        invs = inv_g.unbind(0)
        scaled, p = scale != 1.0, 0
        for k in range(K - 1, -1, -1):
            torch.index_select(g_rows, 0, invs[k], out=dh_rows)
            if k < K - 1:  # DP still holds step k + 1, whose h(r) and h(r-1) inputs are h_k
                dh.baddbmm_(DP, u1t)
                dh_up.baddbmm_(DP_dn, u2t)
            torch.mul(Cs[k + 1], -2.0, out=sg).sigmoid_()  # tanh(c) = 1 - 2 * sg
            torch.addcmul(dh, dh, sg, value=-2.0, out=DPo)  # dL/do = dh * tanh(c)
            _sigmoid_bwd(dh, sg, grad_input=th)  # dh * (1 - tanh(c)^2) / 4
            dc = gcs[p].addcmul_(th, Go[k], value=4.0)
            torch.mul(dc, Gg[k], out=DPi)
            torch.mul(dc, Gi[k], out=th)
            _tanh_bwd(th, Gg[k], grad_input=DPg)
            if scaled:
                dc.mul_(scale)
            torch.mul(dc, Cs[k], out=DPf1)
            torch.mul(gcs_dn[p], Cup[k], out=DPf2)
            torch.mul(Gf1[k], dc, out=gcs[1 - p])
            gcs_up[1 - p].addcmul_(Gf2[k], gcs_dn[p])
            _sigmoid_bwd(DP4, A4[k], grad_input=DP4)
            if need_x:
                torch.bmm(DP, weight_ih, out=dXs[k])
            dWt.baddbmm_(ZTs[k], DP)
            p = 1 - p
        dx = None
        if need_x:
            torch.index_select(dX.view(-1, C), 0, fwd.view(-1), out=dx_rows)
            dx = dx_rows.view(b, H, W, D, C).sum(3).permute(0, 3, 1, 2)
        _POOL.give(dbuf)
        ctx.lease.release()
        dW = dWt.transpose(1, 2)
        return dx, None, dW[..., :C], dW[..., hs:], dW[..., C], None, None, None


class MDLSTM(nn.Module):
    """2D LSTM scanning from ``directions`` corners (1, 2 or 4); see the module docstring.

    ``forget_scale`` multiplies both forget terms (0.5 keeps c bounded; 1.0 is Graves' cell).
    The output is channels-last in memory (a permuted view), which convolutions accept as is.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        directions: int = 4,
        merge: str = "concat",
        forget_scale: float = 0.5,
    ) -> None:
        super().__init__()
        if directions not in (1, 2, 4):
            raise InkpackError(f"MDLSTM: directions must be 1, 2 or 4, got {directions}")
        if merge not in ("concat", "sum"):
            raise InkpackError(f"MDLSTM: merge must be 'concat' or 'sum', got {merge!r}")
        self.in_channels, self.hidden, self.directions = in_channels, hidden, directions
        self.merge, self.forget_scale = merge, float(forget_scale)
        self.flips = FLIPS[:directions]
        self.weight_ih = nn.Parameter(torch.empty(directions, 5 * hidden, in_channels))
        self.weight_hh = nn.Parameter(torch.empty(directions, 5 * hidden, 2 * hidden))
        self.bias = nn.Parameter(torch.empty(directions, 5 * hidden))
        self.reset_parameters()

    @property
    def out_channels(self) -> int:
        return self.hidden * (self.directions if self.merge == "concat" else 1)

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden)
        for p in (self.weight_ih, self.weight_hh, self.bias):
            nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():  # forget gates start open
            self.bias[:, self.hidden : 3 * self.hidden] += 1.0

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, H, W]``, ``mask`` bool ``[B, H, W]`` (True = real cell) -> ``[B, C', H, W]``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InkpackError(f"MDLSTM: expected input [B, {self.in_channels}, H, W], got {list(x.shape)}")
        b, _, H, W = x.shape
        if mask is None:
            mask = torch.ones(b, H, W, dtype=torch.bool, device=x.device)
        elif tuple(mask.shape) != (b, H, W):
            raise InkpackError(f"MDLSTM: mask must be [{b}, {H}, {W}], got {list(mask.shape)}")
        if x.numel() == 0:  # empty batch or map: nothing to scan
            return x.new_zeros(b, self.out_channels, H, W) + 0 * x.sum()
        return _MDLSTMFunction.apply(
            x, mask, self.weight_ih, self.weight_hh, self.bias, self.flips, self.forget_scale, self.merge
        )

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.hidden}, directions={self.directions}, "
                f"merge={self.merge!r}, forget_scale={self.forget_scale}")
