"""Gated convolutions (Bluche & Messina 2017, "Gated convolutional recurrent neural networks for
multilingual handwriting recognition"; HTR-Flor): a gate computed by a convolution of the
features multiplies the features, ``y = x * sigmoid(conv(x))``, so the network learns which
positions to pass on. A :class:`GatedConvStack` is a :class:`~inkpack.nn.conv.ConvStack` whose
config may also hold ``("g", kernel)`` gates and ``("d", rate)`` 2-D dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from inkpack.nn.conv import ConvCfg, ConvStack


class GatedConv2d(nn.Conv2d):
    """``x * sigmoid(conv(x))`` with a same-size ``channels → channels`` convolution. A
    subclass of ``nn.Conv2d`` so that whatever treats convolutions specially (padding masks,
    channels-last, FLOP counts) treats the gate's convolution alike."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(super().forward(x))


class GatedConvStack(ConvStack):
    def __init__(self, in_channels: int, cfg: ConvCfg, negative_slope: float = 0.1) -> None:
        plain = [item for item in cfg if item[0] in ("c", "p")]
        super().__init__(in_channels, plain, negative_slope)
        layers, it = [], iter(self.body)
        c = in_channels
        for item in cfg:
            kind = item[0]
            if kind == "c":
                conv, bn, act = next(it), next(it), next(it)
                layers += [conv, bn, act]
                c = conv.out_channels
            elif kind == "p":
                layers.append(next(it))
            elif kind == "g":
                layers.append(GatedConv2d(c, int(item[1])))
            elif kind == "d":
                layers.append(nn.Dropout2d(float(item[1])))
            else:
                raise ValueError(f"conv config: unknown item {item!r}")
        self.body = nn.Sequential(*layers)
