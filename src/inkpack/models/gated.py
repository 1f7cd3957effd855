"""Gated convolutional CNN-DBLSTM (Bluche & Messina 2017; HTR-Flor's gated blocks): the
DarkNet-sized conv stack with a gate ``x * sigmoid(conv(x))`` after each conv block and 2-D
dropout in the upper blocks, feeding the same BLSTM head as the other CNN-DBLSTMs."""

from __future__ import annotations

from inkpack.models.cnn_dblstm import CNN_DBLSTM_CAPABILITIES, CNNDBLSTM, scale_channels, with_width_factor
from inkpack.models.registry import register
from inkpack.nn.gated import GatedConvStack

GATED_CFG = [
    ("c", 16, 3), ("g", 3), ("p", 2, 2),
    ("c", 32, 3), ("g", 3), ("p", 2, 2),
    ("c", 48, 3), ("g", 3), ("d", 0.2), ("p", 2, 1),
    ("c", 64, 3), ("g", 3), ("d", 0.2), ("p", 2, 1),
    ("c", 128, 3),
]


@register("gated-dblstm", "image", "gated convolutions (Bluche & Messina 2017) + 2-layer BLSTM",
          **{k: v for k, v in CNN_DBLSTM_CAPABILITIES.items() if k != "packing"})
def gated_dblstm(num_classes: int, width: float = 1.0, pool_widths: int = 4, **opts) -> CNNDBLSTM:
    cfg = scale_channels(GATED_CFG, width)
    if pool_widths != 4:
        cfg = with_width_factor(cfg, pool_widths)
    return CNNDBLSTM(num_classes, cfg, stack=GatedConvStack, **opts)
