"""Resumable training of the online recognizers (seed 001 and IAM-OnDB lines).

* task ``char``: ``lstm-char`` on :class:`HanziSynthDataset` (GB2312 level-1 by default),
  cross-entropy, validated on the fixed-seed distorted set (top-1 / top-5). Class ``k`` is
  alphabet label ``k`` (``label_offset=1``), the convention of the deploy code. An optional
  class curriculum (``class_schedule``) trains the first epochs on a prefix of the character
  list with the softmax restricted to those classes: with all 3,755 classes from the first
  step, each class is seen too rarely and the model stayed at chance in a 20-minute run.
* task ``line``: ``online-blstm`` on an IAM-OnDB ``.npz`` with CTC, validated by greedy
  CER/WER on another ``.npz``.
* input features (``preprocessing.features``): ``points`` (6 per point) or ``bezier`` (10 per
  fitted cubic Bézier curve, :mod:`inkpack.data.ink_bezier`); the model's ``in_features`` follows
  and the choice is stored with the model's preprocessing, which inference reads.
* fine-tuning (``init_from``, either task): a fresh run starts from a trained model's weights,
  architecture, options and preprocessing (``arch``, ``options`` and ``preprocessing`` of the
  config override them); the alphabet is the model's, resized for the data (``init_resize``:
  union adds the data's new characters, whose output rows start fresh while the old rows are
  copied, so the old characters' outputs are unchanged; new; fail). Such a run validates once
  before its first step (``step`` 0 of the history): the source model's score on the run's
  validation data. Character data from ``.pot`` files: ``train`` (see
  :mod:`inkpack.train.ink_data`).

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
from inkpack.models import REGISTRY, build_model
from inkpack.train.base import TrainerBase
from inkpack.train.checkpoint import load_checkpoint
from inkpack.train.config import check_types, read_yaml_mapping, resolve_paths
from inkpack.train.ctc import needed_frames
from inkpack.train.ema import Precision
from inkpack.train.ink_data import InkData, pad_features, prep_config
from inkpack.train.ink_options import check_combinations, check_init_kind, input_width

HANZI = "../shared/data/hanzi"
DEFAULT_ARCH = {"char": "lstm-char", "line": "online-blstm"}
PATH_FIELDS = ("train", "val", "out", "medians", "charset", "init_from")  # relative to the YAML config's folder
LINE_DATA = ("../shared/data/iamondb/train.npz", "../shared/data/iamondb/val.npz")  # line task defaults
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
    # validations beside the synthetic one: writer (held-out writer styles), order (perturbed
    # stroke order / direction, rates ``val_perturb`` over PerturbConfig's defaults)
    extra_val: list[str] = field(default_factory=list)
    val_perturb: dict = field(default_factory=dict)
    order_augment: dict = field(default_factory=dict)  # training: PerturbConfig rates (empty = off)
    # data: line task .npz (default: IAM-OnDB's, LINE_DATA); char task: empty = synthetic, or
    # .pot characters (a file or a folder); val: empty = the task's default, null = none
    train: str = ""
    val: str | None = ""
    # fine-tuning: a trained model to start from (fresh runs), the tensor-name prefixes to take
    # (default all), and what to do with characters it lacks (union | new | fail)
    init_from: str | None = None
    init_layers: list[str] | None = None
    init_resize: str = "union"
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
    precision: str = "auto"  # training step arithmetic: auto (fp32 here) | fp32 | bf16 (see train.ema)
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


class InkTrainer(InkData, TrainerBase):
    """The ink trainer on :class:`~inkpack.train.base.TrainerBase` (its loop, step, checkpoint)."""

    STATE = {k: k for k in STATE}

    def __init__(self, cfg: InkTrainConfig) -> None:
        if cfg.task not in DEFAULT_ARCH:
            raise InkpackError(f"--task must be char or line, not {cfg.task!r}")
        check_combinations(cfg)
        if cfg.task == "line":
            cfg.train = cfg.train or LINE_DATA[0]
            cfg.val = LINE_DATA[1] if cfg.val == "" else cfg.val
        self.init = None
        if cfg.init_from:
            from inkpack.train.warm_start import read_init

            self.init = read_init(cfg.init_from, cfg.init_layers, cfg.init_resize)
            check_init_kind(cfg, self.init.config)
        src = self.init.config if self.init else {}
        cfg.arch = cfg.arch or src.get("arch") or DEFAULT_ARCH[cfg.task]
        kind = REGISTRY[cfg.arch].input_kind if cfg.arch in REGISTRY else None
        if kind != ("char" if cfg.task == "char" else "ink"):
            raise InkpackError(f"task {cfg.task}: architecture {cfg.arch!r} does not fit "
                               f"(use {DEFAULT_ARCH[cfg.task]} or another of its input kind)")
        # a warm start keeps its model's options (same architecture) and preprocessing
        self.src_options = dict(src.get("options") or {}) if src.get("arch") == cfg.arch else {}
        self.cfg = cfg
        self.pcfg = prep_config(cfg.task, cfg.preprocessing, src.get("preprocessing") if src else None)
        self._init_out(cfg)
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
        if ckpt:
            self.init = None  # a resumed run already holds the warm-started weights
        self._load_char() if cfg.task == "char" else self._load_line()
        if not self.val_items and cfg.task == "char":
            raise InkpackError("char training: the validation set is empty")
        self.options = {**REGISTRY[cfg.arch].defaults, **self.src_options, **cfg.options,
                        "in_features": input_width(cfg, self.pcfg)}
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.arch, self.alphabet.num_classes, **self.options)
        self.precision = Precision(torch.device("cpu"), cfg.precision)
        self._init_optim(sum(sum(self._steps_in(e)) for e in range(cfg.epochs)))
        self.best = None
        if cfg.fold_input_norm and not ckpt and self.init is None:
            self._fold_input_norm()
        if self.init is not None:
            self._say(self.init.apply(self.model))
        if ckpt:
            self.restore(ckpt)
            self._said_resumed()

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

    def _say(self, msg: str) -> None:
        if self.cfg.progress:
            tqdm.write(msg)

    def model_config(self, metrics: dict | None = None) -> dict:
        cfg, char = self.cfg, self.cfg.task == "char"
        return {"arch": cfg.arch, "options": self.options, "alphabet": self.alphabet.to_dict(),
                "input_kind": REGISTRY[cfg.arch].input_kind, "preprocessing": asdict(self.pcfg),
                "classes": "class k = alphabet label k (0 unused)" if char else "CTC, blank 0",
                "trained_on": (cfg.train or cfg.medians) if char else cfg.train, "metrics": metrics or {}}

    # ------------------------------------------------------------ steps
    def loss(self, items: list, train: bool) -> tuple[torch.Tensor, object, object]:
        x, lengths = pad_features([it[0] for it in items])
        if self.cfg.task == "char":
            logits = self.model(x, lengths)
            y = torch.tensor([it[1] for it in items], dtype=torch.long)
            # under a class curriculum the softmax of a training step spans the active classes
            # only, so the output rows of classes still to come are left untouched
            active = logits[:, : self._active_classes()] if train else logits
            return F.cross_entropy(active.float(), y), logits, None  # float: under bf16 autocast too
        logits, out_len = self.model(x, lengths)
        tl = torch.tensor([len(it[1]) for it in items], dtype=torch.long)
        tg = torch.tensor([c for it in items for c in it[1]], dtype=torch.long)
        loss = F.ctc_loss(logits.float().log_softmax(-1), tg, out_len, tl, blank=0, reduction="sum",
                          zero_infinity=True)
        return loss / len(items), logits, out_len

    def _active_classes(self) -> int:
        """Outputs of a training step: the curriculum's prefix of the alphabet, else all."""
        chars = self.train_ds.chars
        if getattr(self, "_prefix", (None,))[0] != chars:
            syms = self.alphabet.symbols
            self._prefix = (chars, len(chars) + 1 if syms[: len(chars)] == list(chars) else len(syms) + 1)
        return self._prefix[1]

    def _feasible(self, items: list) -> list:
        """Drop lines whose label needs more CTC frames than the model gives them."""
        if self.cfg.task == "char" or not items:
            return items
        frames = self.model.output_lengths(torch.tensor([len(it[0]) for it in items])).tolist()
        keep = [it for it, n in zip(items, frames) if needed_frames(it[1]) <= n]
        for _ in range(len(items) - len(keep)):
            self._skip("train line: label longer than the model's CTC frames")
        return keep

    def step_loss(self, items: list, global_count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        loss = self.loss(items, True)[0]
        return loss, loss

    @torch.no_grad()
    def validate(self, bs: int = 64) -> dict:
        """The validation figures; character runs add ``val_<name>_top1/top5`` per extra set."""
        out = self._validate(self.val_items, bs)
        for name, items in getattr(self, "extra_val_items", {}).items():
            res = self._validate(items, bs)
            out.update({f"val_{name}_top1": res["val_top1"], f"val_{name}_top5": res["val_top5"]})
        return out

    @torch.no_grad()
    def _validate(self, val_items: list, bs: int) -> dict:
        from inkpack.decode.greedy import greedy_decode

        self.model.eval()
        order = sorted(range(len(val_items)), key=lambda i: len(val_items[i][0]))
        loss_sum, top1, top5, counts = 0.0, 0, 0, ErrorCounts()
        for s in range(0, len(order), bs):
            items = [val_items[i] for i in order[s : s + bs]]
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
        n = max(1, len(val_items))
        if self.cfg.task == "char":
            return {"val_loss": loss_sum / n, "val_top1": top1 / n, "val_top5": top5 / n}
        return {"val_loss": loss_sum / n, "val_cer": counts.cer, "val_wer": counts.wer}

    # ------------------------------------------------------------ loop hooks
    def bar_desc(self) -> str:
        return f"{self.cfg.task} epoch {self.epoch + 1}/{self.cfg.epochs}"

    def before_fit(self, start: float) -> None:
        if self.init is not None and not self.history and self.val_items:
            self.record(start)  # step 0: the source model's score on this run's validation data

    def begin_epoch(self) -> int:
        if self._chunk is not None and self._chunk[0] != self.epoch:
            self._chunk = None  # the last epoch's bucketing chunk
        return sum(self._steps_in(self.epoch))

    def run_step(self) -> tuple[float, int] | None:
        items = self._feasible(self._batch(self.epoch, self.step_in_epoch))
        return (self.train_step(items), len(items)) if items else None

    def result(self, stop: str) -> dict:
        best = None if self.best is None else abs(self.best) if self.val_items else None
        return {"stop": stop, "best": best, "epochs": self.epoch, "steps": self.global_step,
                "skipped": self.skipped}

    def _score_key(self) -> str:
        return "val_top1" if self.cfg.task == "char" else "val_cer"

    def make_record(self, start: float) -> dict:
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
        return rec

    def better(self, rec: dict) -> bool:
        """Higher top-1 or lower CER; without a validation set the newest model is kept."""
        key = self._score_key()
        score = (rec[key] if key == "val_top1" else -rec[key]) if key in rec else rec["step"]
        if self.best is None or score > self.best:
            self.best = score
            return True
        return False

    def describe(self, rec: dict, better: bool) -> str:
        key = self._score_key()
        msg = f"step {rec['step']} (epoch {rec['epoch']}): loss {rec['train_loss']:.3f}"
        if key in rec:
            msg += f", {key} {100 * rec[key]:.2f}%"
        return msg + (" (best)" if better else "")

    def plot(self, history: list[dict], path: Path) -> None:
        from inkpack.train.plot import plot_ink_curves

        plot_ink_curves(history, path)


def fit_ink(cfg: InkTrainConfig) -> dict:
    trainer = InkTrainer(cfg)
    trainer.setup()
    return trainer.fit()
