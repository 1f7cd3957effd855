"""1 process versus N gloo processes on the same global batches: are the parameters the same after k steps?

The ranks get cost-balanced shares of *different* sizes, so the parameters only agree when the
loss scaling (:func:`inkpack.train.distributed.scale_loss`) makes the DDP gradient equal the
global-batch mean gradient; a second model trained with the naive per-rank mean shows the check
can tell the difference. Used by ``tests/train/test_distributed.py`` and ``benchmarks/distributed.py``.
CPU only (gloo), a tiny masked conv + BLSTM model on random images; seconds, not minutes.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader

from inkpack.batching import Batch, pad_collate
from inkpack.errors import InkpackError
from inkpack.train.distributed import (
    DistEnv,
    all_reduce_sums,
    broadcast_object,
    cleanup,
    init_distributed,
    save_atomic,
    scale_loss,
    unwrap,
    wrap_model,
)
from inkpack.train.sharding import DistributedBatchSampler

__all__ = ["N_CLASSES", "TinyCRNN", "make_data", "make_global_batches", "max_diff", "run_equivalence", "train"]

N_CLASSES = 6


class TinyCRNN(nn.Module):
    """Conv + BLSTM + linear, masked so each example's output ignores how far it was padded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 8, bidirectional=True)
        self.fc = nn.Linear(16, N_CLASSES)

    @staticmethod
    def _mask(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[2]).view(1, 1, -1, 1) < h.view(-1, 1, 1, 1)
        cols = torch.arange(x.shape[3]).view(1, 1, 1, -1) < w.view(-1, 1, 1, 1)
        return x * (rows & cols)

    def forward(self, images: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor):
        x = self._mask(F.relu(self.conv1(images)), heights, widths)
        h, w = heights // 2, widths // 2
        x = self._mask(F.max_pool2d(x, 2), h, w)  # an odd last column would leak into the pad
        x = self._mask(F.relu(self.conv2(x)), h, w)
        seq = x.sum(2).permute(2, 0, 1)  # [T, B, C]
        out, _ = self.lstm(pack_padded_sequence(seq, w, enforce_sorted=False))
        out, _ = pad_packed_sequence(out)
        return self.fc(out), w


def make_data(n: int = 40, seed: int = 7) -> tuple[list[torch.Tensor], list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    images, labels = [], []
    for _ in range(n):
        h, w = rng.randint(8, 16), rng.randint(16, 80)
        images.append(torch.rand((1, h, w), generator=g))
        labels.append([rng.randint(1, N_CLASSES - 1) for _ in range(rng.randint(1, 4))])
    return images, labels


def make_global_batches(n: int, steps: int, seed: int = 3) -> list[list[int]]:
    """Global batches of varying size (7..10), the same in every process."""
    rng = random.Random(seed)
    return [rng.sample(range(n), rng.randint(7, 10)) for _ in range(steps)]


def train(env: DistEnv, steps: int, scaling: str) -> tuple[nn.Module, list[int]]:
    """k SGD steps on this rank's shares; returns the model and the share size of each step."""
    images, labels = make_data()
    sizes = [(im.shape[1], im.shape[2]) for im in images]
    torch.manual_seed(0)
    model = wrap_model(TinyCRNN(), env)
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    sampler = DistributedBatchSampler(
        make_global_batches(len(images), steps), env.rank, env.world_size, sizes.__getitem__, "padded"
    )

    def collate(idx: list[int]) -> Batch:
        return pad_collate([images[i] for i in idx], [labels[i] for i in idx])

    loader = DataLoader(list(range(len(images))), batch_sampler=sampler, collate_fn=collate)
    counts, local = sampler.global_counts(), []
    for step, b in enumerate(loader):
        local.append(len(b))
        logits, out_len = model(b.images, b.heights, b.widths)
        loss_sum = F.ctc_loss(
            logits.log_softmax(-1), b.targets, out_len, b.target_lengths, reduction="sum", zero_infinity=True
        )
        loss = scale_loss(loss_sum, counts[step], env.world_size) if scaling == "global" else loss_sum / len(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, local


def _worker(rank: int, world: int, port: int, workdir: str, steps: int) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    env = init_distributed()
    ok = False
    try:
        out = {}
        for scaling in ("global", "naive"):
            model, out["local_counts"] = train(env, steps, scaling)
            out[scaling] = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}
        out["sums"] = all_reduce_sums({"examples": sum(out["local_counts"]), "ranks": 1.0}, env)
        out["from_rank0"] = broadcast_object(f"hello from {env.rank}", env)
        save_atomic(out["global"], Path(workdir) / "ckpt.pt", env)
        out["ckpt_seen"] = (Path(workdir) / "ckpt.pt").exists()  # save_atomic returned: file must be there
        try:  # rank 0 cannot write under a regular file: every rank must raise, none may hang
            save_atomic({}, Path(workdir) / "ckpt.pt" / "sub.pt", env)
            out["failure_raised"] = False
        except InkpackError as e:
            out["failure_raised"] = "checkpoint write failed" in str(e)
        torch.save(out, Path(workdir) / f"rank{rank}.pt")
        ok = True
    finally:
        cleanup(sync=ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def run_equivalence(workdir: str | Path, steps: int = 4, world_size: int = 2) -> dict:
    """Train 1-process and ``world_size``-process (gloo) on the same global batches; compare."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref, ref_counts = train(DistEnv(), steps, "global")
    finally:
        torch.set_num_threads(threads)
    ref_state = unwrap(ref).state_dict()
    # spawn, not fork: a forked child of a process whose thread pools (OpenMP, BLAS) have run
    # can deadlock on a lock held by a thread that does not exist in the child
    mp.start_processes(
        _worker, args=(world_size, _free_port(), str(workdir), steps), nprocs=world_size, start_method="spawn"
    )
    ranks = [torch.load(Path(workdir) / f"rank{r}.pt") for r in range(world_size)]
    torch.manual_seed(0)
    init = TinyCRNN().state_dict()
    return {
        "max_diff": max(max_diff(r["global"], ref_state) for r in ranks),
        "max_diff_naive": max(max_diff(r["naive"], ref_state) for r in ranks),
        "rank_diff": max(max_diff(r["global"], ranks[0]["global"]) for r in ranks),
        "moved": max_diff(ref_state, init),
        "counts": [list(c) for c in zip(*(r["local_counts"] for r in ranks))],  # [step][rank]
        "ref_counts": ref_counts,
        "ranks": ranks,
        "ckpt": torch.load(Path(workdir) / "ckpt.pt"),
    }
