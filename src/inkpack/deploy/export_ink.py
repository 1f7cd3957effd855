"""ONNX export of the ink models of :mod:`inkpack.models.online`.

* ``lstm-char``: its LSTMs are unidirectional and it reads the last *valid* step, so padding
  never reaches the result; it exports as is. Outputs ``log_probs [B, classes]``.
* ``online-blstm``: its forward packs the sequence (not exportable), so ``ExportOnlineBLSTM``
  re-runs it with :class:`inkpack.deploy.export_base.MaskedBiLSTM` (exact for mixed lengths) and a
  trace-safe subsampling. Outputs ``log_probs [T', B, K]`` and ``lengths [B]``.

Inputs are ``features [B, T, F]`` float32 and ``lengths [B]`` int64; batch and T are dynamic.
Each architecture names its exporter in its registry entry (:mod:`inkpack.models.registry`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from inkpack.deploy.export_base import MaskedBiLSTM, torch_export
from inkpack.errors import InkpackError


class ExportLSTMChar(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(features, lengths).log_softmax(-1)


class ExportOnlineBLSTM(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model.lstm, nn.LSTM):
            raise InkpackError(f"ONNX export: {type(model.lstm).__name__} layers are not supported (nn.LSTM only)")
        self.model = model
        self.lstm = MaskedBiLSTM(model.lstm)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        s = int(m.subsample)
        t_idx = torch.cumsum(torch.ones_like(features[0, :, 0], dtype=torch.long), 0) - 1  # [T]
        x = features * (t_idx[None, :] < lengths[:, None]).to(features.dtype)[..., None]
        if s > 1:
            f = x.shape[2]
            x = torch.cat([x, torch.zeros_like(x[:, :1, :]).expand(-1, s - 1, -1)], dim=1)
            n_out = torch.div(torch._shape_as_tensor(features)[1] + s - 1, s, rounding_mode="floor")
            x = x.index_select(1, torch.arange(n_out * s))
            x = x.reshape(x.shape[0], -1, s * f)
        out_len = m.output_lengths(lengths)
        y = self.lstm(x.transpose(0, 1), out_len)
        return m.fc(y).log_softmax(-1), out_len


def _export(wrap: type[nn.Module], model: nn.Module, path: Path, outs: list[str], dyn: dict) -> dict:
    """Trace ``wrap(model)`` on two sequences of mixed lengths (the general graph)."""
    f = int(getattr(model, "in_features", 6))
    lengths = torch.tensor([23, 14])
    feats = torch.randn(2, 23, f)
    feats[1, 14:] = 0
    torch_export(wrap(model).eval(), (feats, lengths), path, input_names=["features", "lengths"],
                 output_names=outs, dynamic_axes=dyn)
    return {"inputs": ["features", "lengths"], "outputs": outs, "in_features": f,
            "subsample": int(getattr(model, "subsample", 1)), "exact_mixed_lengths": True}


def export_lstm_char(model: nn.Module, path: Path) -> dict:
    """The ``lstm-char`` exporter (registry capability): ``log_probs [B, classes]``."""
    dyn = {"features": {0: "batch", 1: "points"}, "lengths": {0: "batch"}, "log_probs": {0: "batch"}}
    return _export(ExportLSTMChar, model, path, ["log_probs"], dyn)


def export_online_blstm(model: nn.Module, path: Path) -> dict:
    """The ``online-blstm`` exporter (registry capability): ``log_probs [T', B, K]``, ``lengths_out``."""
    dyn = {"features": {0: "batch", 1: "points"}, "lengths": {0: "batch"},
           "log_probs": {0: "frames", 1: "batch"}, "lengths_out": {0: "batch"}}
    return _export(ExportOnlineBLSTM, model, path, ["log_probs", "lengths_out"], dyn)
