"""ONNX export of CNN-DBLSTM models whose DBLSTM is a :class:`~inkpack.compress.factored.LowRankLSTM`
(issue 22, item 2: int8 through ONNX Runtime as the deployment path of the compressed LSTM).

The ONNX ``LSTM`` op takes one input matrix W (4H × in) and one recurrent matrix R (4H × H) per
direction. A factored input matrix W ≈ U V maps onto it exactly: a ``MatMul`` by V (in → r) ahead
of an ``LSTM`` whose input size is r and whose W is U. A factored recurrent matrix cannot: R acts
inside the op's time loop, so it is exported rebuilt dense (U_h V_h), and only the input side
keeps its parameter and FLOP savings in the ONNX file. The graph is otherwise the image
exporter's (:class:`inkpack.deploy.export.ExportCNNDBLSTM` with its exact masked BiLSTM), and
``onnx_quantize_int8`` turns the LSTMs into ``DynamicQuantizeLSTM`` and V's ``MatMul`` into int8.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from inkpack.compress.factored import LowRankLSTM
from inkpack.deploy.export_base import MaskedBiLSTM, torch_export
from inkpack.errors import InkpackError

__all__ = ["FactoredInputLSTM", "LowRankMaskedBiLSTM", "export_lowrank_onnx"]


def _weight(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W, b) of a plain Linear or the rebuilt product of a factor pair."""
    if type(m) is nn.Linear:
        return m.weight.detach(), None if m.bias is None else m.bias.detach()
    if isinstance(m, nn.Sequential) and len(m) == 2 and all(type(x) is nn.Linear for x in m):
        return (m[1].weight @ m[0].weight).detach(), None if m[1].bias is None else m[1].bias.detach()
    raise InkpackError(f"low-rank ONNX export: factor {type(m).__name__} is not a plain fp32 Linear "
                       "(export before int8; ONNX Runtime quantizes the exported graph)")


class FactoredInputLSTM(nn.Module):
    """One direction of one LowRankLSTM layer as ``V`` (a bias-free Linear, when the input matrix
    is factored) then a one-layer unidirectional ``nn.LSTM`` with W = U and R rebuilt dense."""

    def __init__(self, cell: nn.Module, input_size: int, hidden: int) -> None:
        super().__init__()
        ih = cell.ih
        factored = isinstance(ih, nn.Sequential)
        self.v = nn.Linear(input_size, ih[0].out_features, bias=False) if factored else None
        w_ih, b = _weight(ih[1] if factored else ih)
        w_hh, _ = _weight(cell.hh)
        self.lstm = nn.LSTM(w_ih.shape[1], hidden, num_layers=1)
        with torch.no_grad():
            if self.v is not None:
                self.v.weight.copy_(ih[0].weight)
            self.lstm.weight_ih_l0.copy_(w_ih)
            self.lstm.weight_hh_l0.copy_(w_hh)
            self.lstm.bias_ih_l0.copy_(b if b is not None else torch.zeros(4 * hidden))
            self.lstm.bias_hh_l0.zero_()  # LowRankLSTM merged both biases into ih's
        self.eval()

    def forward(self, x: torch.Tensor):
        return self.lstm(self.v(x) if self.v is not None else x)


class LowRankMaskedBiLSTM(MaskedBiLSTM):
    """:class:`MaskedBiLSTM` (the exporter's exact padded-batch BiLSTM) over FactoredInputLSTMs."""

    def __init__(self, lstm: LowRankLSTM) -> None:  # noqa: super().__init__ wants an nn.LSTM
        nn.Module.__init__(self)
        if lstm.batch_first:
            raise InkpackError("low-rank ONNX export: only seq-first LSTMs")
        D, H = 2 if lstm.bidirectional else 1, lstm.hidden_size
        self.bidirectional = lstm.bidirectional
        size = [lstm.input_size] + [D * H] * (lstm.num_layers - 1)
        self.fwd = nn.ModuleList(FactoredInputLSTM(lstm.cells[k * D], size[k], H) for k in range(lstm.num_layers))
        self.bwd = nn.ModuleList(FactoredInputLSTM(lstm.cells[k * D + 1], size[k], H)
                                 for k in range(lstm.num_layers)) if D == 2 else nn.ModuleList()


def _wrapper(model: nn.Module) -> nn.Module:
    """The image exporter's wrapper with its masked BiLSTM swapped for the low-rank one."""
    from inkpack.deploy.export import ExportCNNDBLSTM  # imported here: deploy may import this module

    class _ExportLowRank(ExportCNNDBLSTM):
        def __init__(self, model: nn.Module) -> None:  # noqa: the parent refuses non-nn.LSTM layers
            nn.Module.__init__(self)
            self.model = model
            self.lstm = LowRankMaskedBiLSTM(model.lstm)

    return _ExportLowRank(model)


def export_lowrank_onnx(model: nn.Module, out: str | os.PathLike, int8: bool = False,
                        reduce_range: bool = True) -> Path:
    """Write ``out`` (ONNX; inputs ``images``, ``widths``; outputs ``log_probs``, ``lengths``, as
    :func:`inkpack.deploy.export.export_onnx`) for a CNN-DBLSTM with a LowRankLSTM; ``int8``
    quantizes it with ``onnx_quantize_int8``. No sidecar is written."""
    if not isinstance(getattr(model, "lstm", None), LowRankLSTM):
        raise InkpackError("low-rank ONNX export: the model's lstm is not a LowRankLSTM (use inkpack export)")
    out = Path(out)
    if out.suffix != ".onnx":
        raise InkpackError(f"{out}: the output file must end in .onnx")
    wrapper = _wrapper(model).eval()
    h, wf = model.height, model.width_factor
    widths = torch.tensor([12 * wf, 7 * wf + 3])  # mixed widths: trace the general path
    images = torch.rand(2, 1, h, int(widths.max()))
    images[1, :, :, int(widths[1]):] = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inkpack-lronnx-") as tmp:
        fp32 = Path(tmp) / "m.onnx" if int8 else out
        torch_export(wrapper, (images, widths), fp32, input_names=["images", "widths"],
                     output_names=["log_probs", "lengths"],
                     dynamic_axes={"images": {0: "batch", 3: "width"}, "widths": {0: "batch"},
                                   "log_probs": {0: "frames", 1: "batch"}, "lengths": {0: "batch"}})
        if int8:
            from inkpack.compress.quantize import onnx_quantize_int8

            onnx_quantize_int8(fp32, out, reduce_range=reduce_range)
    return out
