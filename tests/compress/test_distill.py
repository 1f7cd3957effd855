"""Teacher–student criteria: zero at equality, masked padding, frozen head, hand-computed CNN-MAH."""

import copy

import pytest
import torch
from torch import nn

from inkpack.batching import pad_collate
from inkpack.compress.distill import (
    CRITERIA,
    distill,
    distill_loss,
    finetune_ctc,
    freeze_head,
    init_student,
    outputs,
    teacher_w_ih,
)
from inkpack.errors import InkpackError
from inkpack.models.cnn_dblstm import CNNDBLSTM

torch.set_num_threads(1)
T_CFG = [("c", 8, 3), ("p", 2, 2), ("c", 8, 3), ("p", 2, 2)]
S_CFG = [("c", 4, 3), ("p", 2, 2), ("c", 4, 1), ("p", 2, 2)]
OPTS = {"height": 16, "feat_dim": 6, "lstm_hidden": 5, "lstm_layers": 2, "dropout": 0.2}


def models(seed: int = 0) -> tuple[CNNDBLSTM, CNNDBLSTM]:
    torch.manual_seed(seed)
    return CNNDBLSTM(7, T_CFG, **OPTS).eval(), CNNDBLSTM(7, S_CFG, **OPTS).eval()


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ims = [torch.rand(1, 16, w, generator=g) for w in (40, 24, 33)]
    return pad_collate(ims, [[1, 2, 3], [4], [5, 6]])


def all_outputs(model, b):
    with torch.no_grad():
        return outputs(model, b.images, b.widths)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_loss_is_zero_for_identical_and_positive_for_other_student(criterion):
    teacher, student = models()
    b = batch()
    t = all_outputs(teacher, b)
    w = teacher_w_ih(teacher)
    same = all_outputs(copy.deepcopy(teacher), b)
    assert float(distill_loss(criterion, t, same, t["lengths"], temperature=2.0, w_ih=w)) == pytest.approx(0.0, abs=1e-6)
    init_student(student, teacher)
    s = all_outputs(student, b)
    assert float(distill_loss(criterion, t, s, t["lengths"], temperature=2.0, w_ih=w)) > 1e-7


@pytest.mark.parametrize("criterion", CRITERIA)
def test_padded_frames_do_not_count(criterion):
    g = torch.Generator().manual_seed(3)
    t = {k: torch.randn(5, 2, 4, generator=g) for k in ("feats", "lstm", "logits")}
    s = {k: torch.randn(5, 2, 4, generator=g) for k in ("feats", "lstm", "logits")}
    lengths = torch.tensor([5, 2])
    w = torch.randn(8, 4, generator=g)
    base = distill_loss(criterion, t, s, lengths, w_ih=w)
    t2 = {k: v.clone() for k, v in t.items()}
    for v in t2.values():
        v[2:, 1] += 100.0  # only padding of sequence 1 changes
    assert float(distill_loss(criterion, t2, s, lengths, w_ih=w)) == pytest.approx(float(base), rel=1e-6)
    # and the mean is over the 7 real frames: duplicate the batch → same value
    t3 = {k: torch.cat([v, v], 1) for k, v in t.items()}
    s3 = {k: torch.cat([v, v], 1) for k, v in s.items()}
    assert float(distill_loss(criterion, t3, s3, torch.cat([lengths, lengths]), w_ih=w)) == pytest.approx(float(base), rel=1e-6)


def test_cnn_mah_hand_computed():
    lstm = nn.LSTM(2, 1, bidirectional=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [1, -1]]))
        lstm.weight_ih_l0_reverse.copy_(torch.tensor([[2.0, 0], [0, 0], [0, 0], [0, 0]]))
    holder = nn.Module()
    holder.lstm = lstm
    f_s = torch.zeros(3, 1, 2)
    f_t = torch.tensor([[[1.0, 2.0]], [[0.0, 1.0]], [[50.0, -7.0]]])  # frame 3 is padding
    # frame 1: fwd W·δ = (1,2,3,-1) → 15, rev (2,0,0,0) → 4; frame 2: fwd (0,1,1,-1) → 3, rev 0
    loss = distill_loss("cnn-mah", {"feats": f_t}, {"feats": f_s}, torch.tensor([2]), w_ih=teacher_w_ih(holder))
    assert float(loss) == pytest.approx((15 + 4 + 3) / 2)


def test_softmax_ce_is_kl_at_temperature():
    t = {"logits": torch.tensor([[[2.0, 0.0]]])}
    s = {"logits": torch.tensor([[[0.0, 0.0]]])}
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0)  # temperature 2
    kl = float((p * (p.log() - torch.log(torch.tensor([0.5, 0.5])))).sum())
    assert float(distill_loss("softmax-ce", t, s, torch.tensor([1]), temperature=2.0)) == pytest.approx(kl, rel=1e-6)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_gradients_reach_only_student_cnn_and_proj(criterion):
    teacher, student = models()
    init_student(student, teacher)
    freeze_head(student, True)
    b = batch()
    t = all_outputs(teacher, b)
    s = outputs(student.train(), b.images, b.widths)
    distill_loss(criterion, t, s, t["lengths"], w_ih=teacher_w_ih(teacher)).backward()
    for name, p in student.named_parameters():
        if name.startswith(("lstm", "fc")):
            assert p.grad is None, name
    assert all(p.grad is not None for p in student.proj.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.cnn.parameters())
    assert not any(p.grad is not None for p in teacher.parameters())


def test_distill_keeps_head_fixed_and_lowers_loss_then_finetune_trains_all():
    teacher, student = models()
    b = batch()
    t_head = {k: v.clone() for k, v in teacher.state_dict().items() if k.startswith(("lstm", "fc"))}
    cnn_before = copy.deepcopy(student.cnn.state_dict())
    hist = distill(teacher, student, [b], "cnn-mah", steps=30, lr=3e-3)
    s_state = student.state_dict()
    for k, v in t_head.items():
        assert torch.equal(s_state[k], v), k  # copied from the teacher and never updated
    assert any(not torch.equal(cnn_before[k], v) for k, v in student.cnn.state_dict().items())
    assert hist["losses"][-1] < 0.5 * hist["losses"][0]
    assert all(p.requires_grad for p in student.parameters())  # unfrozen afterwards
    before = student.lstm.weight_hh_l0.clone()
    ft = finetune_ctc(student, [b], steps=2)
    assert len(ft["losses"]) == 2 and not torch.equal(before, student.lstm.weight_hh_l0)


def test_cached_teacher_outputs_give_the_same_student_and_skip_the_teacher():
    teacher, student = models()
    bs = [batch(1), batch(2)]
    plain = copy.deepcopy(student)
    distill(teacher, plain, bs, "ip-l2", steps=4, lr=3e-3)
    cache: dict = {}
    first = copy.deepcopy(student)
    distill(teacher, first, bs, "cnn-l2", steps=4, lr=3e-3, cache=cache)
    assert sorted(cache) == [1, 2, 3, 4] and {"feats", "lstm", "logits"} <= set(cache[1])
    calls = []
    teacher.cnn.register_forward_hook(lambda *a: calls.append(1))
    cached = copy.deepcopy(student)
    distill(teacher, cached, bs, "ip-l2", steps=4, lr=3e-3, cache=cache)
    assert calls == []  # every step's teacher outputs came from the cache
    for (k, a), b in zip(plain.state_dict().items(), cached.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_bad_criterion_and_mismatched_head():
    teacher, _ = models()
    with pytest.raises(InkpackError, match="criterion"):
        distill(teacher, copy.deepcopy(teacher), [batch()], "mse", steps=1)
    other = CNNDBLSTM(7, S_CFG, height=16, feat_dim=6, lstm_hidden=3)
    with pytest.raises(InkpackError, match="does not match"):
        init_student(other, teacher)
