"""Online (pen trajectory) recognizers.

* ``lstm-char`` (input kind ``"char"``): the baseline of seed 001 for whole-character
  classification, ``input -> LSTM(100) -> LSTM(512) -> FC(512) -> FC(classes)``.
  ``forward(features [B, T, F], lengths [B]) -> logits [B, classes]``. The character is
  summarised by the second LSTM's output at the **last valid time step** (``pool="last"``,
  the default, as in the seed's figure "t = T"); ``pool="mean"`` averages over the
  valid steps instead. Both LSTMs are unidirectional, so the zero padding after a
  sequence's end never reaches its last valid step: no packing is needed, and the
  model exports to ONNX as plain LSTMs.
* ``online-blstm`` (input kind ``"ink"``): BLSTM-CTC for text lines,
  ``forward(features [B, T, F], lengths [B]) -> (logits [T', B, K], out_lengths [B])``
  with optional temporal subsampling by stacking ``subsample`` consecutive frames
  (``T' = ceil(T / subsample)``), which cuts the LSTM's sequential steps by that factor.
  Its rows are points (``in_features = 6``) or, with ``preprocessing.features: bezier``, fitted
  cubic Bézier curves (``in_features = 10``, :mod:`inkpack.data.ink_bezier`; about 3.5 times fewer
  rows on IAM-OnDB lines, so ``subsample = 1`` there); the trainer sets ``in_features``.

Both declare their exporter (:mod:`inkpack.deploy.export_ink`) and their preprocessing
(:func:`inkpack.infer.ink_preprocess.prepare_ink`) in their registry entries.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from inkpack.errors import InkpackError
from inkpack.models.registry import register

PREPARE_INK = "inkpack.infer.ink_preprocess:prepare_ink"  # any ink input -> features (the preprocess capability)


def _check(features: torch.Tensor, lengths: torch.Tensor | None, in_features: int
           ) -> torch.Tensor:
    if features.dim() != 3 or features.shape[-1] != in_features:
        raise InkpackError(
            f"model expects point features [B, T, {in_features}], got {tuple(features.shape)}")
    b, t, _ = features.shape
    if lengths is None:
        return torch.full((b,), t, dtype=torch.long, device=features.device)
    lengths = lengths.to(device=features.device, dtype=torch.long)
    if lengths.shape != (b,) or (b and (int(lengths.min()) < 1 or int(lengths.max()) > t)):
        raise InkpackError(f"lengths must be {b} values in 1..{t}, got {lengths.tolist()}")
    return lengths


class LSTMChar(nn.Module):
    """Seed 001 baseline: two stacked LSTMs, then two fully connected layers."""

    def __init__(self, num_classes: int, in_features: int = 6, hidden1: int = 100,
                 hidden2: int = 512, fc: int = 512, pool: str = "last",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in ("last", "mean"):
            raise InkpackError(f"lstm-char: pool must be 'last' or 'mean', got {pool!r}")
        self.in_features = in_features
        self.pool = pool
        self.lstm1 = nn.LSTM(in_features, hidden1, batch_first=True)
        self.lstm2 = nn.LSTM(hidden1, hidden2, batch_first=True)
        self.fc1 = nn.Linear(hidden2, fc)
        self.fc2 = nn.Linear(fc, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        lengths = _check(features, lengths, self.in_features)
        h, _ = self.lstm1(features)
        h, _ = self.lstm2(h)
        if self.pool == "last":
            z = h[torch.arange(h.shape[0], device=h.device), lengths - 1]
        else:
            mask = torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]
            z = (h * mask[..., None]).sum(1) / lengths[:, None].to(h.dtype)
        z = self.dropout(torch.relu(self.fc1(self.dropout(z))))
        return self.fc2(z)


class OnlineBLSTM(nn.Module):
    """Deep BLSTM over point features with a CTC output layer (blank = class 0)."""

    def __init__(self, num_classes: int, in_features: int = 6, hidden: int = 128,
                 layers: int = 3, subsample: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if subsample < 1:
            raise InkpackError(f"online-blstm: subsample must be >= 1, got {subsample}")
        self.in_features = in_features
        self.subsample = subsample
        self.lstm = nn.LSTM(in_features * subsample, hidden, num_layers=layers,
                            bidirectional=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.subsample - 1, self.subsample, rounding_mode="floor")

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = _check(features, lengths, self.in_features)
        b, t, f = features.shape
        s = self.subsample
        # zero what lies past each sequence so a partial last window is the same in any batch
        valid = torch.arange(t, device=features.device)[None, :] < lengths[:, None]
        x = features * valid[..., None]
        if s > 1:
            pad = (-t) % s
            x = nn.functional.pad(x, (0, 0, 0, pad))
            x = x.reshape(b, (t + pad) // s, s * f)
        out_len = self.output_lengths(lengths)
        x = self.dropout(x.transpose(0, 1))
        if bool((out_len == x.shape[0]).all()):
            y, _ = self.lstm(x)
        else:
            packed = pack_padded_sequence(x, out_len.cpu(), enforce_sorted=False)
            y, _ = self.lstm(packed)
            y, _ = pad_packed_sequence(y, total_length=x.shape[0])
        return self.fc(self.dropout(y)), out_len


@register("lstm-char", "char",
          "seed 001 baseline: LSTM(100)-LSTM(512)-FC(512)-FC(classes), last-step pooling",
          model_class=LSTMChar, exporter="inkpack.deploy.export_ink:export_lstm_char", preprocess=PREPARE_INK,
          in_features=6, hidden1=100, hidden2=512, fc=512, pool="last", dropout=0.0)
def lstm_char(num_classes: int, **opts) -> LSTMChar:
    return LSTMChar(num_classes, **opts)


@register("online-blstm", "ink",
          "BLSTM-CTC over point features (x, y, dx, dy, pen_down, pen_up) or Bezier-curve features, "
          "optional subsampling",
          model_class=OnlineBLSTM, exporter="inkpack.deploy.export_ink:export_online_blstm",
          preprocess=PREPARE_INK, in_features=6, hidden=128, layers=3, subsample=1, dropout=0.0)
def online_blstm(num_classes: int, **opts) -> OnlineBLSTM:
    return OnlineBLSTM(num_classes, **opts)
