"""Batching of variable-size examples into one :class:`Batch` that carries true sizes.

Three strategies share the same type: ``pad-max`` pads every example to the
largest size of the dataset, ``pad-min`` pads each batch only to its own widest
(and tallest) example, and ``pack`` (see :mod:`inkpack.packing`) tiles examples
into a canvas. Whatever the strategy, models read ``heights``/``widths`` to know
where the real pixels are, so CTC gets each example's exact output length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    """Images ``[B, C, H, W]`` (zero-padded bottom/right) with their true sizes.

    ``targets`` is the concatenation of the label sequences, ``target_lengths`` their
    lengths (the layout ``torch.nn.functional.ctc_loss`` takes). ``texts`` and ``ids``
    travel along for evaluation and error messages. ``packing`` is set by the packer
    and holds the canvas layout; it is ``None`` for padded batches.
    """

    images: torch.Tensor
    heights: torch.Tensor
    widths: torch.Tensor
    targets: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    target_lengths: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    packing: object | None = None

    def __len__(self) -> int:
        return len(self.widths)

    def to(self, device: torch.device | str) -> "Batch":
        self.images = self.images.to(device)
        return self

    @property
    def real_pixels(self) -> int:
        return int((self.heights * self.widths).sum())

    @property
    def canvas_pixels(self) -> int:
        return int(self.images.shape[0] * self.images.shape[-2] * self.images.shape[-1])


def pad_collate(
    images: Sequence[torch.Tensor],
    labels: Sequence[Sequence[int]] | None = None,
    texts: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    pad_to: tuple[int, int] | None = None,
    pad_value: float = 0.0,
) -> Batch:
    """Stack ``[C, H, W]`` tensors, padding bottom/right to the batch max (or ``pad_to``)."""
    if not images:
        raise ValueError("pad_collate: empty batch")
    c = images[0].shape[0]
    hs = torch.tensor([im.shape[-2] for im in images], dtype=torch.long)
    ws = torch.tensor([im.shape[-1] for im in images], dtype=torch.long)
    H, W = int(hs.max()), int(ws.max())
    if pad_to is not None:
        H, W = max(H, pad_to[0]), max(W, pad_to[1])
    out = images[0].new_full((len(images), c, H, W), pad_value)
    for i, im in enumerate(images):
        out[i, :, : im.shape[-2], : im.shape[-1]] = im
    return attach_labels(Batch(images=out, heights=hs, widths=ws), labels, texts, ids)


def attach_labels(
    batch: Batch,
    labels: Sequence[Sequence[int]] | None = None,
    texts: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> Batch:
    """Set the CTC targets (concatenated labels + lengths), texts and ids of a batch."""
    if labels is not None:
        batch.targets = torch.tensor([l for lab in labels for l in lab], dtype=torch.long)
        batch.target_lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.long)
    batch.texts = list(texts) if texts is not None else []
    batch.ids = list(ids) if ids is not None else []
    return batch


def bucket_batches(
    widths: Sequence[int],
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    bucket_factor: int = 50,
    heights: Sequence[int] | None = None,
) -> list[list[int]]:
    """Group indices of similar size so that minimal padding wastes little.

    Indices are shuffled, cut into chunks of ``batch_size * bucket_factor``, each chunk
    sorted by width and cut into batches; the batch order is shuffled again. This keeps
    randomness across epochs while padding each batch only to near-equal widths.

    With ``heights`` (raw-size images, e.g. MDLSTM words), a batch pads to its tallest
    example too, so a chunk is first cut into height bands, each sorted by width; the
    number of bands (1, 2, 4, ... 16) is the one whose batches pad least (fewest bands on
    a tie). Equal heights give one band: exactly the width-only batches.
    """
    rng = random.Random(seed)
    idx = list(range(len(widths)))
    if shuffle:
        rng.shuffle(idx)
    chunk = max(batch_size, batch_size * bucket_factor)
    batches: list[list[int]] = []
    for s in range(0, len(idx), chunk):
        part = idx[s : s + chunk]
        if heights is None:
            batches.extend(_width_batches(part, widths, batch_size))
        else:
            batches.extend(_banded_batches(part, widths, heights, batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


def _width_batches(part: list[int], widths: Sequence[int], batch_size: int) -> list[list[int]]:
    part = sorted(part, key=lambda i: widths[i])
    return [part[j : j + batch_size] for j in range(0, len(part), batch_size)]


def _banded_batches(
    part: list[int], widths: Sequence[int], heights: Sequence[int], batch_size: int
) -> list[list[int]]:
    """Width batches within height bands of whole batches, the band count padding least."""
    by_h = sorted(part, key=lambda i: (heights[i], widths[i]))
    n_batches = -(-len(part) // batch_size)
    best: tuple[float, list[list[int]]] = (float("inf"), [])
    bands = 1
    while bands <= min(16, n_batches):
        per = -(-n_batches // bands) * batch_size  # whole batches per band
        out = [b for k in range(0, len(by_h), per) for b in _width_batches(by_h[k : k + per], widths, batch_size)]
        area = sum(len(b) * max(heights[i] for i in b) * max(widths[i] for i in b) for b in out)
        if area < best[0]:
            best = (area, out)
        bands *= 2
    return best[1]


def random_batches(n: int, batch_size: int, shuffle: bool = True, seed: int = 0) -> list[list[int]]:
    """Plain random batches (the seed's minimal-padding baseline without sorting)."""
    idx = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(idx)
    return [idx[j : j + batch_size] for j in range(0, n, batch_size)]


def iter_chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
