"""Retraining for the compression recipes: batches and loss of one model kind (`Task`) and Adam
fine-tuning with hooks (`retrain`), which adaptive drop-weight (`drop_weights`) and k-means
sharing (`share_weights`) run under. torch is imported where it runs.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from inkpack.errors import InkpackError

if TYPE_CHECKING:  # torch is imported where it runs: `inkpack compress --help` stays light
    import torch
    from torch import nn

    from inkpack.compress.converge import StageRun

__all__ = ["Task", "drop_weights", "lr_factor", "retrain", "share_weights"]


class Task:
    """Batches and loss for one model kind: image lines (CTC) or isolated characters (CE)."""

    def __init__(self, cfg: dict, alphabet, data: str | None, batch_size: int = 16, seed: int = 0,
                 limit: int | None = None, split: str = "train", val_seed: int | None = None) -> None:
        """``split="val"``: characters come from the fixed validation stream, or with ``val_seed``
        from another validation stream (disjoint from it and from training: a stage's early
        stopping then never sees the samples its model is reported on)."""
        self.kind = cfg.get("input_kind", "image")
        self.alphabet, self.batch_size, self.seed = alphabet, batch_size, seed
        if self.kind == "image":
            from inkpack.data.lines import LineBatcher, load_lineset

            if not data:
                raise InkpackError("this recipe retrains: give --data TRAIN.tsv (or --steps 0)")
            height = int(cfg.get("preprocessing", {}).get("height", cfg.get("options", {}).get("height", 48)))
            self.lines = load_lineset(data, height, progress=False, limit=limit)
            if not len(self.lines):
                raise InkpackError(f"{data}: no usable lines")
            self.batcher = LineBatcher(self.lines, alphabet)
            self.n = len(self.lines)
        elif self.kind == "char":
            from inkpack.data.hanzi_synth import HanziSynthDataset, load_medians
            from inkpack.data.ink_preprocess import PreprocessConfig

            medians = data or cfg.get("trained_on")
            if not medians or not os.path.exists(medians):
                raise InkpackError(f"character model: give --data MEDIANS.json.gz (not found: {medians})")
            chars = "".join(alphabet.symbols)
            pcfg = PreprocessConfig(**cfg.get("preprocessing", {}))
            med = load_medians(medians)
            if split == "val" and val_seed is not None:
                self.ds = HanziSynthDataset(med, chars, 1, val_seed, "val", prep_cfg=pcfg)
            elif split == "val":
                self.ds = HanziSynthDataset.validation(med, chars, 1, prep_cfg=pcfg)
            else:
                self.ds = HanziSynthDataset(med, chars, 1, seed, "train", prep_cfg=pcfg)
            self.n = min(len(self.ds), limit) if limit else len(self.ds)
        else:
            raise InkpackError(f"compress/report: input kind {self.kind!r} is not supported")

    def batch(self, step: int):
        rng = np.random.default_rng((self.seed, step))
        idx = sorted(rng.choice(self.n, min(self.batch_size, self.n), replace=False).tolist())
        if self.kind == "image":
            self.batcher.epoch = step
            return self.batcher(sorted(idx, key=lambda i: self.lines.widths[i]))
        from inkpack.data.hanzi_synth import collate_chars

        self.ds.set_epoch(step)
        return collate_chars([self.ds[i] for i in idx])

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        if self.kind == "image":
            from inkpack.train.ctc import ctc_loss, run_model

            logits, lengths = run_model(model, batch)
            return ctc_loss(logits, lengths, batch)
        from torch import nn

        feats, lengths, targets = batch
        return nn.functional.cross_entropy(model(feats, lengths), targets)


    def accuracy(self, model: nn.Module, cfg: dict) -> dict:
        """CER/WER over the lines (images) or top-1 over the samples (characters)."""
        import torch

        if self.kind == "image":
            from inkpack.infer.recognizer import Recognizer
            from inkpack.metrics import ErrorCounts

            rec = Recognizer(model, cfg, self.alphabet)  # the one inference layer: what recognize/evaluate run
            ims = [torch.from_numpy(self.batcher.image(i))[None] for i in range(self.n)]
            counts = ErrorCounts()
            for hyp, ref in zip(rec.recognize_prepared(ims), self.lines.texts, strict=True):
                counts.add(hyp, ref)
            return {"cer": counts.cer, "wer": counts.wer, "lines": self.n}
        from inkpack.data.hanzi_synth import collate_chars

        correct = 0
        with torch.inference_mode():
            for s in range(0, self.n, 64):
                feats, lengths, targets = collate_chars([self.ds[i] for i in range(s, min(self.n, s + 64))])
                correct += int((model(feats, lengths).argmax(-1) == targets).sum())
        return {"top1": correct / self.n, "samples": self.n}

    def score(self, model: nn.Module, cfg: dict) -> float:
        """Higher is better: top-1 (characters) or 1 − CER (lines)."""
        acc = self.accuracy(model, cfg)
        return acc["top1"] if "top1" in acc else 1.0 - acc["cer"]


def lr_factor(step: int, steps: int, hold: int = 0) -> float:
    """Share of the base rate at ``step``: 1 for the first ``hold`` steps, then a cosine to 0."""
    if step < hold or steps <= hold:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - hold) / (steps - hold)))


def retrain(model: nn.Module, task: Task, steps: int, *, lr: float = 3e-4, params=None,
            after_backward: Callable[[], None] | None = None, after_step: Callable[[], None] | None = None,
            log: Callable[[str], None] | None = None, schedule: str = "cosine", offset: int = 0,
            hold: int = 0, run: StageRun | None = None, stage: str = "retrain") -> list[float]:
    """Adam fine-tuning with hooks for pruning masks and shared-weight gradients.

    ``schedule="cosine"`` decays the rate to zero over the steps: a constant rate from a fresh
    Adam state pulled the converged lstm-char from 98.4% to 96.7% top-1 in 400 steps at 3e-4
    (98.3% at 1e-4), which every later stage then had to win back. ``offset`` shifts the batch
    stream so that successive stages see different samples. ``hold`` keeps the full rate for
    that many steps first: adaptive drop-weight needs it while its sparsity rises (ADW to ~70% on
    lstm-char kept 92.2% top-1 holding 1e-3 over the rise, 47.4% with 3e-4 decaying throughout).
    ``run``: retrain to convergence instead (:class:`~inkpack.compress.converge.StageRun`, the
    stage checkpointed as ``stage``), ``steps`` and the schedule unused.
    """
    if run is not None:  # to convergence (``steps`` unused): the history is in run.results[stage]
        run(stage, model, task, lr=lr, params=params, after_backward=after_backward, after_step=after_step,
            offset=offset)
        return []
    if schedule not in ("cosine", "constant"):
        raise InkpackError(f"retrain: schedule must be cosine or constant, not {schedule!r}")
    if steps <= 0:
        return []
    import torch

    from inkpack.train.base import CLIP_NORM, optimizer_step, train_keep_norm

    params = list(params) if params is not None else list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: lr_factor(s, steps, hold)) if schedule == "cosine" else (lambda s: 1.0))

    def stepped() -> None:
        sched.step()
        if after_step:
            after_step()

    losses = []
    train_keep_norm(model)  # a trained model's BatchNorm statistics stay as trained
    for step in range(steps):
        loss = task.loss(model, task.batch(step + offset))
        optimizer_step(loss, opt, params, CLIP_NORM, after_backward=after_backward, after_step=stepped)
        losses.append(float(loss.detach()))
        if log and (step + 1) % max(1, steps // 5) == 0:
            log(f"  step {step + 1}/{steps} loss {statistics.fmean(losses[-max(1, steps // 5):]):.4g}")
    model.eval()
    return losses


def drop_weights(model: nn.Module, targets: dict[str, float] | float, task: Task | None, steps: int, *,
                 lr: float, every: int = 1, offset: int = 0, log: Callable[[str], None] | None = None,
                 run: StageRun | None = None):
    """Adaptive drop-weight: the sparsity rises to ``targets`` over the first 2/3 of ``steps`` at
    the full rate (``hold``), the last third recovers under a cosine; 0 steps prunes one shot.
    With ``run`` the recovery goes on to convergence (stage ``adw``; no best is kept during the
    rise). Returns the finished :class:`~inkpack.compress.prune.Pruner` (its masks and sparsity)."""
    from inkpack.compress.prune import Pruner

    rise = max(1, steps * 2 // 3)
    pruner = Pruner(model, targets, rise, every=every)
    if steps and run is not None:
        if log:
            log(f"adaptive drop-weight: the sparsity rising over {rise} steps, then retraining to convergence")
        run("adw", model, task, lr=lr, after_step=pruner.step, hooks=pruner, warm=rise, offset=offset)
    elif steps:
        if log:
            log(f"adaptive drop-weight: {steps} retraining steps, the sparsity rising over {rise}")
        retrain(model, task, steps, lr=lr, after_step=pruner.step, offset=offset, log=log, hold=rise)
    pruner.finish()
    return pruner


def share_weights(model: nn.Module, bits: int | dict[str, int], mode: str, task: Task | None, steps: int, *,
                  lr: float | None = None, offset: int = 0, log: Callable[[str], None] | None = None,
                  on_shared: Callable[[], None] | None = None, run: StageRun | None = None):
    """k-means sharing, then ``steps`` of retraining: ``latent`` full-precision weights behind the
    shared values (kmeans_train, default rate 1e-3) or the seed's ``centroids`` alone (1e-4).
    ``on_shared`` runs once the model computes with shared values, before any retraining.
    With ``run`` (and ``steps`` > 0) the retraining goes on to convergence (stage ``kmeans``).
    Returns the :class:`~inkpack.compress.kmeans.WeightSharing` that saves the compact file."""
    from inkpack.compress.kmeans import WeightSharing

    if mode not in ("latent", "centroids"):
        raise InkpackError(f"kmeans: training mode must be latent or centroids, not {mode!r}")
    if steps and mode == "latent":
        from inkpack.compress.kmeans_train import LatentSharing

        ls = LatentSharing(model, bits)
        if on_shared:
            on_shared()
        if log:
            log(f"k-means {bits} bits: {steps} steps of latent-weight training")
        params = ls.parameters() + ls.other_parameters()
        if run is not None:
            run("kmeans", model, task, lr=lr or 1e-3, params=params, after_backward=ls.after_backward,
                after_step=ls.after_step, hooks=ls, offset=offset)
        else:
            retrain(model, task, steps, lr=lr or 1e-3, params=params, after_backward=ls.after_backward,
                    after_step=ls.after_step, offset=offset, log=log)
        return ls.finish()
    ws = WeightSharing(model, bits)
    if on_shared:
        on_shared()
    if steps:
        if log:
            log(f"k-means {bits} bits: {steps} centroid fine-tuning steps")
        retrain(model, task, steps, lr=lr or 1e-4, params=ws.parameters() + ws.other_parameters(),
                after_backward=ws.sync_grads, after_step=ws.apply, offset=offset, log=log, run=run, stage="kmeans")
        ws.apply()  # the model computes with the (best) centroids
    return ws
