"""What every recognizer trainer shares: optimiser, step, checkpoint, resume, loop, best model, logs.

A trainer (:class:`inkpack.train.loop.Trainer` for offline lines,
:class:`inkpack.train.ink_train.InkTrainer` for ink lines and characters) builds its data,
model and ``cfg`` and fills in the hooks:

* ``begin_epoch()``: the number of steps of ``self.epoch`` (and whatever it needs to produce them);
* ``run_step()``: train on the batch of ``(self.epoch, self.step_in_epoch)`` with :meth:`train_step`,
  giving ``(loss, examples)``, or None when that batch had nothing to learn from;
* ``step_loss(batch, global_count)``: the loss of a batch and the objective to differentiate;
* ``make_record(start)``: one history record (validation included), ``better(rec)``: whether it
  is the best so far (updating the best score), ``describe(rec, better)``: its log line;
* ``model_config(metrics)``: the model file's config; ``plot(history, path)``: the curves.

The loop (:meth:`TrainerBase.fit`) takes steps until ``cfg.epochs``, ``cfg.max_steps`` or
``cfg.time_limit`` (minutes), records at every epoch's end (and every ``cfg.val_every`` steps
when the config has it), writes the checkpoint every ``cfg.ckpt_every`` steps and at a stop,
keeps the best model as ``best`` and rewrites ``history.json``/``.csv`` and ``curves.png``.
``RECORD_ON_STOP``: whether a stop (max steps, time limit) also records (the ink trainer), or only
checkpoints (the line trainer, whose epoch records are whole epochs; a stop on an epoch's last
step leaves that epoch's end to the resumed run).

The checkpoint holds model, optimizer, scheduler, RNG states, alphabet, config, the EMA and
gradient-scaler states when enabled, and the trainer's ``STATE`` (checkpoint key → attribute):
the same keys as the trainers wrote before this base existed, so their checkpoints resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from inkpack.errors import ModelFileError
from inkpack.models.io import save_model
from inkpack.train.checkpoint import atomic_save, rng_state, set_rng_state
from inkpack.train.ema import Precision
from inkpack.train.schedule import warmup_cosine

CLIP_NORM = 5.0  # gradient-norm clip of every step (DDP: of the averaged gradient)
_FP32 = Precision(torch.device("cpu"))  # no autocast, no scaling


def train_keep_norm(model: nn.Module) -> nn.Module:
    """Train mode with every BatchNorm left in eval mode: fine-tuning a trained model (compression
    stages, CTC fine-tuning) keeps its normalization statistics. Train-mode statistics of a
    few small padded batches are not the ones the model was trained to: 60 such forward passes,
    with no weight change, moved the shipped Hooker model from 23.5% to 25.6% val CER."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, params, clip: float,
                   precision: Precision | None = None, after_backward: Callable[[], None] | None = None,
                   after_step: Callable[[], None] | None = None) -> None:
    """The training step every trainer shares: clear the gradients, backward, ``after_backward``
    (gradient changes: masks, shared weights), clip the gradient norm of ``params`` to ``clip``
    (0: no clip), step, then ``after_step`` (schedule, weight average, re-applied masks).
    ``precision``: the run's :class:`~inkpack.train.ema.Precision` (None: plain fp32)."""
    opt.zero_grad(set_to_none=True)
    (precision or _FP32).step(loss, opt, params, clip, after_backward)
    if after_step is not None:
        after_step()


class TrainerBase:
    STATE: dict[str, str] = {}  # checkpoint key -> attribute (the run's position and scores)
    STATE_DEFAULTS: dict[str, object] = {}  # keys older checkpoints may lack
    RECORD_ON_STOP = True
    RATE = "samples_s"  # the progress bar's throughput label
    ema = None  # a WeightEMA when the run averages weights
    is_main = True  # rank 0 (or the only process): writes logs, best model and messages

    # ------------------------------------------------------------ set-up
    def _init_out(self, cfg) -> None:
        """Threads, the output folder and the checkpoint path."""
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / "last.pt"

    def _init_optim(self, total_steps: int) -> None:
        """AdamW and the warm-up + cosine schedule over ``total_steps``; the run starts at step 0."""
        cfg = self.cfg
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = max(1, total_steps)
        self.sched = warmup_cosine(self.opt, min(cfg.warmup_steps, total // 4 + 1), total)
        self.epoch, self.step_in_epoch, self.global_step, self.history = 0, 0, 0, []
        self.elapsed, self.run_loss = 0.0, (0.0, 0)
        if not hasattr(self, "precision"):
            self.precision = Precision(torch.device("cpu"))

    # ------------------------------------------------------------ checkpoint
    def checkpoint(self) -> dict:
        ckpt = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "rng": rng_state(),
                **{key: getattr(self, attr) for key, attr in self.STATE.items()},
                "alphabet": self.alphabet.to_dict(), "config": asdict(self.cfg)}
        if self.ema is not None:
            ckpt["ema"] = self.ema.state_dict()
        if self.precision.enabled:
            ckpt["amp"] = self.precision.state_dict()
        return ckpt

    def save(self) -> None:
        atomic_save(self.checkpoint(), self.ckpt_path)

    def restore(self, ckpt: dict) -> None:
        """Weights, EMA, scaler, optimizer, schedule, position and RNG from a checkpoint."""
        try:
            self.model.load_state_dict(ckpt["model"])
            if self.ema is not None and ckpt.get("ema"):  # else it starts from the loaded weights
                self.ema.load_state_dict(ckpt["ema"])
            self.precision.load_state_dict(ckpt.get("amp"))
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            for key, attr in self.STATE.items():
                setattr(self, attr, ckpt[key] if key in ckpt or key not in self.STATE_DEFAULTS
                        else self.STATE_DEFAULTS[key])
        except (RuntimeError, KeyError, ValueError) as e:
            raise ModelFileError(f"{self.ckpt_path}: checkpoint does not fit this configuration "
                                 f"({str(e).splitlines()[0]}); delete or move it to start fresh") from None
        self.restore_rng(ckpt)

    def restore_rng(self, ckpt: dict) -> None:
        set_rng_state(ckpt["rng"])

    def _said_resumed(self) -> None:
        if self.is_main:
            tqdm.write(f"resumed from {self.ckpt_path}: epoch {self.epoch + 1}, step {self.step_in_epoch}")

    # ------------------------------------------------------------ steps
    def step_loss(self, batch, global_count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def train_step(self, batch, global_count: int | None = None) -> float:
        """One optimiser step; ``global_count`` = examples of the step over all ranks (DDP)."""
        self.model.train()
        with self.precision.autocast():
            loss, objective = self.step_loss(batch, global_count)
        optimizer_step(objective, self.opt, self.model.parameters(), CLIP_NORM, self.precision,
                       after_step=self.after_step)
        return float(loss.detach())

    def after_step(self) -> None:
        """After each optimiser step: the schedule, then the weight average."""
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.model)

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and shipped: the weight average when enabled, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def agree(self, out: tuple[float, int] | None, timed_out: bool) -> tuple[float | None, int, bool]:
        """A step's loss, examples and stop flag as all processes agree on them (one process: as is)."""
        return (*out, timed_out) if out else (None, 0, timed_out)

    def postfix(self, loss: float, rate: float) -> dict:
        return {"loss": f"{loss:.3f}", self.RATE: f"{rate:.1f}"}

    def early_stop(self) -> bool:
        return False

    def before_fit(self, start: float) -> None:
        pass

    # ------------------------------------------------------------ run
    def fit(self) -> dict:
        cfg = self.cfg
        start = time.time() - self.elapsed
        stop = "epochs"
        self.before_fit(start)
        while self.epoch < cfg.epochs and stop == "epochs":
            n_steps = self.begin_epoch()
            self.epoch_seen, self.epoch_t0 = 0, time.time()
            if self.step_in_epoch >= n_steps:  # stopped on the epoch's last step: its end comes first
                self._next_epoch(start)
                stop = "early_stopping" if self.early_stop() else stop
                continue
            bar = tqdm(total=n_steps, initial=self.step_in_epoch, unit="batch", dynamic_ncols=True,
                       desc=self.bar_desc(), disable=not (cfg.progress and self.is_main))
            while self.step_in_epoch < n_steps:
                out = self.run_step()
                self.elapsed = time.time() - start
                loss, n, timed_out = self.agree(out, bool(cfg.time_limit and self.elapsed >= cfg.time_limit * 60))
                if loss is not None:
                    s, k = self.run_loss
                    self.run_loss = (s + loss * n, k + n)
                    self.epoch_seen += n
                    bar.set_postfix(self.postfix(loss, self.epoch_seen / max(1e-9, time.time() - self.epoch_t0)))
                self.step_in_epoch += 1
                self.global_step += 1
                bar.update(1)
                if cfg.max_steps and self.global_step >= cfg.max_steps:
                    stop = "max_steps"
                elif timed_out:
                    stop = "time_limit"
                ends = self.step_in_epoch >= n_steps and (stop == "epochs" or self.RECORD_ON_STOP)
                every = getattr(cfg, "val_every", 0)
                if ends:
                    self._next_epoch(start)
                elif (stop != "epochs" and self.RECORD_ON_STOP) or (every and self.global_step % every == 0):
                    self.record(start)
                elif stop != "epochs" or self.global_step % cfg.ckpt_every == 0:
                    self.save()
                if ends or stop != "epochs":
                    break
            bar.close()
            if stop == "epochs" and self.early_stop():
                stop = "early_stopping"
        return self.result(stop)

    def _next_epoch(self, start: float) -> None:
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.record(start)

    def record(self, start: float) -> None:
        """Validate and log: history, best model, checkpoint, history files, curves, one line."""
        rec = self.make_record(start)
        self.history.append(rec)
        better = self.better(rec)
        if better and self.is_main:
            save_model(self.eval_model, self.model_config(self.best_metrics(rec)), self.out / "best",
                       half=getattr(self.cfg, "half", False))
        self.run_loss = (0.0, 0)
        self.elapsed = time.time() - start
        self.save()
        if not self.is_main:
            return
        self.write_logs()
        tqdm.write(self.describe(rec, better))

    def best_metrics(self, rec: dict) -> dict:
        keys = ("val_top1", "val_top5", "val_cer", "val_wer", "epoch", "step")
        return {k: rec[k] for k in keys if k in rec}

    def write_logs(self) -> None:
        from inkpack.train.history import write_history

        write_history(self.history, self.out)
        self.plot(self.history, self.out / "curves.png")
