"""The training batches of an epoch: built in the trainer, or ahead of it in DataLoader workers.

A step's batch is a pure function of its example indices and the epoch (augmentation is
seeded per ``(seed, epoch, example)``), so workers build exactly the batches the trainer
would, in the same order: results, checkpoints and resume do not depend on ``workers``.
With ``workers > 0`` image augmentation, padding and packing (the layout search) run in
other processes, off the training step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from inkpack.batching import Batch, pad_collate
from inkpack.data.lines import LineBatcher


class BatchMaker:
    """Example indices → the :class:`Batch` a step trains on (picklable: it goes to workers)."""

    def __init__(self, batcher: LineBatcher, batching: str, height: int, max_width: int,
                 pack_options: dict | None = None) -> None:
        self.batcher, self.batching = batcher, batching
        self.height, self.max_width = height, max_width
        self.pack_options = pack_options or {}

    def __call__(self, idx: Sequence[int]) -> Batch:
        batch = self.batcher(list(idx))
        if self.batching == "pad-max":
            ims = [batch.images[i, :, : batch.heights[i], : batch.widths[i]] for i in range(len(batch))]
            b2 = pad_collate(ims, None, batch.texts, batch.ids, pad_to=(self.height, self.max_width))
            b2.targets, b2.target_lengths = batch.targets, batch.target_lengths
            batch = b2
        elif self.batching == "pack":
            from inkpack.packing import pack_batch

            batch = pack_batch(batch, **self.pack_options)  # the layout the model's packed path takes
        return batch


class _Steps(Dataset):
    def __init__(self, maker: BatchMaker, steps: list[list[int]]) -> None:
        self.maker, self.steps = maker, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, k: int) -> Batch:
        return self.maker(self.steps[k])


def _identity(batch: Batch) -> Batch:
    return batch


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def step_batches(maker: BatchMaker, steps: list[list[int]], workers: int = 0) -> Iterator[Batch]:
    """The batches of ``steps`` (index lists) in order; ``workers > 0`` builds them ahead in
    that many DataLoader processes (two batches in flight each)."""
    if workers <= 0:
        return (maker(s) for s in steps)
    loader = DataLoader(_Steps(maker, steps), batch_size=None, shuffle=False, num_workers=workers,
                        prefetch_factor=2, worker_init_fn=_one_thread, collate_fn=_identity,
                        generator=torch.Generator())  # its own seed: the trainer's RNG stream stays as without workers
    return iter(loader)
