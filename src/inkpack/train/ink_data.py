"""Data side of the online trainer: samples, skip accounting, and the deterministic batch order.

Every batch and every augmentation is a pure function of ``(seed, epoch, index)`` (see
:mod:`inkpack.train.ink_train`), which is what makes resuming exact.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import torch

from inkpack.batching import bucket_batches
from inkpack.data.alphabet import Alphabet
from inkpack.data.ink_preprocess import PreprocessConfig, preprocess
from inkpack.errors import InkpackError


def prep_config(task: str, overrides: dict) -> PreprocessConfig:
    """Seed 001 defaults for characters; lines are scaled by their y spread."""
    base = {} if task == "char" else {"scale": "y_std", "min_dist": 0.05}
    bad = set(overrides) - {f.name for f in fields(PreprocessConfig)}
    if bad:
        raise InkpackError(f"preprocessing: unknown keys {sorted(bad)}")
    return PreprocessConfig(**{**base, **overrides})


def pad_features(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(f) for f in feats], batch_first=True)
    return x, torch.tensor([len(f) for f in feats], dtype=torch.long)


class InkData:
    """The data side of :class:`inkpack.train.ink_train.InkTrainer` (it sets ``cfg``, ``pcfg``,
    ``out``, ``alphabet``, ``skipped``, ``val_skipped``, ``_chunk`` and ``_orders``)."""

    # ------------------------------------------------------------ data
    def _load_char(self) -> None:
        from inkpack.data.hanzi_synth import (
            HanziSynthDataset,
            SynthConfig,
            load_charset,
            load_medians,
        )

        cfg = self.cfg
        chars = load_charset(cfg.charset)
        chars = chars[: cfg.num_chars] if cfg.num_chars else chars
        med = load_medians(cfg.medians)
        scfg = SynthConfig(**cfg.synth)
        self.alphabet = Alphabet(list(chars))
        # a prefix of the character list keeps class index = position + 1
        self._char_ds = lambda n, p: HanziSynthDataset(med, chars[:n], p, cfg.seed, "train", scfg, self.pcfg)
        self.train_ds = self._char_ds(len(chars), cfg.per_class)
        vds = HanziSynthDataset.validation(med, chars, cfg.val_per_class, synth_cfg=scfg, prep_cfg=self.pcfg)
        self.val_items = self._collect(vds, range(len(vds)), "val")

    def _load_line(self) -> None:
        from inkpack.data.formats.iamondb import IamOnDbNpz

        cfg = self.cfg
        self.train_ds = IamOnDbNpz(cfg.train)
        n = len(self.train_ds) if cfg.limit is None else min(cfg.limit, len(self.train_ds))
        self.alphabet = self.alphabet or Alphabet.from_texts(str(t) for t in self.train_ds.texts[:n])
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
            feats = preprocess(ink, self.pcfg, synth_rng if rng is not None else None)
            target = ds.label_offset + i % len(ds.chars)
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
