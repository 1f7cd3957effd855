"""Dynamic int8 quantization of LSTM and Linear layers, in PyTorch and in ONNX Runtime.

Measured here (notes/compression.md): torch's quantize_dynamic is 2.8–3.1x faster and 3.98x
smaller on a BiLSTM+FC; ORT's DynamicQuantizeLSTM (from the legacy ONNX exporter) 4.5–4.9x.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from inkpack.compress.lowrank import LowRankLSTM, matches
from inkpack.errors import InkpackError

__all__ = ["onnx_quantize_int8", "quantize_int8"]


def quantize_int8(model: nn.Module, *, layers: tuple[type, ...] = (nn.LSTM, nn.Linear),
                  skip: Iterable[str] = (), keep_lowrank_recurrent_fp32: bool = True,
                  inplace: bool = False) -> nn.Module:
    """int8 weights, per-batch dynamic int8 activations (CPU inference only).

    The recurrent factors of a LowRankLSTM stay fp32 by default: int8 there means a dynamic
    quantize per time step and loses the batched fast path, which costs more than it saves.
    """
    skip = list(skip)
    keep = [f"{n}.cells.{i}.hh" for n, m in model.named_modules() if isinstance(m, LowRankLSTM)
            for i in range(len(m.cells))] if keep_lowrank_recurrent_fp32 else []
    spec = {n for n, m in model.named_modules()
            if n and type(m) in layers and not matches(n, skip) and not matches(n, keep)}
    if not spec:
        raise InkpackError("quantize_int8: the model has no layer of the requested kinds to quantize")
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecat.*")
        return torch.ao.quantization.quantize_dynamic(target, spec, dtype=torch.qint8, inplace=True)


def onnx_quantize_int8(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, *,
                       per_channel: bool = False) -> dict[str, int]:
    """int8 weights for an ONNX model's MatMul/LSTM (LSTM → DynamicQuantizeLSTM, which needs a
    graph from the legacy exporter, `torch.onnx.export(..., dynamo=False)`); returns sizes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(onnx_in)
    if not src.is_file():
        raise InkpackError(f"{src}: ONNX model not found")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs a "consider pre-processing" warning on the root logger
    try:
        quantize_dynamic(str(src), str(onnx_out), weight_type=QuantType.QInt8, per_channel=per_channel)
    except Exception as e:  # ORT raises bare exceptions for unreadable graphs
        raise InkpackError(f"{src}: ONNX int8 quantization failed ({type(e).__name__}: {e})") from None
    finally:
        root.setLevel(level)
    return {"bytes_in": src.stat().st_size, "bytes_out": Path(onnx_out).stat().st_size}
