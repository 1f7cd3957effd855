"""torch.distributed helpers for data-parallel training with variable-size sub-batches.

Usage from a training loop (single process works unchanged, ``world_size == 1``)::

    env = init_distributed()                         # torchrun env vars; NCCL on GPU, gloo on CPU
    model = wrap_model(model.to(env.device), env)    # DDP when world_size > 1
    sampler = DistributedBatchSampler(batches_fn, env.rank, env.world_size, size_of, "padded")
    for epoch in ...:
        sampler.set_epoch(epoch)
        counts = sampler.global_counts()
        for step, batch in enumerate(loader):
            loss_sum = F.ctc_loss(..., reduction="sum")  # sum over this rank's examples
            scale_loss(loss_sum, counts[step], env.world_size).backward()
        sums = all_reduce_sums({"edits": e, "chars": c}, env)   # same CER on every rank
        stop = broadcast_object(stop, env)                      # rank 0 decides
        save_atomic(unwrap(model).state_dict(), path, env)     # rank 0 writes, all wait
    cleanup()

Ranks get different numbers of examples (the split balances cost, not count), so the
per-rank loss is *not* a mean: see :func:`scale_loss`. N ranks then take the same steps
as one process on the same global batches (``tests/train/test_distributed.py``) provided
an example's output does not depend on how far its batch is padded (mask after each
conv/pool, pack LSTM sequences) and nothing couples examples (BatchNorm statistics,
dropout masks drawn from per-rank RNG streams).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from inkpack.errors import InkpackError
from inkpack.train.checkpoint import atomic_save


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``backend`` is None when running single-process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise InkpackError(f"environment variable {name} is not set (launch with torchrun)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise InkpackError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistEnv:
    """Join the process group described by torchrun's ``RANK``/``WORLD_SIZE``/``MASTER_*`` vars.

    Without ``WORLD_SIZE`` (or with 1) nothing is initialised and a single-process
    :class:`DistEnv` is returned (``cuda:0`` when a GPU is visible), so the same loop
    runs under plain ``python`` and under ``torchrun``. ``backend`` defaults to NCCL
    when CUDA is available, gloo otherwise; with CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    world = _env_int("WORLD_SIZE", 1)
    cuda = torch.cuda.is_available()
    if world <= 1:
        return DistEnv(device=torch.device("cuda:0" if cuda else "cpu"))
    rank = _env_int("RANK")
    local = _env_int("LOCAL_RANK", rank)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(var):
            raise InkpackError(f"environment variable {var} is not set (launch with torchrun)")
    backend = backend or ("nccl" if cuda else "gloo")
    if backend == "nccl":
        if not cuda or local >= torch.cuda.device_count():
            raise InkpackError(f"LOCAL_RANK={local} but {torch.cuda.device_count()} CUDA device(s) visible")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=device, backend=backend)


def cleanup(sync: bool = True) -> None:
    """Leave the process group (safe to call when none was joined).

    With ``sync`` every rank first waits at a barrier, so none tears its connections down
    while a peer still finishes the last collective (a rare gloo abort at exit otherwise);
    pass ``sync=False`` after a failure, when peers may never arrive.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if sync:
        try:
            if dist.get_backend() == "nccl":  # name the device, or NCCL guesses one per rank
                dist.barrier(device_ids=[torch.cuda.current_device()])
            else:
                dist.barrier()
        except Exception:  # noqa: BLE001 - a peer already left: just leave too
            pass
    dist.destroy_process_group()
    gc.collect()  # drop DDP/Work objects holding the group now, not during interpreter teardown


def wrap_model(model: nn.Module, env: DistEnv, **ddp_kwargs: Any) -> nn.Module:
    """DDP-wrap ``model`` (already on ``env.device``) when distributed; else return it as is.

    DDP broadcasts rank 0's parameters at construction, so all ranks start equal.
    BatchNorm sees only the local sub-batch: convert it with
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` or use a batch-independent norm.
    """
    if not env.distributed:
        return model
    if env.device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [env.local_rank])
    return DistributedDataParallel(model, **ddp_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (for ``state_dict`` and export)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def scale_loss(loss_sum: torch.Tensor, global_count: int, world_size: int) -> torch.Tensor:
    """Per-rank loss whose DDP-averaged gradient equals the global-batch mean gradient.

    ``loss_sum`` is the *sum* of this rank's per-example losses and ``global_count`` the
    number of examples over all ranks this step. DDP divides the summed gradients by
    ``world_size``; multiplying by it undoes that, so
    ``grad = sum over all examples / global_count`` whatever each rank's share.
    """
    if global_count <= 0:
        raise InkpackError(f"scale_loss: global_count must be positive, got {global_count}")
    return loss_sum * (world_size / global_count)


def all_reduce_sums(values: Mapping[str, float], env: DistEnv) -> dict[str, float]:
    """Sum each named value over ranks (float64), e.g. edit and character counts for CER.

    Reduce sums, never per-rank ratios: rates computed from the summed counts are then
    identical on every rank, so early stopping and best-model choice agree.
    """
    keys = sorted(values)
    if not env.distributed:
        return {k: float(values[k]) for k in keys}
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist()))


def global_count(local_count: int, env: DistEnv) -> int:
    """Examples this step over all ranks, when the sampler's ``global_counts`` is not at hand."""
    return round(all_reduce_sums({"n": local_count}, env)["n"])


def broadcast_object(obj: Any, env: DistEnv, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (e.g. rank 0's early-stopping decision)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(env: DistEnv) -> None:
    """Wait for all ranks (no-op single-process)."""
    if env.distributed:
        if env.backend == "nccl":
            dist.barrier(device_ids=[env.local_rank])
        else:
            dist.barrier()


def save_atomic(obj: Any, path: str | os.PathLike, env: DistEnv) -> None:
    """Rank 0 writes ``obj`` with :func:`inkpack.train.checkpoint.atomic_save`; all ranks wait.

    Call it on every rank. Rank 0 broadcasts the outcome after writing, which doubles
    as the barrier: no rank goes on (or reads the file) before it exists, and a failure
    on rank 0 makes every rank raise instead of hanging.
    """
    err: str | None = None
    cause: Exception | None = None
    if env.is_main:
        try:
            atomic_save(obj, path)
        except Exception as e:  # noqa: BLE001 - re-raised below on every rank
            err, cause = f"{path}: checkpoint write failed: {e}", e
    err = broadcast_object(err, env)
    if err is not None:
        raise InkpackError(err) from cause
