"""MDLSTM line recognizer after Graves & Schmidhuber (2008), with the dropout of Pham et al. (2014).

2x2 input blocks (space-to-depth) → MDLSTM(2) → conv 2x4/stride 2x4 (6) + tanh → MDLSTM(10)
→ conv 2x4 (20) + tanh → MDLSTM(50) → fully connected (N) → collapse (sum over the real rows)
→ logits ``[T, B, N]``. Dropout acts on MDLSTM outputs only (never on recurrent connections).

The network is a flat list of stages (``self.stages``), each mapping ``(x, heights, widths)``
to the next feature map and telling how per-example sizes shrink (``stage.sizes``), so that
a packed forward can cut and re-pack the examples between stages. Block and conv stages pad
bottom/right to a multiple of their stride (ceil mode): zero padding equals the zero output
that the MDLSTM gives masked cells, so a padded batch and each example alone agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from inkpack.errors import InkpackError
from inkpack.models.registry import register
from inkpack.nn.mdlstm import MDLSTM, mask_from_sizes

DROPOUT_LAYERS = ("top", "top2", "all", "none")


def _ceil_div(n: torch.Tensor, d: int) -> torch.Tensor:
    return torch.div(n + d - 1, d, rounding_mode="floor")


def _pad_to_multiple(x: torch.Tensor, sh: int, sw: int) -> torch.Tensor:
    ph, pw = -x.shape[-2] % sh, -x.shape[-1] % sw
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


class SpaceToDepth(nn.Module):
    """Non-overlapping ``bh x bw`` blocks become channels: ``[B, C*bh*bw, ceil(H/bh), ceil(W/bw)]``."""

    def __init__(self, in_channels: int, block: Sequence[int]) -> None:
        super().__init__()
        self.bh, self.bw = int(block[0]), int(block[1])
        self.out_channels = in_channels * self.bh * self.bw

    def sizes(self, heights: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _ceil_div(heights, self.bh), _ceil_div(widths, self.bw)

    def forward(self, x: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        x = _pad_to_multiple(x, self.bh, self.bw)
        b, c, H, W = x.shape
        x = x.reshape(b, c, H // self.bh, self.bh, W // self.bw, self.bw)
        return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * self.bh * self.bw, H // self.bh, W // self.bw)


class LSTMStage(nn.Module):
    """MDLSTM over the real cells (mask from sizes, or an explicit one for packed canvases)."""

    def __init__(self, in_channels: int, hidden: int, dropout: float, forget_scale: float) -> None:
        super().__init__()
        self.lstm = MDLSTM(in_channels, hidden, directions=4, merge="concat", forget_scale=forget_scale)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = self.lstm.out_channels

    def sizes(self, heights: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return heights, widths

    def forward(self, x: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = mask_from_sizes(heights, widths, x.shape[-2], x.shape[-1])
        return self.dropout(self.lstm(x, mask))


class ConvTanh(nn.Module):
    """Convolution with stride = kernel (the paper's "sum & tanh" subsampling) + tanh."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int]) -> None:
        super().__init__()
        self.kh, self.kw = int(kernel[0]), int(kernel[1])
        self.conv = nn.Conv2d(in_channels, out_channels, (self.kh, self.kw), stride=(self.kh, self.kw))
        self.out_channels = out_channels

    def sizes(self, heights: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _ceil_div(heights, self.kh), _ceil_div(widths, self.kw)

    def forward(self, x: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(_pad_to_multiple(x, self.kh, self.kw)))


class CollapseHead(nn.Module):
    """Fully connected layer at every position, summed over each example's real rows.

    Computed as a sum followed by the linear map (cheaper, same result): the bias is added
    once per real row, exactly as when the fully connected layer runs before the collapse.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes, bias=False)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor, heights: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[-2], device=x.device)[None, :] < heights[:, None]  # [B, H]
        s = (x * rows[:, None, :, None].to(x.dtype)).sum(2)  # [B, C, T]
        logits = self.fc(s.permute(2, 0, 1))  # [T, B, N]
        return logits + heights.to(x.dtype)[None, :, None] * self.bias


class MDLSTMNet(nn.Module):
    """Image ``[B, C, H, W]`` (ink = 1) + true sizes → logits ``[T, B, K]`` and lengths."""

    def __init__(
        self,
        num_classes: int,
        hidden: Sequence[int] = (2, 10, 50),
        conv_features: Sequence[int] = (6, 20),
        block: Sequence[int] = (2, 2),
        conv_kernel: Sequence[int] = (2, 4),
        dropout: float = 0.5,
        dropout_layers: str = "all",
        forget_scale: float = 0.5,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if len(conv_features) != len(hidden) - 1 or not hidden:
            raise InkpackError(
                f"mdlstm: need one conv_features entry between consecutive MDLSTM layers, "
                f"got hidden={list(hidden)} conv_features={list(conv_features)}"
            )
        if dropout_layers not in DROPOUT_LAYERS:
            raise InkpackError(
                f"mdlstm: dropout_layers must be one of {DROPOUT_LAYERS}, got {dropout_layers!r}"
            )
        n = len(hidden)
        n_drop = {"top": 1, "top2": 2, "all": n, "none": 0}[dropout_layers]
        self.in_channels = in_channels
        stages: list[nn.Module] = [SpaceToDepth(in_channels, block)]
        ch = stages[0].out_channels
        for k, hid in enumerate(hidden):
            stages.append(LSTMStage(ch, int(hid), dropout if k >= n - n_drop else 0.0, forget_scale))
            ch = stages[-1].out_channels
            if k < n - 1:
                stages.append(ConvTanh(ch, int(conv_features[k]), conv_kernel))
                ch = stages[-1].out_channels
        self.stages = nn.ModuleList(stages)
        self.head = CollapseHead(ch, num_classes)

    def sizes(self, heights: torch.Tensor, widths: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-example ``(heights, widths)`` entering each stage, then at the head."""
        out = [(heights, widths)]
        for stage in self.stages:
            out.append(stage.sizes(*out[-1]))
        return out

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        return self.sizes(torch.ones_like(widths), widths)[-1][1]

    def _check(self, images: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise InkpackError(
                f"mdlstm: images must be [B, {self.in_channels}, H, W], got {list(images.shape)}"
            )
        b, _, H, W = images.shape
        if heights.shape != (b,) or widths.shape != (b,):
            raise InkpackError(
                f"mdlstm: heights/widths must have {b} entries, "
                f"got {list(heights.shape)}/{list(widths.shape)}"
            )
        if b and (int(heights.min()) < 1 or int(widths.min()) < 1):
            raise InkpackError("mdlstm: input too small: every image needs at least 1x1 real pixels")
        if b and (int(heights.max()) > H or int(widths.max()) > W):
            raise InkpackError(f"mdlstm: heights/widths exceed the image tensor {H}x{W}")

    def forward(self, images: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images, heights, widths)
        mask = mask_from_sizes(heights, widths, images.shape[-2], images.shape[-1])
        x = images * mask[:, None].to(images.dtype)  # padding must be zero whatever the batcher did
        h, w = heights, widths
        for stage in self.stages:
            x = stage(x, h, w)
            h, w = stage.sizes(h, w)
        return self.head(x, h), w


# why export_onnx refuses this architecture (its registry entry has no exporter)
NO_EXPORT = ("MDLSTM models cannot be exported to ONNX with a dynamic width: the 2D wavefront is a "
             "Python loop of H + W - 1 steps in a custom autograd function, which the exporter "
             "unrolls for the example size only; serve them with the PyTorch backend")


@register(
    "mdlstm",
    "image",
    "MDLSTM (Graves & Schmidhuber 2008; 4 directions, wavefront), dropout on LSTM outputs (Pham et al. 2014)",
    model_class=MDLSTMNet,
    packing="inkpack.packing.mdlstm",
    no_export=NO_EXPORT,
    preprocess="inkpack.infer.preprocess:prepare_image",
    hidden=[2, 10, 50],
    conv_features=[6, 20],
    block=[2, 2],
    conv_kernel=[2, 4],
    dropout=0.5,
    dropout_layers="all",
    forget_scale=0.5,
    in_channels=1,
)
def build_mdlstm(num_classes: int, **opts) -> nn.Module:
    # the trainer passes every image model its input height; MDLSTM takes any height
    opts.pop("height", None)
    return MDLSTMNet(num_classes, **opts)
