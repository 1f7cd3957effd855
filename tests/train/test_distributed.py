"""1 process versus 2 gloo processes on the same global batches: same parameters after k steps.

The ranks get cost-balanced shares of *different* sizes, so the test only passes when
the loss scaling makes the DDP gradient equal the global-batch mean gradient. A second
model trained with the naive per-rank mean shows the test can tell the difference.
The harness is :mod:`inkpack.train.ddp_equivalence` (``benchmarks/distributed.py`` runs it too).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from inkpack.errors import InkpackError
from inkpack.train.ddp_equivalence import max_diff, run_equivalence
from inkpack.train.distributed import (
    DistEnv,
    all_reduce_sums,
    cleanup,
    init_distributed,
    save_atomic,
    scale_loss,
    unwrap,
    wrap_model,
)

TOL = 1e-5


def test_two_processes_match_one_process(tmp_path: Path) -> None:
    steps = 4
    res = run_equivalence(tmp_path, steps=steps)
    # The shares really differ in size, so plain per-rank means would be wrong ...
    assert any(len(set(c)) > 1 for c in res["counts"]), res["counts"]
    assert [sum(c) for c in res["counts"]] == res["ref_counts"]
    # ... training moved the weights well beyond the tolerance ...
    assert res["moved"] > 1e-2
    # ... yet the properly scaled DDP run ends where the 1-process run does.
    assert res["max_diff"] < TOL, res["max_diff"]
    assert res["rank_diff"] == 0.0  # DDP keeps the replicas bit-identical
    # The naive per-rank mean is measurably off: the test can fail.
    assert res["max_diff_naive"] > 100 * TOL, res["max_diff_naive"]
    # all_reduce_sums / broadcast_object / save_atomic agree across ranks.
    total = sum(res["ref_counts"])
    for r in res["ranks"]:
        assert r["sums"] == {"examples": float(total), "ranks": 2.0}
        assert r["from_rank0"] == "hello from 0"
        assert r["ckpt_seen"] and r["failure_raised"]
    assert max_diff(res["ckpt"], res["ranks"][0]["global"]) == 0.0
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_scale_loss_matches_global_mean_gradient() -> None:
    """Hand-computed: shares of 1 and 3 examples, world 2, DDP averages the two gradients."""
    w = torch.tensor(2.0, requires_grad=True)
    xs = [1.0, 2.0, 3.0, 4.0]  # per-example loss w * x, global mean gradient = 10 / 4
    grads = []
    for share in ([1.0], [2.0, 3.0, 4.0]):
        (g,) = torch.autograd.grad(scale_loss(w * torch.tensor(share).sum(), 4, 2), w)
        grads.append(g)
    assert float(sum(grads) / 2) == pytest.approx(sum(xs) / 4)
    with pytest.raises(InkpackError):
        scale_loss(torch.tensor(1.0), 0, 2)


def test_init_single_process_and_missing_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    env = init_distributed()
    assert (env.rank, env.world_size, env.distributed, env.is_main) == (0, 1, False, True)
    assert all_reduce_sums({"b": 2, "a": 1}, env) == {"a": 1.0, "b": 2.0}
    model = nn.Linear(2, 2)
    assert wrap_model(model, env) is model and unwrap(model) is model
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(InkpackError, match="RANK"):
        init_distributed()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(InkpackError, match="RANK='x'"):
        init_distributed()


def test_save_atomic_single_process(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ckpt.pt"
    save_atomic({"a": torch.ones(2)}, path, DistEnv())
    assert torch.equal(torch.load(path)["a"], torch.ones(2))
    save_atomic({"a": torch.zeros(2)}, path, DistEnv())
    assert torch.equal(torch.load(path)["a"], torch.zeros(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]
    with pytest.raises(InkpackError, match="sub.pt: checkpoint write failed"):
        save_atomic({}, path / "sub.pt", DistEnv())  # a regular file is in the way
    assert torch.equal(torch.load(path)["a"], torch.zeros(2))


@pytest.mark.parametrize(("backend", "expected"), [("nccl", {"device_ids": [3]}), ("gloo", {})])
def test_cleanup_barrier_names_the_gpu_under_nccl(monkeypatch, backend, expected) -> None:
    calls = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda *a: backend)
    monkeypatch.setattr(torch.distributed, "barrier", lambda **kw: calls.append(kw))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda *a: calls.append("destroyed"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    cleanup()
    assert calls == [expected, "destroyed"]
