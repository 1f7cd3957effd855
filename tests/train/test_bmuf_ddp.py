"""`inkpack train --sync bmuf` with 2 gloo processes: a run stopped inside a block, resumed, stopped
right after a block update and resumed again takes bit for bit the steps of a run that never
stopped; history logs the synchronizations."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from conftest import make_tsv
from test_ddp_train import COMMON, OPTIONS, TEXTS, _launch

from inkpack.train.bmuf import BYTES_F32


def _ckpt(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=False)


def _train(base: list[str], out: Path, steps: int, cwd: Path) -> str:
    return _launch(["-m", "inkpack", "train", *base, "--out", str(out), "--max-steps", str(steps), "--nproc", "2",
                    "--sync", "bmuf", "--block-steps", "3", "--nesterov"], cwd)


def test_two_process_bmuf_resumes_exactly_inside_a_block(tmp_path: Path) -> None:
    tsv = make_tsv(tmp_path / "data", TEXTS)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"options": OPTIONS}))
    base = [str(tsv), "--val", str(tsv), "--config", str(cfg), *COMMON]
    # two steps per epoch, blocks of 3: the block update at step 3 falls inside epoch 2
    _train(base, tmp_path / "straight", 5, tmp_path)
    _train(base, tmp_path / "split", 2, tmp_path)
    half = _ckpt(tmp_path / "split")
    assert half["bmuf"]["step_in_block"] == 2 and len(half["bmuf"]["ranks"]) == 2
    a, b = (r["local"] for r in half["bmuf"]["ranks"])
    assert not torch.equal(a, b)  # the workers moved apart on their own shares
    log = _train(base, tmp_path / "split", 3, tmp_path)  # stopped right after the block update
    assert "resumed from" in log and "epoch 1, step 2" in log, log[-3000:]
    assert _ckpt(tmp_path / "split")["bmuf"]["step_in_block"] == 0
    log = _train(base, tmp_path / "split", 5, tmp_path)
    assert "epoch 2, step 1" in log, log[-3000:]

    want, got = _ckpt(tmp_path / "straight"), _ckpt(tmp_path / "split")
    assert got["global_step"] == want["global_step"] == 5
    for k in want["model"]:
        assert torch.equal(got["model"][k], want["model"][k]), k
    for key in ("global", "delta", "start"):
        assert torch.equal(got["bmuf"][key], want["bmuf"][key]), key
    assert got["bmuf"]["step_in_block"] == want["bmuf"]["step_in_block"] == 2
    for r in range(2):
        assert torch.equal(got["bmuf"]["ranks"][r]["local"], want["bmuf"]["ranks"][r]["local"])
        for s_got, s_want in zip(got["bmuf"]["ranks"][r]["optimizer"]["state"].values(),
                                 want["bmuf"]["ranks"][r]["optimizer"]["state"].values()):
            assert all(torch.equal(s_got[n], s_want[n]) for n in s_want)
    # θ_g moved at the block update (step 3) and holds the Nesterov look-ahead apart from θ_start
    assert not torch.equal(want["bmuf"]["global"], half["bmuf"]["global"])
    assert not torch.equal(want["bmuf"]["start"], want["bmuf"]["global"])
    # history: epochs end at steps 2 and 4; the one synchronization (step 3) is in epoch 2
    payload = (want["bmuf"]["global"].numel() + want["bmuf"]["global_buffers"].numel() + 1) * BYTES_F32
    assert [(h["syncs"], h["sync_bytes"]) for h in want["history"]] == [(0, 0), (1, payload)]
    timing = ("elapsed_s", "lines_per_s")
    assert [{k: v for k, v in h.items() if k not in timing} for h in got["history"]] == [
        {k: v for k, v in h.items() if k not in timing} for h in want["history"]]


def _model_averaging_reference(tsv: Path, tmp: Path, steps: int, moments: bool = False) -> dict[str, torch.Tensor]:
    """Two workers simulated in this process: each takes its AdamW step on its share of the
    global batch (the 2-process split), then both take the mean of the two models (and, with
    ``moments``, of their AdamW ``exp_avg`` and ``exp_avg_sq``)."""
    from test_ddp_train import OPTIONS as OPTS

    from inkpack.train.loop import TrainConfig, Trainer
    from inkpack.train.sharding import DistributedBatchSampler

    workers = []
    for r in range(2):
        cfg = TrainConfig(train=str(tsv), out=str(tmp / f"w{r}"), height=32, batch_size=5, epochs=3,
                          augment=False, batching="pad-max", progress=False, options=dict(OPTS))
        tr = Trainer(cfg)
        tr.setup()
        sizes = [(32, w) for w in tr.train_set.widths]
        workers.append((tr, DistributedBatchSampler(tr._epoch_batches, r, 2, sizes.__getitem__, "count")))
    done = 0
    for epoch in range(3):
        for _, sampler in workers:
            sampler.set_epoch(epoch)
        for k in range(len(workers[0][1].batches())):
            for r, (tr, sampler) in enumerate(workers):
                tr.train_step(tr.batch_maker(sampler.shares(k)[r]))
            a, b = (tr.model for tr, _ in workers)
            with torch.no_grad():
                for pa, pb in zip(a.parameters(), b.parameters()):
                    mean = (pa + pb) / 2
                    pa.copy_(mean)
                    pb.copy_(mean)
                    if moments:
                        sa, sb = workers[0][0].opt.state[pa], workers[1][0].opt.state[pb]
                        for key in ("exp_avg", "exp_avg_sq"):
                            m = (sa[key] + sb[key]) / 2
                            sa[key].copy_(m)
                            sb[key].copy_(m)
            done += 1
            if done == steps:
                return workers[0][0].model.state_dict()
    raise AssertionError("not enough steps")


def _averaging_run(tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    """3 steps of 2-process BMUF with τ = 1, η = 0 on tiny data: (the data, its checkpoint)."""
    tsv = make_tsv(tmp_path / "data", TEXTS)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"options": OPTIONS}))
    out = tmp_path / "avg"
    _launch(["-m", "inkpack", "train", str(tsv), "--config", str(cfg), *COMMON, "--out", str(out),
             "--max-steps", "3", "--nproc", "2", "--sync", "bmuf", "--block-steps", "1", "--block-momentum", "0",
             *extra], tmp_path)
    return tsv, _ckpt(out)


def test_two_process_bmuf_tau1_eta0_is_synchronous_model_averaging(tmp_path: Path) -> None:
    tsv, ckpt = _averaging_run(tmp_path)
    got = ckpt["model"]
    want = _model_averaging_reference(tsv, tmp_path, 3)
    diff = max(float((got[k] - want[k]).abs().max()) for k in want)
    assert diff < 1e-5
    # ... which is not gradient averaging (DDP) on the same batches: the check can fail
    from test_ddp_train import _reference

    ddp = _reference(tsv, tmp_path / "ddp", 3)
    assert max(float((got[k] - ddp[k]).abs().max()) for k in ddp) > 1e-4


def test_two_process_bmuf_block_moments_also_averages_the_adamw_moments(tmp_path: Path) -> None:
    tsv, ckpt = _averaging_run(tmp_path, "--block-moments")
    got = ckpt["model"]
    want = _model_averaging_reference(tsv, tmp_path / "m", 3, moments=True)
    assert max(float((got[k] - want[k]).abs().max()) for k in want) < 1e-5
    # both workers hold the same moments after the last synchronization
    a, b = (r["optimizer"]["state"] for r in ckpt["bmuf"]["ranks"])
    assert all(torch.equal(a[i][k], b[i][k]) for i in a for k in ("exp_avg", "exp_avg_sq"))
    # ... and the run differs from averaging the models alone: the check can fail
    plain = _model_averaging_reference(tsv, tmp_path / "p", 3)
    assert max(float((got[k] - plain[k]).abs().max()) for k in plain) > 1e-5
    # each synchronization carries the parameters twice more (two moment buffers each)
    n = ckpt["bmuf"]["global"].numel()
    payload = (n + ckpt["bmuf"]["global_buffers"].numel() + 2 * n + 1) * BYTES_F32
    assert ckpt["history"][-1]["sync_bytes"] % payload == 0 and ckpt["history"][-1]["sync_bytes"] > 0
