"""Export-safe pieces shared by the image exporter (:mod:`inkpack.deploy.export`) and the ink
exporter (:mod:`inkpack.deploy.export_ink`): the ONNX opset, the legacy-exporter call with a
one-line error, and :class:`MaskedBiLSTM` (a padded-batch LSTM equal to the packed one; why
it is needed: see :mod:`inkpack.deploy.export`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from inkpack.errors import InkpackError
from inkpack.nn.blstm import flip_within, reversal_index

OPSET = 17


def _lstm_like(lstm: nn.LSTM, layer: int, suffix: str) -> nn.LSTM:
    """One direction of one layer of ``lstm`` as its own unidirectional, single-layer LSTM."""
    in_size = lstm.input_size if layer == 0 else lstm.hidden_size * (2 if lstm.bidirectional else 1)
    one = nn.LSTM(in_size, lstm.hidden_size, num_layers=1, bias=lstm.bias)
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if lstm.bias else [])
    with torch.no_grad():
        for n in names:
            getattr(one, f"{n}_l0").copy_(getattr(lstm, f"{n}_l{layer}{suffix}"))
    return one.eval()


def _time_index(x: torch.Tensor) -> torch.Tensor:
    """``[T]`` = 0..T-1 built from the tensor itself, so T stays dynamic in the trace."""
    return torch.cumsum(torch.ones_like(x[:, 0, 0], dtype=torch.long), 0) - 1


class MaskedBiLSTM(nn.Module):
    """Seq-first ``nn.LSTM`` replacement whose result on a padded batch equals the packed one."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if lstm.batch_first or lstm.proj_size:
            raise InkpackError("ONNX export: only seq-first nn.LSTM without proj_size is supported")
        self.bidirectional = lstm.bidirectional
        self.fwd = nn.ModuleList(_lstm_like(lstm, k, "") for k in range(lstm.num_layers))
        self.bwd = nn.ModuleList(
            _lstm_like(lstm, k, "_reverse") for k in range(lstm.num_layers)
        ) if lstm.bidirectional else nn.ModuleList()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = _time_index(x)[:, None]  # [T, 1]
        rev = reversal_index(t, lengths)  # its own inverse
        for k in range(len(self.fwd)):
            yf, _ = self.fwd[k](x)
            if not self.bidirectional:
                x = yf
                continue
            yr, _ = self.bwd[k](flip_within(x, rev))
            x = torch.cat([yf, flip_within(yr, rev)], dim=2)
        return x * (t < lengths[None, :])[:, :, None].to(x.dtype)


def torch_export(module: nn.Module, args: tuple, path: Path, **kw) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints and LSTM batch_first
        try:
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                              do_constant_folding=True, **kw)
        except InkpackError:
            raise
        except Exception as e:  # the exporter raises many types; name the model and the cause
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InkpackError(f"ONNX export of {type(module).__name__} failed: {first}") from None
