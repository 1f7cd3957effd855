"""The trainer base: the checkpoint format the trainers wrote before it, and the loop's edge cases."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from conftest import make_tsv
from inkpack.errors import ModelFileError
from inkpack.train.checkpoint import atomic_save
from inkpack.train.ink_train import InkTrainConfig, InkTrainer
from inkpack.train.loop import TrainConfig, Trainer

# the keys of last.pt as train/loop.py and train/ink_train.py wrote them before the base existed
LINE_KEYS = {"model", "optimizer", "scheduler", "rng", "epoch", "step_in_epoch", "global_step", "history",
             "best_cer", "bad_epochs", "elapsed", "epoch_loss", "epoch_imbalance", "world_size", "alphabet",
             "config"}
INK_KEYS = {"model", "optimizer", "scheduler", "rng", "alphabet", "config", "epoch", "step_in_epoch",
            "global_step", "history", "best", "elapsed", "run_loss", "skipped"}
TOY = {"一": [[[150, 450], [500, 460], [870, 450]]], "二": [[[250, 650], [750, 650]], [[120, 250], [880, 250]]]}


def _line_cfg(root, out, max_steps, **kw):
    tsv = make_tsv(root, ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"])
    return TrainConfig(train=str(tsv), val=str(tsv), out=str(out), height=32, batch_size=3, epochs=3,
                       max_steps=max_steps, progress=False, options={"feat_dim": 16, "lstm_hidden": 8},
                       ckpt_every=1000, **kw)


def _run(tr):
    tr.setup()
    tr.fit()
    return tr


def _same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_line_checkpoint_keeps_its_keys(tmp_path):
    _run(Trainer(_line_cfg(tmp_path / "d", tmp_path / "o", 2)))
    ckpt = torch.load(tmp_path / "o" / "last.pt", weights_only=True)
    assert set(ckpt) == LINE_KEYS
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (0, 2, 2)
    assert ckpt["epoch_loss"][1] == 6 and ckpt["history"] == []  # 2 steps of 3 lines, no epoch ended
    _run(Trainer(_line_cfg(tmp_path / "d", tmp_path / "e", 2, ema=0.9)))
    assert set(torch.load(tmp_path / "e" / "last.pt", weights_only=True)) == LINE_KEYS | {"ema"}


def test_line_stop_on_an_epochs_last_step_leaves_its_record_to_the_resumed_run(tmp_path):
    """8 lines in batches of 3: 3 steps an epoch; a stop after step 3 checkpoints (epoch 0, step 3)."""
    full = _run(Trainer(_line_cfg(tmp_path / "d", tmp_path / "full", 7)))
    cut = _run(Trainer(_line_cfg(tmp_path / "d", tmp_path / "cut", 3)))
    assert (cut.epoch, cut.step_in_epoch, cut.history) == (0, 3, [])
    resumed = _run(Trainer(_line_cfg(tmp_path / "d", tmp_path / "cut", 7)))
    assert [h["epoch"] for h in resumed.history] == [h["epoch"] for h in full.history] == [1, 2]
    assert [h["val_cer"] for h in resumed.history] == [h["val_cer"] for h in full.history]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    _same_weights(full, resumed)


def test_line_checkpoint_without_the_later_keys_resumes(tmp_path):
    """Checkpoints written before epoch_loss/epoch_imbalance existed resume from a zero running loss."""
    _run(Trainer(_line_cfg(tmp_path / "d", tmp_path / "o", 3)))  # the epoch's last step: nothing to lose
    path = tmp_path / "o" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["epoch_loss"], ckpt["epoch_imbalance"]
    atomic_save(ckpt, path)
    tr = Trainer(_line_cfg(tmp_path / "d", tmp_path / "o", 4))
    tr.setup()
    assert tr.run_loss == (0.0, 0) and tr.epoch_imbalance == (0.0, 0) and tr.global_step == 3


@pytest.fixture
def hanzi(tmp_path):
    with gzip.open(tmp_path / "medians.json.gz", "wt", encoding="utf-8") as f:
        json.dump(TOY, f)
    (tmp_path / "chars.txt").write_text("".join(TOY) + "\n", encoding="utf-8")
    return tmp_path


def _char_cfg(hanzi, out, max_steps, **opts):
    return InkTrainConfig(task="char", out=str(out), medians=str(hanzi / "medians.json.gz"),
                          charset=str(hanzi / "chars.txt"), per_class=8, val_per_class=2, batch_size=8,
                          bucket_factor=2, warmup_steps=1, epochs=2, max_steps=max_steps, progress=False,
                          options={"hidden1": 8, "hidden2": 16, "fc": 16, **opts}, threads=1)


def test_ink_checkpoint_keeps_its_keys_and_records_at_a_stop(hanzi, tmp_path):
    tr = _run(InkTrainer(_char_cfg(hanzi, tmp_path / "o", 1)))  # 2 classes x 8 samples = 2 steps an epoch
    ckpt = torch.load(tmp_path / "o" / "last.pt", weights_only=True)
    assert set(ckpt) == INK_KEYS
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (0, 1, 1)
    assert [h["step"] for h in ckpt["history"]] == [1] and ckpt["history"][0]["epoch"] == 0.5
    assert ckpt["best"] == tr.history[0]["val_top1"] and ckpt["run_loss"] == (0.0, 0)  # reset by the record


def test_ink_checkpoint_of_another_model_is_one_line(hanzi, tmp_path):
    _run(InkTrainer(_char_cfg(hanzi, tmp_path / "o", 1)))
    tr = InkTrainer(_char_cfg(hanzi, tmp_path / "o", 2, hidden1=12))
    with pytest.raises(ModelFileError, match="last.pt: checkpoint does not fit this configuration"):
        tr.setup()
