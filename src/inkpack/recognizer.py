"""Inference for offline line models: preprocessing, batched forward, decoding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from inkpack.batching import pad_collate
from inkpack.data.alphabet import Alphabet
from inkpack.data.images import prepare_line


class LineRecognizer:
    """Wraps a loaded image model; ``decode`` maps (log_probs [T, K], alphabet) → text."""

    def __init__(self, model: nn.Module, config: dict, alphabet: Alphabet, decoder=None) -> None:
        self.model = model.eval()
        self.config = config
        self.alphabet = alphabet
        self.height = int(config.get("preprocessing", {}).get("height", 48))
        self.decoder = decoder

    @classmethod
    def load(cls, path: str | None = None, decoder=None) -> "LineRecognizer":
        """The model from disk, with BatchNorm folded into its convolutions (inference only)."""
        from inkpack.model_io import load_model
        from inkpack.nn.conv import fold_batchnorm

        model, cfg, alphabet = load_model(path)
        fold_batchnorm(model)
        return cls(model, cfg, alphabet, decoder)

    def prepare(self, gray: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(prepare_line(gray, self.height))[None]

    @torch.inference_mode()
    def logits(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[T, B, K]`` and lengths for prepared ``[1, H, W]`` tensors."""
        batch = pad_collate(list(images))
        logits, lengths = self.model(batch.images, batch.heights, batch.widths)
        return logits.log_softmax(-1), lengths

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        if self.decoder is not None:
            return [
                self.decoder.decode(log_probs[: int(n), b].numpy(), self.alphabet)
                for b, n in enumerate(lengths)
            ]
        from inkpack.decode.greedy import greedy_decode

        return [self.alphabet.decode(lab) for lab in greedy_decode(log_probs, lengths)]

    def recognize_prepared(self, images: Sequence[torch.Tensor], batch_size: int = 16) -> list[str]:
        """Batch by similar width (little padding), return texts in input order."""
        order = sorted(range(len(images)), key=lambda i: images[i].shape[-1])
        out: list[str] = [""] * len(images)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            lp, lengths = self.logits([images[i] for i in idx])
            for i, text in zip(idx, self.decode(lp, lengths)):
                out[i] = text
        return out

    def recognize(self, grays: Sequence[np.ndarray], batch_size: int = 16) -> list[str]:
        return self.recognize_prepared([self.prepare(g) for g in grays], batch_size)
