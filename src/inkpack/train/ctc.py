"""CTC pieces shared by the trainers and the compression tools: loss, frames a label needs,
and the padded-or-packed forward pass of an image model on a :class:`~inkpack.batching.Batch`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inkpack.batching import Batch
from inkpack.errors import ConfigError


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


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[T, B] bool, True on the real frames of each sequence."""
    return torch.arange(frames, device=lengths.device)[:, None] < lengths[None, :]


def run_model(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded or packed forward pass of an image model on ``batch``."""
    if batch.packing is not None:
        from inkpack.packing import packed_forward

        return packed_forward(model, batch)
    return model(batch.images, batch.heights, batch.widths)


def shortcut_weight(model: nn.Module) -> float:
    """The weight of ``model``'s CTC shortcut loss (0: it has none)."""
    return float(getattr(model, "shortcut_weight", 0.0) or 0.0)


def train_forward(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`run_model` plus the logits of the model's CTC shortcut head, if it has one."""
    if not shortcut_weight(model):
        return (*run_model(model, batch), None)
    if batch.packing is not None:
        raise ConfigError("model option ctc_shortcut: needs padded batches (batching pad-max or pad-min), not pack")
    return model.forward_train(batch.images, batch.heights, batch.widths)


def training_loss(model: nn.Module, out: tuple, batch: Batch) -> torch.Tensor:
    """CTC loss of :func:`train_forward`'s ``out``: the main head's, plus the shortcut's times its
    weight."""
    logits, lengths, aux = out
    loss = ctc_loss(logits.float(), lengths, batch)
    if aux is not None:
        loss = loss + shortcut_weight(model) * ctc_loss(aux.float(), lengths, batch)
    return loss


class BatchForward(nn.Module):
    """What DDP wraps: its forward must be the one called, for the packed path too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return train_forward(self.model, batch)
