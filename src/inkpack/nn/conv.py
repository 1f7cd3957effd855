"""Convolution stacks described by a small config list, with width bookkeeping.

A config item is ``("c", out_channels, kernel)`` for conv+BN+LeakyReLU (same
padding, stride 1) or ``("p", pool_h, pool_w)`` for max pooling. Only pooling
changes sizes, so true widths follow ``ceil(w / pool_w)`` (ceil_mode pooling):
that is what CTC needs to know about each example.

Batches of mixed widths (one answer per input): an example padded on the right must give,
on its real columns, what it gives alone. Alone, a convolution reads zeros past the last
column (its zero padding) and a ``ceil_mode`` pooling window that runs past it ignores the
missing cells. In a padded batch those columns hold the padding *after* a conv, BatchNorm
shift, bias or LeakyReLU made it non-zero, and pooling windows straddle the true width. So
:func:`run_masked` sets the cells past each example's width (at that level,
``ceil(w / f)`` for the width reduction ``f`` so far) to zero before every convolution that
pads in width and to ``-inf`` before every pooling wider than one column: each example
then sees exactly what it sees alone. ``ConvStack.forward(x, widths)`` does this for padded
batches (at inference only the few cells that reach real ones, :func:`run_halo`; while the
ONNX exporter traces, the masks go into the graph); :mod:`inkpack.packing.cnn` does it for
packed canvases with its own mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from inkpack.errors import InkpackError

ConvCfg = Sequence[tuple]
# layers that map each cell on its own (a zero or -inf cell stays off the examples' cells)
CELLWISE = (nn.BatchNorm2d, nn.Identity, nn.LeakyReLU, nn.ReLU, nn.Dropout, nn.Tanh)


def leaves(layers: nn.Module | Sequence[nn.Module]) -> Iterator[nn.Module]:
    """The layers of a (nested) ``Sequential`` in order, e.g. the three convs of a Tucker conv."""
    for m in layers:
        if isinstance(m, nn.Sequential):
            yield from leaves(m)
        else:
            yield m


def _pad_width(conv: nn.Conv2d) -> int:
    p = conv.padding
    if isinstance(p, str):  # "same" / "valid"
        return 0 if p == "valid" else conv.kernel_size[1] // 2
    return int(p[1])


def pool_width(m: nn.MaxPool2d) -> int:
    return nn.modules.utils._pair(m.kernel_size)[1]


def run_masked(layers: nn.Module | Sequence[nn.Module], x: torch.Tensor,
               off: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run ``layers`` on ``x`` with the cells off the examples zeroed before each convolution
    that pads in width and set to ``-inf`` before each max-pooling wider than one column.

    ``off(f, x)``: BoolTensor broadcastable to ``x`` (e.g. ``[B, 1, 1, W]``), True on the cells
    off the examples of a map whose width is reduced ``f`` times. A ``-inf`` left by a pool is
    zeroed before the next layer that is not cellwise and at the end (``-inf`` times a weight
    would give NaN). Masks that cannot change an example's cells are skipped (before a 1x1 conv
    or a one-column pool), so a layer-by-layer run costs one ``torch.where`` per 3x3 conv/pool."""
    f, inf_off = 1, False
    masks: dict[int, torch.Tensor] = {}

    def fill(x: torch.Tensor, value: float) -> torch.Tensor:
        if f not in masks:
            masks[f] = off(f, x)
        # torch.where keeps channels_last (masked_fill does not: a 2x slower conv stack)
        return torch.where(masks[f], value, x)

    for m in leaves(layers):
        if isinstance(m, nn.MaxPool2d):
            if pool_width(m) > 1:
                x, inf_off = fill(x, float("-inf")), True
        elif (isinstance(m, nn.Conv2d) and _pad_width(m) > 0) or (inf_off and not isinstance(m, CELLWISE)):
            x, inf_off = fill(x, 0.0), False
        x = m(x)
        if isinstance(m, nn.MaxPool2d):
            f *= nn.modules.utils._pair(m.stride)[1]
    return fill(x, 0.0) if inf_off else x


def run_halo(layers: nn.Module | Sequence[nn.Module], x: torch.Tensor, widths: Sequence[int]) -> torch.Tensor:
    """:func:`run_masked` for a right-padded batch at inference (no autograd), writing only the
    cells that reach an example's real cells: before a conv padding ``p`` columns in width, the
    ``p`` columns after each example's end (its zero padding when alone); before a pool ``k``
    wide, the cells of the window straddling the end (``-inf``: alone, a ``ceil_mode`` window
    ignores them). The other padding cells hold finite leftovers that no real cell reads, and
    no ``-inf`` outlives the pool (each straddling window has a real cell), so the real frames
    are those of :func:`run_masked` at a few small in-place writes instead of a pass over the
    whole map per layer (batch of 16 val lines, one thread: darknet +3% forward time instead of
    +30%, vgg +2%). For ConvStack's pools (kernel = stride, ceil_mode). ``x`` itself (the
    caller's images) is copied before the first write."""
    orig = x.untyped_storage().data_ptr()
    f = 1
    for m in leaves(layers):
        span = None
        if isinstance(m, nn.MaxPool2d) and pool_width(m) > 1:
            k, value = pool_width(m), float("-inf")
            span = lambda e: (e, -(-e // k) * k)  # noqa: E731
        elif isinstance(m, nn.Conv2d) and _pad_width(m) > 0:
            p, value = _pad_width(m), 0.0
            span = lambda e: (e, e + p)  # noqa: E731
        if span is not None:
            W = x.shape[-1]
            todo = [(b, a, min(c, W)) for b, w in enumerate(widths) for a, c in [span(-(-w // f))] if a < min(c, W)]
            if todo and x.untyped_storage().data_ptr() == orig:
                x = x.clone()  # keeps the memory format
            for b, a, c in todo:
                x[b, :, :, a:c] = value
        x = m(x)
        if isinstance(m, nn.MaxPool2d):
            f *= nn.modules.utils._pair(m.stride)[1]
    return x


def width_index(x: torch.Tensor) -> torch.Tensor:
    """``[W]`` = 0..W-1 for ``x [..., W]``, built from the tensor so an ONNX trace keeps W dynamic."""
    return torch.ones_like(x[(0,) * (x.dim() - 1)], dtype=torch.long).cumsum(0) - 1


def padded_off(widths: torch.Tensor) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """``off`` for :func:`run_masked` on a right-padded batch ``[B, C, H, W]`` of true ``widths``."""

    def off(f: int, x: torch.Tensor) -> torch.Tensor:
        w = torch.div(widths.to(x.device) + (f - 1), f, rounding_mode="floor")
        return (width_index(x)[None, :] >= w[:, None])[:, None, None, :]

    return off


class StridedMaxPool2d(nn.MaxPool2d):
    """Non-overlapping ceil-mode max pooling; at inference the maximum of the kh·kw strided views
    (padded with -inf to whole windows), which gives the same values: on channels-last CPU
    tensors ATen's pooling took 0.22 ms for the first 2x2 pool of a line where this takes 0.07,
    4% of a whole line's recognition. Training and ONNX export use the stock operator."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        plain = self.stride == (kh, kw) and self.padding == 0 and self.dilation == 1 and self.ceil_mode
        # the ONNX export (legacy exporter) traces: torch.jit.is_tracing() is True there and costs
        # 1 us where torch.onnx.is_in_onnx_export() costs 9 (per pool, per line)
        if self.training or x.dim() != 4 or not plain or torch.jit.is_tracing():
            return super().forward(x)
        h, w = x.shape[-2:]
        ph, pw = (-h) % kh, (-w) % kw
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), value=float("-inf"))
        out = x[..., 0::kh, 0::kw]
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    out = torch.maximum(out, x[..., i::kh, j::kw])
        return out


class ConvStack(nn.Module):
    def __init__(self, in_channels: int, cfg: ConvCfg, negative_slope: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        self.pools: list[tuple[int, int]] = []
        for item in cfg:
            kind = item[0]
            if kind == "c":
                out, k = int(item[1]), int(item[2])
                layers += [
                    nn.Conv2d(c, out, k, padding=k // 2, bias=False),
                    nn.BatchNorm2d(out),
                    nn.LeakyReLU(negative_slope, inplace=True),
                ]
                c = out
            elif kind == "p":
                ph, pw = int(item[1]), int(item[2])
                layers.append(StridedMaxPool2d((ph, pw), stride=(ph, pw), ceil_mode=True))
                self.pools.append((ph, pw))
            else:
                raise ValueError(f"conv config: unknown item {item!r}")
        self.body = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, H, W]``; with ``widths`` (true widths of a right-padded batch) each example's
        real cells are exactly what it gives alone (:func:`run_masked`; :func:`run_halo` without
        autograd). A batch without padding (all widths = W, e.g. one line) skips the masks,
        except while tracing."""
        if widths is None:
            return self.body(x)
        # (the ONNX exporter traces: the masks stay in its graph whatever widths it traces with)
        if torch.jit.is_tracing():
            return run_masked(self.body, x, padded_off(widths))
        if bool((widths >= x.shape[-1]).all()):
            return self.body(x)
        if not torch.is_grad_enabled():  # inference: write only the cells that matter
            return run_halo(self.body, x, [int(w) for w in widths.tolist()])
        return run_masked(self.body, x, padded_off(widths))

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        for ph, pw in self.pools:
            h, w = math.ceil(h / ph), math.ceil(w / pw)
        return h, w

    def out_widths(self, widths: torch.Tensor) -> torch.Tensor:
        w = widths.clone()
        for _, pw in self.pools:
            w = torch.div(w + pw - 1, pw, rounding_mode="floor")
        return w

    @property
    def width_factor(self) -> int:
        f = 1
        for _, pw in self.pools:
            f *= pw
        return f

    def check_input(self, h: int, w: int) -> None:
        if min(h, w) < 1:
            raise InkpackError(f"input too small: {h}x{w}")


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the convolution before it, in place; returns the
    number folded. Inference only: at batch 1 on a CPU the separate normalization pass costs
    about a tenth of the conv stack. A conv followed by BN inside a ``Sequential`` (also one
    ending a Tucker ``Sequential``) is folded; convs carrying hooks or parametrizations
    (pruning masks) are left alone, as is everything while the model is training."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        return 0
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            holder, conv, bn = seq, seq[i], seq[i + 1]
            index = i
            if isinstance(conv, nn.Sequential) and len(conv) and isinstance(conv[-1], nn.Conv2d):
                holder, index, conv = conv, len(conv) - 1, conv[-1]
            plain = not (conv._forward_pre_hooks or conv._forward_hooks or hasattr(conv, "parametrizations"))
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and plain and not bn.training:
                fused = fuse_conv_bn_eval(conv, bn)
                if conv.weight.is_contiguous(memory_format=torch.channels_last):
                    fused = fused.to(memory_format=torch.channels_last)
                holder[index] = fused
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded
