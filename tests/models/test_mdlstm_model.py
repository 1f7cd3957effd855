"""The registered ``mdlstm`` architecture: shapes, lengths, padding invariance, dropout."""

from __future__ import annotations

import pytest
import torch

from inkpack.errors import InkpackError
from inkpack.models.mdlstm import LSTMStage, MDLSTMNet
from inkpack.models.registry import REGISTRY, build_model

SMALL = {"hidden": [2, 3, 4], "conv_features": [3, 4]}


def _batch(sizes, seed=0):
    torch.manual_seed(seed)
    H, W = max(h for h, _ in sizes), max(w for _, w in sizes)
    images = torch.zeros(len(sizes), 1, H, W)
    for i, (h, w) in enumerate(sizes):
        images[i, 0, :h, :w] = torch.rand(h, w)
    return images, torch.tensor([h for h, _ in sizes]), torch.tensor([w for _, w in sizes])


def test_registered_with_paper_defaults():
    spec = REGISTRY["mdlstm"]
    assert spec.input_kind == "image"
    assert spec.defaults["hidden"] == [2, 10, 50] and spec.defaults["conv_features"] == [6, 20]
    model = build_model("mdlstm", 7)
    lstms = [s for s in model.stages if isinstance(s, LSTMStage)]
    assert [s.lstm.hidden for s in lstms] == [2, 10, 50]
    assert model.head.fc.out_features == 7


def test_shapes_and_lengths():
    model = MDLSTMNet(5, **SMALL).eval()
    images, hs, ws = _batch([(9, 37), (16, 64), (1, 1)])
    logits, lengths = model(images, hs, ws)
    # widths: ceil(ceil(ceil(w / 2) / 4) / 4); tensor width 64 -> 2
    assert lengths.tolist() == [2, 2, 1]
    assert logits.shape == (2, 3, 5)
    assert model.output_lengths(torch.tensor([1, 32, 33, 64, 65])).tolist() == [1, 1, 2, 2, 3]
    assert torch.isfinite(logits).all()


def test_padded_batch_equals_each_example_alone():
    model = MDLSTMNet(6, **SMALL).eval()
    sizes = [(12, 50), (7, 21), (16, 9)]
    images, hs, ws = _batch(sizes, seed=3)
    images[1, 0, 10:, 30:] = 5.0  # garbage in the padding must not matter
    with torch.no_grad():
        logits, lengths = model(images, hs, ws)
        for i, (h, w) in enumerate(sizes):
            alone, n = model(images[i : i + 1, :, :h, :w], hs[i : i + 1], ws[i : i + 1])
            assert int(n) == int(lengths[i])
            assert (logits[: int(n), i] - alone[:, 0]).abs().max() <= 1e-5


def test_dropout_only_in_train_mode_and_on_selected_layers():
    images, hs, ws = _batch([(8, 40), (8, 33)])
    model = MDLSTMNet(4, dropout=0.5, dropout_layers="top", **SMALL)
    drops = [s.dropout for s in model.stages if isinstance(s, LSTMStage)]
    assert [isinstance(d, torch.nn.Dropout) for d in drops] == [False, False, True]
    model.eval()
    with torch.no_grad():
        a, _ = model(images, hs, ws)
        b, _ = model(images, hs, ws)
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c, _ = model(images, hs, ws)
    assert not torch.allclose(a, c)
    none = MDLSTMNet(4, dropout=0.5, dropout_layers="none", **SMALL)
    assert not any(isinstance(s.dropout, torch.nn.Dropout) for s in none.stages if isinstance(s, LSTMStage))
    all_ = MDLSTMNet(4, dropout=0.5, dropout_layers="all", **SMALL)
    assert all(isinstance(s.dropout, torch.nn.Dropout) for s in all_.stages if isinstance(s, LSTMStage))


def test_trains_a_step():
    model = MDLSTMNet(4, **SMALL)
    images, hs, ws = _batch([(10, 40), (6, 30)])
    logits, lengths = model(images, hs, ws)
    targets = torch.tensor([1, 2, 3])
    loss = torch.nn.functional.ctc_loss(logits.log_softmax(-1), targets, lengths, torch.tensor([2, 1]))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bad_inputs_raise():
    model = MDLSTMNet(4, **SMALL)
    images, hs, ws = _batch([(8, 20)])
    with pytest.raises(InkpackError, match="too small"):
        model(images, torch.tensor([0]), ws)
    with pytest.raises(InkpackError, match="exceed"):
        model(images, hs, torch.tensor([21]))
    with pytest.raises(InkpackError, match="images must be"):
        model(images[:, 0], hs, ws)
    with pytest.raises(InkpackError, match="dropout_layers"):
        MDLSTMNet(4, dropout_layers="bottom")
    with pytest.raises(InkpackError, match="conv_features"):
        MDLSTMNet(4, hidden=[2, 3], conv_features=[3, 4])
