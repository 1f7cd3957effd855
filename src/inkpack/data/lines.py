"""Labelled line datasets: read any supported source, decode once, skip and count bad samples."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from inkpack.batching import Batch, pad_collate
from inkpack.data.alphabet import Alphabet
from inkpack.data.formats.tsv import LineRecord, read_tsv
from inkpack.data.augment import AugmentConfig, augment, batch_zoom
from inkpack.data.images import load_gray, prepare_line
from inkpack.errors import BadSampleError, ConfigError, InkpackError


def read_records(source: str, images_dir: str | None = None) -> tuple[list[LineRecord], list[str]]:
    """Dispatch on the source: TSV manifest, PAGE-XML file/folder, or IAM ``lines.txt``.
    ``images_dir``: where the page images of PAGE-XML are (default: where each XML says)."""
    if os.path.isdir(source) or source.lower().endswith(".xml"):
        from inkpack.data.formats.pagexml import read_pagexml_source

        return read_pagexml_source(source, images_dir=images_dir)
    if images_dir:
        raise ConfigError(f"--images {images_dir}: only PAGE-XML data names page images; {source} is not PAGE-XML")
    if os.path.basename(source) == "lines.txt":
        from inkpack.data.formats.iam import read_iam_lines

        return read_iam_lines(source)
    if not os.path.exists(source):
        raise InkpackError(f"{source}: file not found")
    return read_tsv(source)


@dataclass
class LineSet:
    """Decoded, normalised lines (uint8, ink = 255) with texts; ``skipped`` lists why others were dropped."""

    images: list[np.ndarray]
    texts: list[str]
    ids: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def widths(self) -> list[int]:
        return [im.shape[1] for im in self.images]


def load_lineset(source: str, height: int, progress: bool = True, limit: int | None = None,
                 images_dir: str | None = None) -> LineSet:
    records, errors = read_records(source, images_dir=images_dir)
    if limit is not None:
        records = records[:limit]
    images, texts, ids, skipped = [], [], [], list(errors)
    for rec in tqdm(records, desc=f"loading {os.path.basename(source)}", disable=not progress, unit="line"):
        try:  # too wide after scaling (InputTooLargeError) or unreadable: skipped and counted
            if rec.crop is not None:
                gray, name = rec.crop, f"{rec.path} (line {rec.id})"
            else:
                gray, name = load_gray(rec.path, height=height), str(rec.path)
            img = prepare_line(gray, height, name=name)
        except BadSampleError as e:
            skipped.append(str(e))
            continue
        images.append(np.round(img * 255.0).astype(np.uint8))
        texts.append(rec.text)
        ids.append(rec.id)
    return LineSet(images, texts, ids, skipped)


class LineBatcher:
    """Turns index lists into :class:`Batch` es; augmentation is seeded per (epoch, example)."""

    def __init__(
        self,
        lines: LineSet,
        alphabet: Alphabet | None = None,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        unknown_policy: str = "skip",
    ) -> None:
        self.lines = lines
        self.alphabet = alphabet
        self.aug = augment_cfg
        self.seed = seed
        self.epoch = 0
        self.policy = unknown_policy

    def image(self, i: int, zoom: float | None = None) -> np.ndarray:
        img = self.lines.images[i].astype(np.float32) / 255.0
        if self.aug is not None and self.aug.enabled:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            img = augment(img, rng, self.aug, zoom)
        return img

    def __call__(self, idx: Sequence[int]) -> Batch:
        zoom = batch_zoom(self.aug, self.seed, self.epoch, idx[0]) if self.aug is not None and idx else None
        ims = [torch.from_numpy(self.image(i, zoom))[None] for i in idx]
        texts = [self.lines.texts[i] for i in idx]
        labels = None
        if self.alphabet is not None:
            labels = [self.alphabet.encode(t, policy=self.policy) for t in texts]
        return pad_collate(ims, labels, texts, [self.lines.ids[i] for i in idx])
