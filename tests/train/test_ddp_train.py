"""`inkpack train` under torchrun with 2 gloo processes: checkpoints, resume, and 1-process equivalence.

Exact equivalence needs an example's gradient not to depend on which rank, or which
batch-mates, it gets: ``norm: none`` (no BatchNorm statistics), ``dropout: 0.0``,
``--no-augment`` and ``--batching pad-max`` (every example is padded to the same width
however the global batch is split; the convolutions are not masked, so with minimal
padding an example's output would depend on its share's widest line). What is left is
float rounding from summing in another order (gradient all-reduce, batched matmuls of
other sizes): about 1e-7 here, against parameter moves of about 1e-3 per AdamW step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_tsv

from inkpack.train.loop import TrainConfig, Trainer

TOL = 1e-5
# 10 lines, global batches of 5: two steps per epoch, shares of 3 and 2 lines (count split)
TEXTS = ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea", "ox", "sun"]
OPTIONS = {"feat_dim": 16, "lstm_hidden": 8, "dropout": 0.0, "norm": "none"}
COMMON = ["--height", "32", "--batch-size", "5", "--epochs", "3", "--no-augment", "--batching", "pad-max"]


def _launch(args: list[str], cwd: Path) -> str:
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # never a launcher's leftovers
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    return out


def _reference(tsv: Path, out: Path, steps: int) -> dict[str, torch.Tensor]:
    """The same run in this process, single-process (no torchrun environment)."""
    cfg = TrainConfig(train=str(tsv), val=str(tsv), out=str(out), height=32, batch_size=5, epochs=3,
                      max_steps=steps, augment=False, batching="pad-max", progress=False, options=dict(OPTIONS))
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    assert not tr.env.distributed and tr.global_step == steps
    return tr.model.state_dict()


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _ckpt(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=False)


def test_two_process_training_checkpoints_resumes_and_matches_one_process(tmp_path: Path) -> None:
    tsv = make_tsv(tmp_path / "data", TEXTS)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"options": OPTIONS}))
    out = tmp_path / "ddp"
    base = [str(tsv), "--val", str(tsv), "--config", str(cfg), "--out", str(out), *COMMON]

    # 3 steps with torchrun: epoch 1 ends (validation, best model, history), then one step into epoch 2
    log = _launch(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "inkpack", "train", *base, "--max-steps", "3"], tmp_path)
    files = sorted(p.name for p in out.iterdir())
    assert [f for f in files if f.endswith((".pt", ".tmp"))] == ["last.pt"], files  # one checkpoint, no leftovers
    assert {"best.safetensors", "best.json", "history.json", "curves.png"} <= set(files)
    ck = _ckpt(out)
    assert (ck["global_step"], ck["epoch"], ck["step_in_epoch"], ck["world_size"]) == (3, 1, 1, 2)
    assert len(ck["rng_ranks"]) == 2
    assert log.count("epoch 1: loss") == 1  # only rank 0 logs
    (rec,) = ck["history"]
    # shares of 3 and 2 lines, cost = count under pad-max: max / mean = 3 / 2.5
    assert rec["imbalance"] == pytest.approx(1.2) and rec["world_size"] == 2
    ref3 = _reference(tsv, tmp_path / "ref3", 3)
    assert _max_diff(ck["model"], ref3) < TOL

    # the same command through the --nproc shortcut resumes mid-epoch and goes on to step 5
    log = _launch(["-m", "inkpack", "train", *base, "--max-steps", "5", "--nproc", "2"], tmp_path)
    assert log.count("resumed from") == 1 and "epoch 2, step 1" in log, log[-3000:]
    ck = _ckpt(out)
    assert (ck["global_step"], ck["epoch"], ck["step_in_epoch"]) == (5, 2, 1)
    assert [h["epoch"] for h in ck["history"]] == [1, 2]
    ref5 = _reference(tsv, tmp_path / "ref5", 5)
    assert _max_diff(ck["model"], ref5) < TOL
    # the tolerance separates runs two steps apart by orders of magnitude: the check can fail
    assert _max_diff(ref5, ref3) > 100 * TOL
    # early stopping / best-model bookkeeping agrees with the single-process run
    ref_hist = _ckpt(tmp_path / "ref5")["history"]
    for got, want in zip(ck["history"], ref_hist):
        assert got["val_cer"] == want["val_cer"]
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
