"""Retraining a compression stage to convergence, resumably (seed 001 retrains after every stage
until the accuracy stops improving; a fixed step budget stops where the time runs out).

:func:`retrain_until` runs the Adam steps of :func:`inkpack.compress.retrain.retrain` in rounds of
``every`` steps. After each round it scores the model (higher is better: top-1, or 1 − CER, on
samples the stage does not train on), keeps the best weights, multiplies the rate by ``decay``
after ``plateau`` rounds without a gain and ends the stage after ``patience`` rounds without one
(or at ``max_steps``). The first ``warm`` steps (an adaptive drop-weight's rising sparsity) hold
the rate and keep no best: the model they leave is not the one being compressed yet.

After every round the whole stage goes to an atomic checkpoint (``train.checkpoint``, loaded
without running code): every trained tensor, the model's buffers, the optimizer, the rate, the
best weights so far, the counters and the state of the stage's hooks (pruning masks, k-means
centroids). Called again with the same checkpoint path, a killed stage resumes from its last
round, bit for bit; a finished one returns at once with its best weights. The model always
leaves with its best weights (and the hooks with their state at that round).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from inkpack.errors import InkpackError

if TYPE_CHECKING:  # torch is imported where it runs: `inkpack compress --help` stays light
    from torch import nn

__all__ = ["Convergence", "StageRun", "StageState", "retrain_until"]

KEYS = ("stage", "step", "lr", "best", "bad", "done", "history", "trained", "buffers", "optimizer", "hooks", "rng",
        "best_trained", "best_buffers", "best_hooks")


class Batches(Protocol):
    """A model kind's batches and loss (``inkpack.compress.retrain.Task``, or a distillation
    stage of ``inkpack.compress.distill``, which also has ``prepare(model)``: the train/eval modes
    of its modules during steps; without it, train mode with BatchNorm statistics kept)."""

    def batch(self, step: int): ...

    def loss(self, model, batch): ...


class StageState(Protocol):
    """What a stage's hook keeps besides trained tensors (``Pruner``, ``LatentSharing``)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class Convergence:
    """When a stage has converged: scored every ``every`` steps, ended after ``patience`` scores
    without a gain above ``min_delta`` (the rate times ``decay`` after every ``plateau`` of them),
    or at ``max_steps``."""

    every: int = 500
    patience: int = 6
    plateau: int = 2
    decay: float = 0.5
    max_steps: int = 100_000
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.every < 1 or self.patience < 1 or self.plateau < 1 or self.max_steps < 1:
            raise InkpackError("--converge: every, patience, plateau and max steps must be ≥ 1")
        if not 0.0 < self.decay <= 1.0:
            raise InkpackError(f"--converge: the rate decay must be in (0, 1], not {self.decay}")

    @classmethod
    def parse(cls, text: str) -> Convergence:
        """``EVERY:PATIENCE[:MAX_STEPS]``, e.g. ``500:6`` or ``500:6:40000``."""
        parts = str(text).split(":")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            nums = []
        if len(nums) not in (2, 3):
            raise InkpackError(f"--converge: expected EVERY:PATIENCE[:MAX_STEPS] (e.g. 500:6), got {text!r}")
        return cls(every=nums[0], patience=nums[1], **({"max_steps": nums[2]} if len(nums) == 3 else {}))


def _snapshot(model: nn.Module, params: list, hooks: StageState | None) -> tuple[list, dict, dict | None]:
    trained = [p.detach().clone() for p in params]
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    return trained, buffers, (hooks.state_dict() if hooks is not None else None)


def _restore(model: nn.Module, params: list, hooks: StageState | None, trained: list, buffers: dict,
             hook_state: dict | None) -> None:
    import torch

    with torch.no_grad():
        for p, v in zip(params, trained, strict=True):
            p.copy_(v)
        named = dict(model.named_buffers())
        for k, v in buffers.items():
            named[k].copy_(v)
    if hooks is not None and hook_state is not None:
        hooks.load_state_dict(hook_state)


def retrain_until(model: nn.Module, task: Batches, score: Callable[[nn.Module], float], conv: Convergence, *,
                  lr: float, params=None, after_backward: Callable[[], None] | None = None,
                  after_step: Callable[[], None] | None = None, hooks: StageState | None = None,
                  warm: int = 0, checkpoint: str | Path | None = None, stage: str = "retrain", offset: int = 0,
                  log: Callable[[str], None] | None = None) -> dict:
    """Retrain ``params`` (default: all of ``model``'s) until ``score`` stops improving; see the
    module docstring. Returns ``{"best", "steps", "history", "stopped"}`` where ``history`` lists
    ``(step, score, rate)`` per round and ``stopped`` says why the stage ended."""
    import torch

    from inkpack.train.base import CLIP_NORM, optimizer_step, train_keep_norm
    from inkpack.train.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state

    params = list(params) if params is not None else list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    st = {"stage": stage, "step": 0, "lr": float(lr), "best": -math.inf, "bad": 0, "done": "", "history": []}
    best = None
    ck = load_checkpoint(checkpoint, required=KEYS) if checkpoint else None
    if ck is not None:
        if ck["stage"] != stage or len(ck["trained"]) != len(params):
            raise InkpackError(f"{checkpoint}: a checkpoint of another stage ({ck['stage']!r}, "
                               f"{len(ck['trained'])} tensors); delete it or give the stage another folder")
        _restore(model, params, hooks, ck["trained"], ck["buffers"], ck["hooks"])
        opt.load_state_dict(ck["optimizer"])
        set_rng_state(ck["rng"])  # dropout draws continue where they were
        st.update({k: ck[k] for k in ("step", "lr", "best", "bad", "done", "history")})
        st["history"] = [tuple(h) for h in st["history"]]
        if ck["best_trained"] is not None:
            best = (ck["best_trained"], ck["best_buffers"], ck["best_hooks"])
        if log:
            log(f"{stage}: resumed at step {st['step']} (best {st['best']:.4f})" + (" - finished" if st["done"] else ""))

    def save() -> None:
        if checkpoint:
            trained, buffers, hook_state = _snapshot(model, params, hooks)
            b = best or (None, None, None)
            atomic_save({**st, "trained": trained, "buffers": buffers, "optimizer": opt.state_dict(),
                         "hooks": hook_state, "rng": rng_state(), "best_trained": b[0], "best_buffers": b[1], "best_hooks": b[2]},
                        checkpoint)

    prepare = getattr(task, "prepare", None) or train_keep_norm  # default: BatchNorm statistics stay as trained
    t0 = time.perf_counter()
    while not st["done"]:
        for group in opt.param_groups:
            group["lr"] = st["lr"]
        prepare(model)
        losses = []
        for _ in range(min(conv.every, conv.max_steps - st["step"])):
            loss = task.loss(model, task.batch(st["step"] + offset))
            optimizer_step(loss, opt, params, CLIP_NORM, after_backward=after_backward, after_step=after_step)
            losses.append(float(loss.detach()))
            st["step"] += 1
        model.eval()
        s = float(score(model))
        st["history"].append((st["step"], s, st["lr"]))
        if st["step"] <= warm:
            note = "warm"
        elif s > st["best"] + conv.min_delta:
            st["best"], st["bad"], note = s, 0, "best"
            best = _snapshot(model, params, hooks)
        else:
            st["bad"] += 1
            note = f"no gain {st['bad']}/{conv.patience}"
            if st["bad"] % conv.plateau == 0:
                st["lr"] *= conv.decay
        if st["bad"] >= conv.patience:
            st["done"] = "patience"
        elif st["step"] >= conv.max_steps:
            st["done"] = "max_steps"
        if log:
            mean = sum(losses) / max(1, len(losses))
            log(f"{stage}: step {st['step']} loss {mean:.4g} score {s:.4f} ({note}; rate {st['lr']:.3g}, "
                f"{time.perf_counter() - t0:.0f} s)")
        save()
    if best is not None:
        _restore(model, params, hooks, *best)
    model.eval()
    return {"best": st["best"], "steps": st["step"], "history": list(st["history"]), "stopped": st["done"]}


@dataclass
class StageRun:
    """The retraining stages of one compression run, each to convergence: the rule, the score,
    the folder of the stages' checkpoints (``STAGE.pt``; None: none written) and, after each
    stage, what :func:`retrain_until` returned (``results[stage]``)."""

    conv: Convergence
    score: Callable[[nn.Module], float]
    folder: Path | None = None
    log: Callable[[str], None] | None = None
    results: dict = field(default_factory=dict)
    selection: object = None  # what ``score`` reads (a Task), for a caller that re-binds the score

    def __call__(self, stage: str, model: nn.Module, task: Batches, **kw) -> dict:
        ck = Path(self.folder) / f"{stage}.pt" if self.folder is not None else None
        self.results[stage] = out = retrain_until(model, task, self.score, self.conv, checkpoint=ck, stage=stage,
                                                  log=self.log, **kw)
        return out
