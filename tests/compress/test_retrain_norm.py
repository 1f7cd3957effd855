"""Fine-tuning a trained image model keeps its BatchNorm statistics (train.base.train_keep_norm)."""

from __future__ import annotations

import torch
from torch import nn

from inkpack.compress.distill import finetune_ctc
from inkpack.compress.retrain import retrain
from inkpack.train.base import train_keep_norm
from test_distill import batch, models


def norm_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}


def test_train_keep_norm_leaves_only_the_batchnorms_in_eval_mode():
    _, student = models()
    train_keep_norm(student)
    bns = [m for m in student.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert student.training and student.lstm.training and student.dropout.training


def test_ctc_fine_tuning_changes_weights_but_not_the_statistics():
    _, student = models()
    before, w = norm_stats(student), student.lstm.weight_hh_l0.clone()
    finetune_ctc(student, [batch(1), batch(2)], steps=3)
    assert not torch.equal(w, student.lstm.weight_hh_l0)
    after = norm_stats(student)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the plain train mode would have moved them: the check above can fail
    student.train()
    with torch.no_grad():
        b = batch(3)
        student(b.images, b.heights, b.widths)
    assert any(not torch.equal(before[k], v) for k, v in norm_stats(student).items() if "running_mean" in k)


class _Task:
    def __init__(self, b):
        self.b = b

    def batch(self, step):
        return self.b

    def loss(self, model, b):
        from inkpack.train.ctc import ctc_loss, run_model

        logits, lengths = run_model(model, b)
        return ctc_loss(logits, lengths, b)


def test_compression_retraining_keeps_the_statistics():
    _, student = models()
    before, w = norm_stats(student), student.fc.weight.clone()
    retrain(student, _Task(batch(1)), steps=2, lr=1e-3, log=None)
    assert not torch.equal(w, student.fc.weight)
    assert all(torch.equal(before[k], v) for k, v in norm_stats(student).items())
