"""Inference for offline line models: preprocessing, batched forward, decoding.

One answer per input: a line gives the same text whatever path it takes (``recognize``,
``evaluate``, ``demo``, the API, the service) and whatever batch it shares.

* Preprocessing: every path feeds the model the line as stored by
  :func:`inkpack.data.lines.load_lineset` (what the model was trained and evaluated on):
  ``prepare_line`` rounded to 8 bits (:func:`line_to_u8`) and back to floats
  (:func:`u8_to_tensor`). ``LineRecognizer.prepare`` does both.
* Batching: the CNN-DBLSTM models mask their padding (``model(images, heights, widths)``);
  models with per-batch dynamic int8 activations (``torch.ao`` dynamic quantization: one
  activation scale for the whole batch tensor) run each line alone (:func:`batch_dependent`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from inkpack.batching import pad_collate
from inkpack.data.alphabet import Alphabet
from inkpack.data.images import prepare_line


def line_to_u8(img: np.ndarray) -> np.ndarray:
    """A prepared line (float, ink = 1) as 8 bits (ink = 255), as ``load_lineset`` stores it."""
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def u8_to_tensor(u8: np.ndarray) -> torch.Tensor:
    """An 8-bit prepared line (ink = 255) as the model's ``[1, H, W]`` float input."""
    return torch.from_numpy(u8.astype(np.float32) / 255.0)[None]


def batch_dependent(model: nn.Module) -> bool:
    """True when an example's output depends on its batch-mates even with exact masking:
    dynamically quantized layers compute one int8 activation scale over the whole batch."""
    dyn = torch.ao.nn.quantized.dynamic
    kinds = tuple(k for k in (getattr(dyn, n, None) for n in ("Linear", "LSTM", "GRU", "LSTMCell")) if k)
    return any(isinstance(m, kinds) for m in model.modules())


class LineRecognizer:
    """Wraps a loaded image model; ``decode`` maps (log_probs [T, K], alphabet) → text."""

    def __init__(self, model: nn.Module, config: dict, alphabet: Alphabet, decoder=None) -> None:
        self.model = model.eval()
        self.config = config
        self.alphabet = alphabet
        self.height = int(config.get("preprocessing", {}).get("height", 48))
        self.decoder = decoder
        self.per_example = isinstance(model, nn.Module) and batch_dependent(model)

    @classmethod
    def load(cls, path: str | None = None, decoder=None) -> "LineRecognizer":
        """The model from disk, with BatchNorm folded into its convolutions (inference only)."""
        from inkpack.model_io import load_model
        from inkpack.nn.conv import fold_batchnorm

        model, cfg, alphabet = load_model(path)
        fold_batchnorm(model)
        return cls(model, cfg, alphabet, decoder)

    def prepare(self, gray: np.ndarray) -> torch.Tensor:
        """2-D gray → ``[1, H, W]`` model input, 8-bit rounded like ``evaluate``'s lines."""
        return u8_to_tensor(line_to_u8(prepare_line(gray, self.height)))

    @torch.inference_mode()
    def logits(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[T, B, K]`` and lengths for prepared ``[1, H, W]`` tensors
        (frames past a line's length are padding: zero when lines run one by one)."""
        images = list(images)
        if self.per_example and len(images) > 1:
            return self.one_by_one(images)
        batch = pad_collate(images)
        logits, lengths = self.model(batch.images, batch.heights, batch.widths)
        return logits.log_softmax(-1), lengths

    def one_by_one(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`logits` of each line alone, padded with zeros to ``[T, B, K]`` (for backends
        whose output depends on the batch: dynamic int8 activations)."""
        outs = [self.logits([im]) for im in images]
        lengths = torch.cat([torch.as_tensor(n).reshape(-1) for _, n in outs])
        lp = torch.nn.utils.rnn.pad_sequence([o[: int(n), 0] for (o, _), n in zip(outs, lengths)])
        return lp, lengths

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
