"""Resumable training of the online recognizers (seed 001 and IAM-OnDB lines).

* task ``char``: ``lstm-char`` on :class:`HanziSynthDataset` (GB2312 level-1 by default),
  cross-entropy, validated on the fixed-seed distorted set (top-1 / top-5). Class ``k`` is
  alphabet label ``k`` (``label_offset=1``), the convention of the deploy code. An optional
  class curriculum (``class_schedule``) trains the first epochs on a prefix of the character
  list with the softmax restricted to those classes: with all 3,755 classes from the first
  step, each class is seen too rarely and the model stayed at chance in a 20-minute run.
* task ``line``: ``online-blstm`` on an IAM-OnDB ``.npz`` with CTC, validated by greedy
  CER/WER on another ``.npz``.

The guarantees of :mod:`inkpack.train.loop`: the batch order of epoch ``e`` and the
augmentation of every sample are pure functions of ``(seed, e, index)``; the checkpoint
(atomic) holds model, optimizer, scheduler, RNG states, epoch, step and history, so the same
command after a kill continues with the very same next step. Batches are bucketed by
length (characters: each chunk of ``batch_size * bucket_factor`` synthetic samples is
sorted by its feature length; lines: by point count) to waste little on padding. Bad
samples (unreadable ink, empty features, text outside the alphabet, a label longer than
the CTC frames) are skipped and counted in ``skipped`` of the history.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inkpack.data.alphabet import Alphabet
from inkpack.errors import ConfigError, InkpackError
from inkpack.metrics import ErrorCounts
from inkpack.model_io import save_model
from inkpack.models import REGISTRY, build_model
from inkpack.train.checkpoint import (
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from inkpack.train.config import check_types, read_yaml_mapping, resolve_paths
from inkpack.train.ctc import needed_frames
from inkpack.train.ink_data import InkData, pad_features, prep_config
from inkpack.train.schedule import warmup_cosine

HANZI = "../shared/data/hanzi"
DEFAULT_ARCH = {"char": "lstm-char", "line": "online-blstm"}
PATH_FIELDS = ("train", "val", "out", "medians", "charset")  # relative to the YAML config's folder
STATE = ("epoch", "step_in_epoch", "global_step", "history", "best", "elapsed", "run_loss", "skipped")


@dataclass
class InkTrainConfig:
    task: str = "char"  # char | line
    out: str = "runs/ink"
    arch: str = ""  # default: lstm-char for char, online-blstm for line
    options: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)  # PreprocessConfig overrides
    # char data
    medians: str = f"{HANZI}/medians.json.gz"
    charset: str = f"{HANZI}/gb2312_level1.txt"
    num_chars: int = 0  # use only the first N characters (0 = all)
    per_class: int = 4  # training samples per class and epoch
    # class curriculum: epoch e trains on the first N characters, P samples each, for
    # [N, P] = class_schedule[e] (the last entry repeats); empty = all classes, per_class
    class_schedule: list = field(default_factory=list)
    val_per_class: int = 1
    synth: dict = field(default_factory=dict)  # SynthConfig overrides
    # line data
    train: str = "../shared/data/iamondb/train.npz"
    val: str | None = "../shared/data/iamondb/val.npz"
    limit: int | None = None
    val_limit: int | None = None
    # optimisation
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    epochs: int = 10
    warmup_steps: int = 200
    bucket_factor: int = 20
    augment: bool = True
    seed: int = 1234
    threads: int = 0
    time_limit: float = 0.0  # minutes of training (0 = none)
    max_steps: int = 0
    ckpt_every: int = 100
    val_every: int = 0  # steps between validations (0 = at epoch ends only)
    half: bool = False  # save the best model with fp16 weights
    fold_input_norm: bool = False  # init: fold feature standardisation into the first LSTM
    sortagrad: bool = False  # line task: epoch 0 goes from the shortest lines to the longest
    progress: bool = True

    @classmethod
    def from_yaml(cls, path: str, **overrides) -> "InkTrainConfig":
        """The config in ``path`` (its paths relative to it, as ``TrainConfig``'s), then
        ``overrides`` (not None); unknown keys and wrong types are one ``ConfigError`` naming the file."""
        data = read_yaml_mapping(path)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{path}: unknown config keys {sorted(map(str, unknown))}")
        resolve_paths(data, path, PATH_FIELDS)
        data.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**data)
        try:
            check_types(cfg)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return cfg


class InkTrainer(InkData):
    def __init__(self, cfg: InkTrainConfig) -> None:
        if cfg.task not in DEFAULT_ARCH:
            raise InkpackError(f"--task must be char or line, not {cfg.task!r}")
        cfg.arch = cfg.arch or DEFAULT_ARCH[cfg.task]
        kind = REGISTRY[cfg.arch].input_kind if cfg.arch in REGISTRY else None
        if kind != ("char" if cfg.task == "char" else "ink"):
            raise InkpackError(f"task {cfg.task}: architecture {cfg.arch!r} does not fit "
                               f"(use {DEFAULT_ARCH[cfg.task]} or another of its input kind)")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.pcfg = prep_config(cfg.task, cfg.preprocessing)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / "last.pt"
        self._chunk: tuple[int, int, list] | None = None  # (epoch, chunk index, batches)
        self._orders: dict[int, list[list[int]]] = {}

    # ------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        ckpt = load_checkpoint(self.ckpt_path)
        if ckpt is None and (self.out / "skipped.txt").exists():
            (self.out / "skipped.txt").unlink()
        self.skipped, self.val_skipped = 0, 0
        self.alphabet = Alphabet.from_dict(ckpt["alphabet"]) if ckpt else None
        self._load_char() if cfg.task == "char" else self._load_line()
        if not self.val_items and cfg.task == "char":
            raise InkpackError("char training: the validation set is empty")
        self.options = {**REGISTRY[cfg.arch].defaults, **cfg.options}
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.arch, self.alphabet.num_classes, **self.options)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = [sum(self._steps_in(e)) for e in range(cfg.epochs)]
        total = max(1, sum(steps))
        warm = min(cfg.warmup_steps, total // 4 + 1)
        self.sched = warmup_cosine(self.opt, warm, total)
        self.epoch, self.step_in_epoch, self.global_step, self.history = 0, 0, 0, []
        self.best, self.elapsed, self.run_loss = None, 0.0, (0.0, 0)
        if cfg.fold_input_norm and not ckpt:
            self._fold_input_norm()
        if ckpt:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            for k in STATE:
                setattr(self, k, ckpt[k])
            tqdm.write(f"resumed from {self.ckpt_path}: epoch {self.epoch + 1}, step {self.step_in_epoch}")

    @torch.no_grad()
    def _fold_input_norm(self, n: int = 200) -> None:
        """Scale the first LSTM's input weights so that it starts as if its inputs were standardised.

        Line features mix scales (x spans +-20 y-std units, dx/dy about 0.3, pen flags 0/1); at
        the default init the x column saturates the gates and CTC stays on its blank plateau.
        ``W' = W / std``, ``b' = b - W' mean`` keeps the architecture (and the deploy path) as is.
        """
        ds = self.train_ds
        feats = np.concatenate([self._item(ds, i, None, train=False)[0] for i in range(min(n, len(ds)))])
        mean, std = feats.mean(0), feats.std(0) + 1e-3
        lstm = getattr(self.model, "lstm", None) or self.model.lstm1
        reps = lstm.input_size // len(mean)  # frames stacked by subsampling
        m, sd = (torch.from_numpy(np.tile(v, reps)).float() for v in (mean, std))
        for sfx in ("_l0", "_l0_reverse") if lstm.bidirectional else ("_l0",):
            w, b = getattr(lstm, "weight_ih" + sfx), getattr(lstm, "bias_ih" + sfx)
            w /= sd
            b -= w @ m

    def save(self) -> None:
        atomic_save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                     "scheduler": self.sched.state_dict(), "rng": rng_state(),
                     "alphabet": self.alphabet.to_dict(), "config": asdict(self.cfg),
                     **{k: getattr(self, k) for k in STATE}}, self.ckpt_path)

    def model_config(self, metrics: dict | None = None) -> dict:
        cfg, char = self.cfg, self.cfg.task == "char"
        return {"arch": cfg.arch, "options": self.options, "alphabet": self.alphabet.to_dict(),
                "input_kind": REGISTRY[cfg.arch].input_kind, "preprocessing": asdict(self.pcfg),
                "classes": "class k = alphabet label k (0 unused)" if char else "CTC, blank 0",
                "trained_on": cfg.medians if char else cfg.train, "metrics": metrics or {}}

    # ------------------------------------------------------------ steps
    def loss(self, items: list, train: bool) -> tuple[torch.Tensor, object, object]:
        x, lengths = pad_features([it[0] for it in items])
        if self.cfg.task == "char":
            logits = self.model(x, lengths)
            y = torch.tensor([it[1] for it in items], dtype=torch.long)
            # under a class curriculum the softmax of a training step spans the active classes
            # only, so the output rows of classes still to come are left untouched
            active = logits[:, : len(self.train_ds.chars) + 1] if train else logits
            return F.cross_entropy(active, y), logits, None
        logits, out_len = self.model(x, lengths)
        tl = torch.tensor([len(it[1]) for it in items], dtype=torch.long)
        tg = torch.tensor([c for it in items for c in it[1]], dtype=torch.long)
        loss = F.ctc_loss(logits.log_softmax(-1), tg, out_len, tl, blank=0, reduction="sum",
                          zero_infinity=True)
        return loss / len(items), logits, out_len

    def _feasible(self, items: list) -> list:
        """Drop lines whose label needs more CTC frames than the model gives them."""
        if self.cfg.task == "char" or not items:
            return items
        frames = self.model.output_lengths(torch.tensor([len(it[0]) for it in items])).tolist()
        keep = [it for it, n in zip(items, frames) if needed_frames(it[1]) <= n]
        for _ in range(len(items) - len(keep)):
            self._skip("train line: label longer than the model's CTC frames")
        return keep

    def train_step(self, items: list) -> float:
        self.model.train()
        loss, _, _ = self.loss(items, True)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())

    @torch.no_grad()
    def validate(self, bs: int = 64) -> dict:
        from inkpack.decode.greedy import greedy_decode

        self.model.eval()
        order = sorted(range(len(self.val_items)), key=lambda i: len(self.val_items[i][0]))
        loss_sum, top1, top5, counts = 0.0, 0, 0, ErrorCounts()
        for s in range(0, len(order), bs):
            items = [self.val_items[i] for i in order[s : s + bs]]
            loss, logits, out_len = self.loss(items, False)
            loss_sum += float(loss) * len(items)
            if self.cfg.task == "char":
                y = torch.tensor([it[1] for it in items])
                top = logits.topk(min(5, logits.shape[1]), -1).indices
                top1 += int((top[:, 0] == y).sum())
                top5 += int((top == y[:, None]).any(1).sum())
            else:
                for labels, it in zip(greedy_decode(logits.log_softmax(-1), out_len), items):
                    counts.add(self.alphabet.decode(labels), it[2])
        n = max(1, len(self.val_items))
        if self.cfg.task == "char":
            return {"val_loss": loss_sum / n, "val_top1": top1 / n, "val_top5": top5 / n}
        return {"val_loss": loss_sum / n, "val_cer": counts.cer, "val_wer": counts.wer}

    # ------------------------------------------------------------ run
    def fit(self) -> dict:
        cfg = self.cfg
        start = time.time() - self.elapsed
        stop = "epochs"
        while self.epoch < cfg.epochs and stop == "epochs":
            n_steps = sum(self._steps_in(self.epoch))
            bar = tqdm(total=n_steps, initial=self.step_in_epoch, unit="batch", dynamic_ncols=True,
                       desc=f"{cfg.task} epoch {self.epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
            seen, t0 = 0, time.time()
            while self.step_in_epoch < n_steps:
                items = self._feasible(self._batch(self.epoch, self.step_in_epoch))
                if items:
                    loss = self.train_step(items)
                    s, k = self.run_loss
                    self.run_loss = (s + loss * len(items), k + len(items))
                    seen += len(items)
                    bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{seen / max(1e-9, time.time() - t0):.1f}")
                self.step_in_epoch += 1
                self.global_step += 1
                bar.update(1)
                self.elapsed = time.time() - start
                end_of_epoch = self.step_in_epoch >= n_steps
                if end_of_epoch:
                    self.epoch, self.step_in_epoch, self._chunk = self.epoch + 1, 0, None
                if cfg.max_steps and self.global_step >= cfg.max_steps:
                    stop = "max_steps"
                elif cfg.time_limit and self.elapsed >= cfg.time_limit * 60:
                    stop = "time_limit"
                if end_of_epoch or stop != "epochs" or (cfg.val_every and self.global_step % cfg.val_every == 0):
                    self._record(start)  # validates, saves the best model and the checkpoint
                elif self.global_step % cfg.ckpt_every == 0:
                    self.save()
                if end_of_epoch or stop != "epochs":
                    break
            bar.close()
        best = None if self.best is None else abs(self.best) if self.val_items else None
        return {"stop": stop, "best": best, "epochs": self.epoch, "steps": self.global_step,
                "skipped": self.skipped}

    def _record(self, start: float) -> None:
        s, k = self.run_loss
        prev = self.history[-1]["elapsed_s"] if self.history else 0.0
        frac = self.step_in_epoch / max(1, sum(self._steps_in(self.epoch))) if self.step_in_epoch else 0.0
        rec = {"epoch": round(self.epoch + frac, 3),
               "step": self.global_step, "train_loss": s / max(1, k), "lr": self.opt.param_groups[0]["lr"]}
        t0 = time.time()
        rec.update(self.validate() if self.val_items else {})
        rec.update(val_s=time.time() - t0, elapsed_s=time.time() - start, skipped=self.skipped,
                   val_skipped=self.val_skipped)
        rec["samples_per_s"] = k / max(1e-9, rec["elapsed_s"] - prev)
        self.history.append(rec)
        key = "val_top1" if self.cfg.task == "char" else "val_cer"
        # higher is better; without a validation set the newest model is kept
        score = (rec[key] if key == "val_top1" else -rec[key]) if key in rec else rec["step"]
        better = self.best is None or score > self.best
        if better:
            self.best = score
            keep = {k: rec[k] for k in ("val_top1", "val_top5", "val_cer", "val_wer", "epoch", "step") if k in rec}
            save_model(self.model, self.model_config(keep), self.out / "best", half=self.cfg.half)
        self.run_loss = (0.0, 0)
        self.elapsed = time.time() - start
        self.save()
        self._log()
        msg = f"step {rec['step']} (epoch {rec['epoch']}): loss {rec['train_loss']:.3f}"
        if key in rec:
            msg += f", {key} {100 * rec[key]:.2f}%"
        tqdm.write(msg + (" (best)" if better else ""))

    def _log(self) -> None:
        from inkpack.train.history import write_history

        write_history(self.history, self.out)
        from inkpack.train.plot import plot_ink_curves

        plot_ink_curves(self.history, self.out / "curves.png")


def fit_ink(cfg: InkTrainConfig) -> dict:
    trainer = InkTrainer(cfg)
    trainer.setup()
    return trainer.fit()
