"""A run killed by SIGKILL at an arbitrary step resumes, from its safe checkpoint, exactly as if never killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from conftest import make_tsv
from inkpack.train.checkpoint import load_checkpoint
from inkpack.train.loop import TrainConfig, Trainer

TEXTS = ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"]
STEPS = 8


def _cfg(tsv: Path, out: Path, max_steps: int) -> TrainConfig:
    return TrainConfig(train=str(tsv), val=str(tsv), out=str(out), height=32, batch_size=3, epochs=3,
                       max_steps=max_steps, progress=False, options={"feat_dim": 32, "lstm_hidden": 16},
                       ckpt_every=1, threads=1)


def _run(cfg: TrainConfig) -> Trainer:
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    return tr


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    tsv = make_tsv(tmp_path / "d", TEXTS)
    cut = tmp_path / "cut"
    # the same run in a child process, slowed down (not changed) so that the kill lands mid-run
    script = textwrap.dedent(f"""
        import time, torch
        torch.set_num_threads(1)
        from inkpack.train.loop import TrainConfig, Trainer
        step = Trainer.train_step
        def slow(self, *a, **k):
            time.sleep(0.4)
            return step(self, *a, **k)
        Trainer.train_step = slow
        cfg = TrainConfig(train={str(tsv)!r}, val={str(tsv)!r}, out={str(cut)!r}, height=32, batch_size=3,
                          epochs=3, max_steps={STEPS}, progress=False,
                          options={{"feat_dim": 32, "lstm_hidden": 16}}, ckpt_every=1, threads=1)
        tr = Trainer(cfg); tr.setup(); tr.fit()
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.time() + 180
    try:
        while time.time() < deadline and child.poll() is None:
            ck = cut / "last.pt"
            if ck.exists():
                step = load_checkpoint(ck)["global_step"]  # also: an in-progress write is never seen torn
                if step >= 3:
                    child.send_signal(signal.SIGKILL)
                    killed_at = step
                    break
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
    assert killed_at is not None, child.stderr.read().decode(errors="replace")[-2000:]
    assert child.returncode == -signal.SIGKILL
    at_kill = load_checkpoint(cut / "last.pt")["global_step"]
    assert 3 <= at_kill < STEPS  # really interrupted mid-run

    resumed = _run(_cfg(tsv, cut, STEPS))
    full = _run(_cfg(tsv, tmp_path / "full", STEPS))
    assert resumed.global_step == full.global_step == STEPS
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert resumed.opt.param_groups[0]["lr"] == full.opt.param_groups[0]["lr"]
