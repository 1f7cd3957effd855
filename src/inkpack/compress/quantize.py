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

from inkpack.compress.layers import matches
from inkpack.compress.factored import LowRankLSTM
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


# ONNX ops whose weights become int8 by default. Convolutions stay fp32: ORT's ConvInteger is
# slower than its fp32 Conv on CPU.
ONNX_INT8_OPS = ("LSTM", "MatMul", "Gemm")


def onnx_quantize_int8(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, *,
                       op_types: Iterable[str] | None = ONNX_INT8_OPS, per_channel: bool = False,
                       reduce_range: bool = True) -> dict[str, int]:
    """int8 weights for an ONNX model's MatMul/Gemm/LSTM (LSTM → DynamicQuantizeLSTM, which needs
    a graph from the legacy exporter, `torch.onnx.export(..., dynamo=False)`); returns sizes.

    ``reduce_range`` stores weights in 7 bits: ORT's u8s8 kernels on x86 CPUs without VNNI
    (AVX2, AVX-512 without VNNI) add pairs of u8·s8 products in int16 and saturate with 8-bit
    weights (ORT's quantization docs). The file runs on whatever CPU the user has, so it is on
    by default; measured on the Hooker val set it costs nothing (README, Deployment).
    ``op_types=None`` quantizes every op ORT can.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(onnx_in)
    if not src.is_file():
        raise InkpackError(f"{src}: ONNX model not found")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs a "consider pre-processing" warning on the root logger
    try:
        quantize_dynamic(str(src), str(onnx_out), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range,
                         op_types_to_quantize=list(op_types) if op_types is not None else None)
    except Exception as e:  # ORT raises bare exceptions for unreadable graphs
        raise InkpackError(f"{src}: ONNX int8 quantization failed ({type(e).__name__}: {e})") from None
    finally:
        root.setLevel(level)
    return {"bytes_in": src.stat().st_size, "bytes_out": Path(onnx_out).stat().st_size}
