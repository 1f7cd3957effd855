"""BMUF: the block filter against hand-computed values, its settings, and one-worker equivalence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_tsv
from torch import nn

from inkpack.errors import ConfigError
from inkpack.train.bmuf import BMUF, block_update, default_momentum
from inkpack.train.config import TrainConfig
from inkpack.train.distributed import DistEnv
from inkpack.train.loop import Trainer

TEXTS = ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea", "ox", "sun"]
OPTIONS = {"feat_dim": 16, "lstm_hidden": 8, "dropout": 0.0, "norm": "none"}


def _two_workers_blocks(eta: float, zeta: float, nesterov: bool) -> list[tuple[list, list, list]]:
    """Two fake workers, one parameter of 2 values, τ local steps collapsed into their block's end
    points; returns (θ_g, Δ, θ_start) after each of two blocks."""
    glob = torch.tensor([1.0, 2.0])
    start, delta = glob.clone(), torch.zeros(2)
    out = []
    # the workers' local moves over each block (what τ optimizer steps did on each)
    moves = [(torch.tensor([0.2, -0.4]), torch.tensor([0.4, 0.0])),
             (torch.tensor([-0.2, 0.2]), torch.tensor([0.0, 0.6]))]
    for a, b in moves:
        mean = ((start + a) + (start + b)) / 2
        glob, delta, start = block_update(mean, start, glob, delta, eta, zeta, nesterov)
        out.append((glob.tolist(), delta.tolist(), start.tolist()))
    return out


def test_filter_classical_against_hand_computed_values() -> None:
    # block 1: G = mean move = (0.3, -0.2); Δ = 0.5·0 + 1.0·G; θ_g = (1.3, 1.8); start = θ_g
    # block 2: G = (-0.1, 0.4); Δ = 0.5·(0.3, -0.2) + (-0.1, 0.4) = (0.05, 0.3); θ_g = (1.35, 2.1)
    (g1, d1, s1), (g2, d2, s2) = _two_workers_blocks(0.5, 1.0, False)
    assert g1 == pytest.approx([1.3, 1.8]) and d1 == pytest.approx([0.3, -0.2]) and s1 == pytest.approx(g1)
    assert d2 == pytest.approx([0.05, 0.3]) and g2 == pytest.approx([1.35, 2.1]) and s2 == pytest.approx(g2)


def test_filter_nesterov_and_block_lr_against_hand_computed_values() -> None:
    # ζ = 2, η = 0.5. block 1: Δ = 2·(0.3, -0.2) = (0.6, -0.4); θ_g = (1.6, 1.6);
    #   start = θ_g + 0.5·Δ = (1.9, 1.4)
    # block 2 (moves from that start): G = (-0.1, 0.4); Δ = 0.5·(0.6, -0.4) + 2·G = (0.1, 0.6);
    #   θ_g = (1.7, 2.2); start = (1.75, 2.5)
    (g1, d1, s1), (g2, d2, s2) = _two_workers_blocks(0.5, 2.0, True)
    assert d1 == pytest.approx([0.6, -0.4]) and g1 == pytest.approx([1.6, 1.6]) and s1 == pytest.approx([1.9, 1.4])
    assert d2 == pytest.approx([0.1, 0.6]) and g2 == pytest.approx([1.7, 2.2]) and s2 == pytest.approx([1.75, 2.5])


def test_tau1_eta0_is_model_averaging_and_defaults() -> None:
    start = torch.tensor([0.0, 1.0])
    mean = torch.tensor([0.5, 0.25])
    glob, delta, nxt = block_update(mean, start, start.clone(), torch.tensor([9.0, 9.0]), 0.0, 1.0, True)
    assert glob.tolist() == nxt.tolist() == [0.5, 0.25]  # η = 0: no memory, Nesterov or not
    assert default_momentum(1) == 0.0 and default_momentum(8) == pytest.approx(0.875)


def test_bmuf_object_syncs_every_tau_steps_and_averages_buffers() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    f = BMUF(model, opt, DistEnv(), block_steps=3, block_momentum=0.5, block_lr=1.0)
    p = next(model.parameters())
    theta0 = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)
        model[1].running_mean.fill_(3.0)
    assert not f.after_step(False) and not f.after_step(False)
    assert f.step_in_block == 2 and f.epoch.syncs == 0
    assert torch.equal(f.global_model()[0].weight, theta0)  # θ_g unchanged inside the block
    f.after_step(False)  # third step: block update; Δ = G = +1 on that tensor
    assert f.step_in_block == 0 and f.epoch.syncs == 1 and f.epoch.bytes == 0  # one process: nothing sent
    assert torch.allclose(f.global_model()[0].weight, theta0 + 1.0)
    assert torch.allclose(f.global_model()[1].running_mean, torch.full((2,), 3.0))
    assert f.after_step(True)  # one worker: the stop flag needs no synchronization
    rec = f.epoch_record()
    assert rec["syncs"] == 1 and f.epoch.syncs == 0


def test_warmup_syncs_every_step_without_momentum_then_blocks_start_with_zero_delta() -> None:
    model = nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    f = BMUF(model, opt, DistEnv(), block_steps=3, block_momentum=0.5, block_lr=2.0, warmup=2)
    w = model.weight
    with torch.no_grad():
        w.fill_(0.0)
    f.glob.zero_(), f.start.zero_()
    for k in (1, 2):  # warm-up: each step is its own block, η = 0, ζ = 1: θ_g follows the model exactly
        with torch.no_grad():
            w.add_(1.0)
        f.after_step(False)
        assert f.epoch.syncs == k and float(f.glob[0]) == pytest.approx(float(k))
    assert float(f.delta.abs().sum()) == 0.0  # Δ cleared when the blocks start
    for _ in range(3):  # first block: three local moves of +1, then G = 3 and Δ = 0.5·0 + 2·3
        with torch.no_grad():
            w.add_(1.0)
        f.after_step(False)
    assert f.epoch.syncs == 3 and float(f.glob[0]) == pytest.approx(8.0) and float(f.delta[0]) == pytest.approx(6.0)
    for _ in range(3):  # second block from θ_g = 8: G = 3, Δ = 0.5·6 + 2·3 = 9, θ_g = 17 (momentum is back)
        with torch.no_grad():
            w.add_(1.0)
        f.after_step(False)
    assert float(f.delta[0]) == pytest.approx(9.0) and float(f.glob[0]) == pytest.approx(17.0)


def test_one_worker_warmup_then_blocks_keeps_plain_training_until_momentum_acts(tmp_path: Path) -> None:
    tsv = make_tsv(tmp_path / "data", TEXTS)
    plain = _run(tsv, tmp_path / "plain", 6)
    # τ = 3, η = 0.5 without warm-up: blocks end at steps 3 and 6, the second applies 0.5·Δ extra
    cold = _run(tsv, tmp_path / "cold", 6, sync="bmuf", block_steps=3, block_momentum=0.5)
    assert _max_diff(plain.model.state_dict(), cold.model.state_dict()) > 1e-4
    # 4 synchronous steps, then a block (steps 5-7) still open at step 6: plain training so far
    warm = _run(tsv, tmp_path / "warm", 6, sync="bmuf", block_steps=3, block_momentum=0.5, block_warmup=4)
    assert warm.bmuf.total.syncs == 4 and warm.bmuf.step_in_block == 2
    assert _max_diff(plain.model.state_dict(), warm.model.state_dict()) < 1e-6
    ck = torch.load(tmp_path / "warm" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["bmuf"]["steps"] == 6 and ck["bmuf"]["settings"]["warmup"] == 4


@pytest.mark.parametrize(("field", "value"), [("block_steps", 0), ("block_momentum", 1.0),
                                              ("block_momentum", -0.1), ("block_lr", 0.0), ("sync", "allreduce"),
                                              ("block_warmup", -1)])
def test_bad_settings_name_the_field(field: str, value) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        TrainConfig(train="x.tsv", **{field: value}).validate()


def _run(tsv: Path, out: Path, steps: int, **kw) -> Trainer:
    cfg = TrainConfig(train=str(tsv), val=str(tsv), out=str(out), height=32, batch_size=5, epochs=3,
                      max_steps=steps, augment=False, batching="pad-max", progress=False, options=dict(OPTIONS), **kw)
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    return tr


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_one_worker_bmuf_eta0_zeta1_equals_plain_training(tmp_path: Path) -> None:
    tsv = make_tsv(tmp_path / "data", TEXTS)
    plain = _run(tsv, tmp_path / "plain", 5)
    bm = _run(tsv, tmp_path / "bmuf", 5, sync="bmuf", block_steps=2, block_momentum=0.0)
    assert bm.bmuf is not None and bm.bmuf.total.syncs == 2  # blocks end at steps 2 and 4
    assert _max_diff(plain.model.state_dict(), bm.model.state_dict()) < 1e-6
    # the checkpoint's model is θ_g (of step 4), not the local weights of step 5
    ck = torch.load(tmp_path / "bmuf" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["bmuf"]["step_in_block"] == 1
    four = _run(tsv, tmp_path / "plain4", 4)
    assert _max_diff(ck["model"], four.model.state_dict()) < 1e-6
    assert _max_diff(ck["model"], plain.model.state_dict()) > 1e-4
    assert [h["syncs"] for h in ck["history"]] == [1, 1]  # epochs of 2 steps: syncs at steps 2 and 4
    # with block momentum the filter changes the trajectory (the comparison above can fail)
    mom = _run(tsv, tmp_path / "mom", 5, sync="bmuf", block_steps=2, block_momentum=0.5)
    assert _max_diff(plain.model.state_dict(), mom.model.state_dict()) > 1e-4


@pytest.mark.parametrize("flags", [["--block-steps", "0"], ["--block-momentum", "1"], ["--sync", "gossip"],
                                   ["--block-lr", "0"]])
def test_cli_refuses_bad_bmuf_flags_in_one_line(tmp_path: Path, flags: list[str], capsys) -> None:
    from inkpack.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", str(tmp_path / "x.tsv"), "--out", str(tmp_path / "run"), "--sync", "bmuf", *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flags[0] in err


def test_yaml_bad_block_momentum_names_file_and_field(tmp_path: Path, capsys) -> None:
    from inkpack.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: x.tsv\nsync: bmuf\nblock_momentum: 1.5\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cfg) in err and "block_momentum: must be in [0, 1)" in err
