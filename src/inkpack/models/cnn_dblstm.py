"""CNN-DBLSTM line recognizers of the teacher–student seeds (003/004).

Both share one head: conv stack → flatten height → linear projection to a feature
sequence (``feat_dim``) → deep bidirectional LSTM → inner-product (IP) layer. The
teacher and the student therefore produce CNN feature sequences of the same size and
frame rate, which the distillation criteria need (frames align, the teacher's LSTM
and IP layers can be reused by the student).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from inkpack.errors import InkpackError
from inkpack.models.registry import register
from inkpack.nn.blstm import masked_bilstm
from inkpack.nn.conv import ConvStack

# VGG-style teacher: 3x3 convs only (about 8M parameters with the default head).
VGG_CFG = [
    ("c", 64, 3), ("p", 2, 2),
    ("c", 128, 3), ("p", 2, 2),
    ("c", 256, 3), ("c", 256, 3), ("p", 2, 1),
    ("c", 512, 3), ("c", 512, 3), ("p", 2, 1),
    ("c", 512, 3),
]
# DarkNet-style student: 3x3 convs with 1x1 bottlenecks, few channels.
DARKNET_CFG = [
    ("c", 16, 3), ("p", 2, 2),
    ("c", 32, 3), ("p", 2, 2),
    ("c", 64, 3), ("c", 32, 1), ("c", 64, 3), ("p", 2, 1),
    ("c", 128, 3), ("c", 64, 1), ("c", 128, 3), ("p", 2, 1),
]


class CNNDBLSTM(nn.Module):
    """Image ``[B, 1, H, W]`` → logits ``[T, B, K]`` with T = ceil(W / width_factor)."""

    def __init__(
        self,
        num_classes: int,
        conv_cfg,
        height: int = 48,
        feat_dim: int = 256,
        lstm_hidden: int = 128,
        lstm_layers: int = 2,
        dropout: float = 0.2,
        in_channels: int = 1,
        norm: str = "batch",
        stack: type[ConvStack] = ConvStack,
        ctc_shortcut: float = 0.0,
    ) -> None:
        super().__init__()
        if norm not in ("batch", "none"):
            raise InkpackError(f"model option norm must be 'batch' or 'none', not {norm!r}")
        if not 0.0 <= float(ctc_shortcut) < 10.0:
            raise InkpackError(f"model option ctc_shortcut must be a loss weight in [0, 10), not {ctc_shortcut!r}")
        self.height = height
        self.cnn = stack(in_channels, conv_cfg)
        if norm == "none":  # no batch statistics: an example's output ignores its batch-mates
            for i, m in enumerate(self.cnn.body):
                if isinstance(m, nn.BatchNorm2d):
                    self.cnn.body[i] = nn.Identity()
        h_out, _ = self.cnn.out_size(height, 64)
        self.feat_in = self.cnn.out_channels * h_out
        self.proj = nn.Linear(self.feat_in, feat_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            feat_dim,
            lstm_hidden,
            num_layers=lstm_layers,
            bidirectional=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.fc = nn.Linear(2 * lstm_hidden, num_classes)
        # CTC shortcut (Retsinas et al. 2022): a 1-D conv from the CNN features straight to the
        # classes, trained with its own CTC loss (weight ``ctc_shortcut``) next to the main one;
        # a training aid only, never on the inference path (forward, export)
        self.shortcut_weight = float(ctc_shortcut)
        self.shortcut = nn.Conv1d(feat_dim, num_classes, 3, padding=1) if ctc_shortcut else None
        # channels-last convolutions are ~1.4x faster on CPU (oneDNN) for these shapes
        self.cnn.to(memory_format=torch.channels_last)

    @property
    def width_factor(self) -> int:
        return self.cnn.width_factor

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        return self.cnn.out_widths(widths)

    def features(self, images: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        """CNN feature sequence ``[T, B, feat_dim]`` (what feeds the first LSTM layer).

        ``widths``: true widths of a right-padded batch; each example's real frames are then
        those it gives alone (the padding is re-zeroed before each conv and excluded from
        each pooling, :func:`inkpack.nn.conv.run_masked`). Without it, the padding of a
        shorter example reaches its last frames through the convolutions."""
        if images.shape[-2] != self.height:
            raise InkpackError(
                f"model expects images of height {self.height}, got {images.shape[-2]}"
            )
        f = self.cnn(images.contiguous(memory_format=torch.channels_last), widths)  # B, C, h, T
        b, c, h, t = f.shape
        f = f.permute(3, 0, 1, 2).reshape(t, b, c * h)
        return self.proj(f)

    def sequence(self, feats: torch.Tensor, lengths: torch.Tensor, packed: bool = False) -> torch.Tensor:
        """Run the DBLSTM over a padded feature sequence, respecting true lengths: on the padded
        batch with each line reversed in place for the backward direction
        (:func:`inkpack.nn.blstm.masked_bilstm`, faster on CPU), or with ``packed`` on a
        ``PackedSequence``; both are exact."""
        x = self.dropout(feats)
        if bool((lengths == x.shape[0]).all()):
            y, _ = self.lstm(x)
        elif packed or type(self.lstm) is not nn.LSTM:  # quantized / low-rank LSTMs: packed only
            seq = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
            y, _ = self.lstm(seq)
            y, _ = pad_packed_sequence(y, total_length=x.shape[0])
        else:
            y = masked_bilstm(self.lstm, x, lengths)
        return self.dropout(y)

    def forward(
        self, images: torch.Tensor, heights: torch.Tensor | None = None, widths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, lengths, _ = self.forward_train(images, heights, widths, shortcut=False)
        return logits, lengths

    def forward_train(
        self, images: torch.Tensor, heights: torch.Tensor | None = None, widths: torch.Tensor | None = None,
        shortcut: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` plus the CTC shortcut's logits ``[T, B, K]`` (None without one)."""
        if widths is None:
            widths = torch.full((images.shape[0],), images.shape[-1], dtype=torch.long)
        lengths = self.output_lengths(widths).clamp(min=1, max=None)
        feats = self.features(images, widths)
        lengths = lengths.clamp(max=feats.shape[0])
        aux = None
        if shortcut and self.shortcut is not None:
            aux = self.shortcut(feats.permute(1, 2, 0)).permute(2, 0, 1)
        y = self.sequence(feats, lengths)
        return self.fc(y), lengths, aux


# what every CNN-DBLSTM architecture can do (see inkpack.models.registry); gated-dblstm's gates
# have no packed pass, so it takes these without ``packing``
CNN_DBLSTM_CAPABILITIES = {
    "model_class": CNNDBLSTM,
    "packing": "inkpack.packing.cnn",
    "exporter": "inkpack.deploy.export:export_cnn_dblstm",
    "preprocess": "inkpack.infer.preprocess:prepare_image",
}


@register("vgg-dblstm", "image", "teacher: VGG 3x3 conv stack + 2-layer BLSTM (seed 003/004)",
          **CNN_DBLSTM_CAPABILITIES)
def vgg_dblstm(num_classes: int, **opts) -> CNNDBLSTM:
    return CNNDBLSTM(num_classes, VGG_CFG, **opts)


def scale_channels(cfg, width: float):
    """The same stack with every conv's channel count times ``width`` (rounded, at least 1)."""
    if not width > 0:
        raise InkpackError(f"model option width must be > 0, not {width!r}")
    return [(it[0], max(1, round(it[1] * width)), *it[2:]) if it[0] == "c" else tuple(it) for it in cfg]


def with_width_factor(cfg, factor: int):
    """The same stack with its width pooling changed so that it reduces the width ``factor``
    times (the CTC frame rate): the first pools take width 2 until the product reaches it."""
    pools = [i for i, item in enumerate(cfg) if item[0] == "p"]
    if factor < 1 or factor & (factor - 1) or factor > 2 ** len(pools):
        raise InkpackError(f"model option pool_widths must be a power of 2 from 1 to {2 ** len(pools)}, "
                           f"not {factor!r}")
    out, left = list(cfg), factor
    for i in pools:
        k, ph, _ = cfg[i]
        out[i] = (k, ph, 2 if left > 1 else 1)
        left = max(1, left // 2)
    return out


@register("darknet-dblstm", "image", "compact student: DarkNet 3x3/1x1 stack + 2-layer BLSTM",
          **CNN_DBLSTM_CAPABILITIES)
def darknet_dblstm(num_classes: int, width: float = 1.0, pool_widths: int = 4, **opts) -> CNNDBLSTM:
    """``width`` scales the conv channels (0.5: a half-width student for the same DBLSTM head);
    ``pool_widths``: the width reduction, i.e. one CTC frame per that many input columns."""
    cfg = scale_channels(DARKNET_CFG, width)
    if pool_widths != 4:
        cfg = with_width_factor(cfg, pool_widths)
    return CNNDBLSTM(num_classes, cfg, **opts)
