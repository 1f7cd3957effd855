"""Data side of the online trainer: samples, skip accounting, and the deterministic batch order.

Every batch and every augmentation is a pure function of ``(seed, epoch, index)`` (see
:mod:`inkpack.train.ink_train`), which is what makes resuming exact.

Character data: the synthetic medians (default), or labelled CASIA ``.pot`` characters when
``train`` names a ``.pot`` file or a folder of them (:class:`PotChars`); validation on the
fixed synthetic set (without writer styles even when training uses them, so that every run's
``val_top1`` is measured on the same kind of samples), on ``val`` when it names ``.pot`` data, or (``.pot`` training without
``val``) on every tenth training sample, held out. A character's class is its label in the
run's alphabet (the charset, the ``.pot`` labels, or a warm-start model's alphabet resized
for them). Extra validations (``extra_val``): ``writer`` (the held-out writer styles of
:mod:`inkpack.data.hanzi_synth`) and ``order`` (the synthetic validation samples with their
stroke order / direction perturbed, :mod:`inkpack.data.ink_perturb`).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from inkpack.batching import bucket_batches
from inkpack.data.alphabet import Alphabet
from inkpack.data.ink import Ink, InkList
from inkpack.data.ink_perturb import PerturbConfig, perturb_order
from inkpack.data.ink_preprocess import PreprocessConfig, preprocess
from inkpack.errors import ConfigError, InkpackError


EXTRA_VALS = ("writer", "order")
HOLDOUT_EVERY = 10  # .pot training without val: every tenth sample validates


def prep_config(task: str, overrides: dict, base: dict | None = None) -> PreprocessConfig:
    """Seed 001 defaults for characters; lines are scaled by their y spread; ``base`` (a warm
    start model's preprocessing) replaces those defaults."""
    names = {f.name for f in fields(PreprocessConfig)}
    if base is None:
        base = {} if task == "char" else {"scale": "y_std", "min_dist": 0.05}
    base = {k: v for k, v in base.items() if k in names}
    bad = set(overrides) - names
    if bad:
        raise InkpackError(f"preprocessing: unknown keys {sorted(bad)}")
    return PreprocessConfig(**{**base, **overrides})


def is_pot(path: str) -> bool:
    """A ``.pot`` file, or a folder holding some."""
    p = Path(path)
    return p.suffix.lower() == ".pot" or (p.is_dir() and any(p.glob("*.pot")))


def read_pots(path: str, what: str) -> InkList:
    """The samples of a ``.pot`` file or of every ``.pot`` file of a folder (bad ones skipped)."""
    from inkpack.data.formats.pot import read_pot

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} {path}: not found")
    files = sorted(p.glob("*.pot")) if p.is_dir() else [p]
    out = InkList()
    for f in files:
        inks = read_pot(f, strict=False)
        out.extend(inks)
        out.errors.extend(inks.errors)
    return out


class PotChars:
    """Labelled characters read from ``.pot`` data, the character trainer's dataset.

    ``ink(i)`` is ``(ink, None)``: the training augmentation comes from the trainer's rng; with
    ``perturb`` the stroke order of a training sample is perturbed with the seed
    ``(seed, 6, epoch, i)`` as in :class:`~inkpack.data.hanzi_synth.HanziSynthDataset`."""

    def __init__(self, inks: list[Ink], chars: str, seed: int = 0, perturb: PerturbConfig | None = None) -> None:
        self.inks, self.chars, self.seed, self.epoch = inks, chars, seed, 0
        self.perturb = perturb if perturb is not None and perturb.active() else None

    def __len__(self) -> int:
        return len(self.inks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def ink(self, i: int) -> tuple[Ink, None]:
        ink = self.inks[i]
        if self.perturb is not None:
            ink = perturb_order(ink, np.random.default_rng([self.seed, 6, self.epoch, i]), self.perturb)
        return ink, None

    def char(self, i: int) -> str:
        return self.inks[i].label or ""


def pad_features(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(f) for f in feats], batch_first=True)
    return x, torch.tensor([len(f) for f in feats], dtype=torch.long)


class InkData:
    """The data side of :class:`inkpack.train.ink_train.InkTrainer` (it sets ``cfg``, ``pcfg``,
    ``out``, ``alphabet``, ``skipped``, ``val_skipped``, ``_chunk`` and ``_orders``)."""

    # ------------------------------------------------------------ data
    def _load_char(self) -> None:
        from inkpack.data.hanzi_synth import HanziSynthDataset, SynthConfig, load_charset, load_medians

        cfg = self.cfg
        self.extra_val_items: dict[str, list] = {}
        aug = PerturbConfig.from_dict(cfg.order_augment, "order_augment") if cfg.order_augment else None
        if cfg.train:
            return self._load_pot(aug)
        chars = load_charset(cfg.charset)
        chars = chars[: cfg.num_chars] if cfg.num_chars else chars
        med = load_medians(cfg.medians)
        scfg = SynthConfig(**cfg.synth)
        self._set_alphabet(chars)
        # a prefix of the character list keeps class index = position + 1
        self._char_ds = lambda n, p: HanziSynthDataset(med, chars[:n], p, cfg.seed, "train", scfg, self.pcfg,
                                                       perturb=aug)
        self.train_ds = self._char_ds(len(chars), cfg.per_class)
        base = replace(scfg, writer_style=False)  # validation: the fixed set of every run, without writers
        if cfg.val:
            self.val_items = self._pot_val(read_pots(cfg.val, "val"))
        else:
            vds = HanziSynthDataset.validation(med, chars, cfg.val_per_class, synth_cfg=base, prep_cfg=self.pcfg)
            self.val_items = self._collect(vds, range(len(vds)), "val")
        for name in cfg.extra_val:
            if name == "writer":
                held = replace(scfg, writer_style=True, style_split="heldout")
                ds = HanziSynthDataset.validation(med, chars, cfg.val_per_class, synth_cfg=held, prep_cfg=self.pcfg)
            else:
                ds = HanziSynthDataset.validation(med, chars, cfg.val_per_class, synth_cfg=base, prep_cfg=self.pcfg,
                                                  perturb=PerturbConfig.from_dict(cfg.val_perturb, "val_perturb"))
            self.extra_val_items[name] = self._collect(ds, range(len(ds)), f"val {name}")

    def _set_alphabet(self, chars: str) -> None:
        """The run's alphabet: the checkpoint's, the warm start model's resized for ``chars``,
        or ``chars`` in their order."""
        if self.alphabet is not None:
            pass
        elif self.init is not None:
            self.alphabet = self.init.resolve([chars])
            self._say(self.init.describe())
        else:
            self.alphabet = Alphabet(list(chars))
        self._class = {s: k + 1 for k, s in enumerate(self.alphabet.symbols)}

    def _load_pot(self, aug: PerturbConfig | None) -> None:
        cfg = self.cfg
        inks = read_pots(cfg.train, "train")
        for e in inks.errors:
            self._skip(f"train: {e}")
        good = []
        for ink in inks[: cfg.limit] if cfg.limit else inks:
            if ink.label and len(ink.label) == 1:
                good.append(ink)
            else:
                self._skip(f"train {ink.name()}: label {ink.label!r} is not one character")
        if not good:
            raise InkpackError(f"{cfg.train}: no labelled characters to train on")
        held = [] if cfg.val else good[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]
        train = good if cfg.val else [x for k, x in enumerate(good) if k % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
        self._set_alphabet("".join(sorted({x.label for x in train})))
        self.train_ds = PotChars(train, "".join(self.alphabet.symbols), cfg.seed, aug)
        self.val_items = self._pot_val(read_pots(cfg.val, "val") if cfg.val else InkList(held))

    def _pot_val(self, inks: InkList) -> list[tuple]:
        """Validation items of ``.pot`` samples: unreadable ones and unknown labels are skipped, counted."""
        for e in inks.errors:
            self.val_skipped += 1
            self._skip(f"val: {e}")
        keep = []
        for ink in inks:
            if ink.label in self._class:
                keep.append(ink)
            else:
                self.val_skipped += 1
                self._skip(f"val {ink.name()}: label {ink.label!r} is not in the alphabet")
        return self._collect(PotChars(keep, ""), range(len(keep)), "val")

    def _load_line(self) -> None:
        from inkpack.data.formats.iamondb import IamOnDbNpz

        cfg = self.cfg
        self.train_ds = IamOnDbNpz(cfg.train)
        n = len(self.train_ds) if cfg.limit is None else min(cfg.limit, len(self.train_ds))
        texts = [str(t) for t in self.train_ds.texts[:n]]
        if self.alphabet is None and self.init is not None:  # the model's, resized for these texts
            self.alphabet = self.init.resolve(texts)
            self._say(self.init.describe())
        self.alphabet = self.alphabet or Alphabet.from_texts(texts)
        self.train_sizes = np.diff(self.train_ds.offsets)[:n].tolist()
        self.val_items = []
        if cfg.val:
            v = IamOnDbNpz(cfg.val)
            m = len(v) if cfg.val_limit is None else min(cfg.val_limit, len(v))
            self.val_items = self._collect(v, range(m), "val")

    def _collect(self, ds, idx, where: str) -> list[tuple]:
        """Eval items ``(features, target[, text])``; bad ones are counted, not fatal."""
        out = []
        for i in idx:
            try:
                out.append(self._item(ds, i, None, train=False))
            except InkpackError as e:
                self.val_skipped += 1
                self._skip(f"{where} {i}: {e}")
        return out

    def _item(self, ds, i: int, rng: np.random.Generator | None, train: bool = True) -> tuple:
        """Features and target of one sample (``rng`` = augment); raises ``InkpackError``."""
        if self.cfg.task == "char":
            ink, synth_rng = ds.ink(i)  # the synthetic distortion is part of the sample
            aug = (rng if synth_rng is None else synth_rng) if rng is not None else None
            feats = preprocess(ink, self.pcfg, aug)
            target = self._class[ds.char(i)]
        else:
            ink = ds[i]
            # validation keeps lines with unknown characters (they count as errors)
            target = self.alphabet.encode(ink.label or "", policy="error" if train else "skip")
            if not target:
                raise InkpackError(f"{ds.path}: line {i}: empty transcription")
            feats = preprocess(ink, self.pcfg, rng)
        if len(feats) == 0 or not np.isfinite(feats).all():
            raise InkpackError(f"sample {i}: no usable points after preprocessing")
        return (feats, target) if self.cfg.task == "char" else (feats, target, ink.label)

    def _skip(self, msg: str) -> None:
        self.skipped += not msg.startswith("val")
        with open(self.out / "skipped.txt", "a", encoding="utf-8") as f:
            f.write(msg + "\n")

    # ------------------------------------------------------------ batches
    def _order(self, epoch: int) -> list[list[int]]:
        """Index groups of epoch ``epoch``: chunks of a shuffle (char), one batch each (line)."""
        cfg = self.cfg
        if epoch not in self._orders:
            if cfg.task == "char" and cfg.class_schedule:
                n, p = cfg.class_schedule[min(epoch, len(cfg.class_schedule) - 1)]
                self.train_ds = self._char_ds(min(int(n), len(self.alphabet.symbols)), int(p))
            if cfg.task == "line" and cfg.sortagrad and epoch == 0:  # CTC aligns short lines first
                idx = sorted(range(len(self.train_sizes)), key=lambda i: (self.train_sizes[i], i))
                order = [idx[s : s + cfg.batch_size] for s in range(0, len(idx), cfg.batch_size)]
            elif cfg.task == "line":
                order = bucket_batches(self.train_sizes, cfg.batch_size, True, cfg.seed * 1000 + epoch)
            else:
                perm = np.random.default_rng([cfg.seed, 7, epoch]).permutation(len(self.train_ds)).tolist()
                size = cfg.batch_size * cfg.bucket_factor
                order = [perm[s : s + size] for s in range(0, len(perm), size)]
            self._orders = {epoch: order}
        return self._orders[epoch]

    def _steps_in(self, epoch: int) -> list[int]:
        return [math.ceil(len(c) / self.cfg.batch_size) for c in self._order(epoch)]

    def _batch(self, epoch: int, step: int) -> list[tuple]:
        """The items of one step; a chunk's samples are made (and sorted) when first needed."""
        cfg = self.cfg
        counts = self._steps_in(epoch)
        starts = np.cumsum([0] + counts)
        c = int(np.searchsorted(starts, step, side="right") - 1)
        if self._chunk is None or self._chunk[:2] != (epoch, c):
            if cfg.task == "char":
                self.train_ds.set_epoch(epoch)
            good = []
            for i in self._order(epoch)[c]:
                rng = np.random.default_rng([cfg.seed, 11, epoch, i]) if cfg.augment else None
                try:
                    good.append(self._item(self.train_ds, i, rng))
                except InkpackError as e:
                    self._skip(f"train epoch {epoch} sample {i}: {e}")
            good.sort(key=lambda it: len(it[0]))
            parts = np.array_split(np.arange(len(good)), counts[c])
            np.random.default_rng([cfg.seed, 9, epoch, c]).shuffle(parts)
            self._chunk = (epoch, c, [[good[j] for j in p] for p in parts])
        return self._chunk[2][step - int(starts[c])]
