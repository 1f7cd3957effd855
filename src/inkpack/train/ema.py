"""Weight averaging and mixed precision for the trainers.

* :class:`WeightEMA`: an exponential moving average of a model's parameters *and* buffers
  (torch's ``AveragedModel`` with its EMA update), kept beside the trained model. When a run
  enables it (``ema: 0.999``), validation, the best-model file and early stopping use the
  averaged weights; the checkpoint stores both, so resume stays exact.
* :class:`Precision`: automatic mixed precision on CUDA (float16 autocast + gradient scaling);
  on the CPU a no-op, so the same step code runs everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from inkpack.errors import ConfigError


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


class Precision:
    """float16 autocast + GradScaler when ``device`` is CUDA; plain fp32 otherwise."""

    def __init__(self, device: torch.device) -> None:
        self.enabled = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.float16)

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
        return self.scaler.state_dict() if self.enabled else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.enabled and state:
            self.scaler.load_state_dict(state)
