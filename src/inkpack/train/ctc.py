"""CTC pieces shared by the trainers and the compression tools: loss, frames a label needs,
and the padded-or-packed forward pass of an image model on a :class:`~inkpack.batching.Batch`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inkpack.batching import Batch


def needed_frames(labels: list[int]) -> int:
    """CTC needs one frame per label plus a blank between repeated labels."""
    return len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean per-line CTC loss (sum over the line, mean over lines)."""
    lp = logits.log_softmax(-1)
    loss = F.ctc_loss(
        lp, batch.targets, lengths, batch.target_lengths, blank=0, reduction="sum", zero_infinity=True
    )
    return loss / max(1, len(batch))


def run_model(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded or packed forward pass of an image model on ``batch``."""
    if batch.packing is not None:
        from inkpack.packing import packed_forward

        return packed_forward(model, batch)
    return model(batch.images, batch.heights, batch.widths)


class BatchForward(nn.Module):
    """What DDP wraps: its forward must be the one called, for the packed path too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return run_model(self.model, batch)
