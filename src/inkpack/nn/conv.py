"""Convolution stacks described by a small config list, with width bookkeeping.

A config item is ``("c", out_channels, kernel)`` for conv+BN+LeakyReLU (same
padding, stride 1) or ``("p", pool_h, pool_w)`` for max pooling. Only pooling
changes sizes, so true widths follow ``ceil(w / pool_w)`` (ceil_mode pooling):
that is what CTC needs to know about each example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from inkpack.errors import InkpackError

ConvCfg = Sequence[tuple]


class StridedMaxPool2d(nn.MaxPool2d):
    """Non-overlapping ceil-mode max pooling; at inference the maximum of the kh·kw strided views
    (padded with -inf to whole windows), which gives the same values: on channels-last CPU
    tensors ATen's pooling took 0.22 ms for the first 2x2 pool of a line where this takes 0.07,
    4% of a whole line's recognition. Training and ONNX export use the stock operator."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        plain = self.stride == (kh, kw) and self.padding == 0 and self.dilation == 1 and self.ceil_mode
        if self.training or x.dim() != 4 or not plain or torch.onnx.is_in_onnx_export():
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

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
