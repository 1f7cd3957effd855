"""Weight averaging and mixed precision for the trainers.

* :class:`WeightEMA`: an exponential moving average of a model's parameters *and* buffers
  (torch's ``AveragedModel`` with its EMA update), kept beside the trained model. When a run
  enables it (``ema: 0.999``), validation, the best-model file and early stopping use the
  averaged weights; the checkpoint stores both, so resume stays exact.
* :class:`Precision`: the arithmetic of the training step (``precision`` in a config): ``fp32``;
  ``fp16`` (CUDA: float16 autocast + gradient scaling); ``bf16`` (bfloat16 autocast, no scaling:
  bfloat16 has float32's range), on a CPU with native bfloat16 (AVX512-BF16 or AMX) 1.3-1.6x the
  lines per second for the CNN-BLSTMs here (``benchmarks/train_precision.py``); ``auto`` = fp16 on
  CUDA, fp32 on the CPU. Weights, optimizer state, the CTC loss and validation stay float32;
  the same step code runs everywhere.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from inkpack.errors import ConfigError
from inkpack.train.config import PRECISIONS


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"ema must be in (0, 1) (e.g. 0.999), or 0 to disable; not {decay!r}")
        self.decay = decay
        self.avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.avg.eval()

    @property
    def module(self) -> nn.Module:
        return self.avg.module

    def update(self, model: nn.Module) -> None:
        self.avg.update_parameters(model)

    def state_dict(self) -> dict:
        return self.avg.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.avg.load_state_dict(state)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN: AVX512-BF16 or AMX); elsewhere
    bfloat16 autocast is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(mode: str, device: torch.device, warn: bool = True) -> str:
    """``mode`` (one of :data:`PRECISIONS`) on ``device`` → ``fp32``, ``bf16`` or ``fp16``."""
    mode = (mode or "auto").lower()
    if mode not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {mode!r}")
    if mode == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs CUDA (float16 on the CPU is slow and needs loss "
                          "scaling): use bf16 or fp32 on the CPU")
    if mode == "bf16" and device.type == "cpu" and warn and not cpu_has_bf16():
        print("warning: precision bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX); "
              "it runs, but slower than fp32", file=sys.stderr)
    return mode


class Precision:
    """The training step's arithmetic on ``device``: see :func:`resolve_precision`. ``enabled``:
    autocast is on (bf16 or fp16); gradient scaling only for fp16."""

    def __init__(self, device: torch.device, mode: str = "auto") -> None:
        self.device_type = device.type
        self.mode = resolve_precision(mode, device)
        self.enabled = self.mode != "fp32"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.mode == "fp16")

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.mode == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer, params, clip: float,
             after_backward: Callable[[], None] | None = None) -> None:
        """backward, ``after_backward``, unscale, clip the gradient norm of ``params`` to ``clip``
        (0: no clip), step (skipped on inf/nan).

        ``after_backward`` changes the gradients before the clip (pruning masks, gradients moved
        to shared or latent weights). It runs before the unscale, so that gradients it moves onto
        the optimizer's parameters are unscaled too: with scaling on (CUDA) it sees the scaled
        gradients, which suits masks, sums and moves (linear changes)."""
        self.scaler.scale(loss).backward()
        if after_backward is not None:
            after_backward()
        self.scaler.unscale_(opt)
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler.is_enabled() and state:
            self.scaler.load_state_dict(state)
