"""The DBLSTM of a CNN-DBLSTM compressed (issue 22, item 2): low-rank at full rank equals the dense
model, each stage reloads from its file to the same output, the low-rank model exports to ONNX
and ONNX Runtime computes what PyTorch does, and a narrower DBLSTM is distilled with LSTM-L2."""

import json

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from inkpack.compress.commands import compress
from inkpack.compress.lowrank import LowRankLSTM, lowrank_lstm
from inkpack.compress.lowrank_onnx import export_lowrank_onnx
from inkpack.errors import InkpackError
from inkpack.models.io import load_model

from compress_helpers import base, line_batch, parse  # noqa: F401 (base: a fixture)


def test_full_rank_lowrank_dblstm_matches_the_dense_model(base):
    model, _, _ = load_model(str(base))
    x = line_batch(5, [48, 30, 21])
    with torch.no_grad():
        ref, ref_len = model(*x)
        dense_lstm = model.lstm
        changes = lowrank_lstm(model, rank_ih=10**6, rank_hh=10**6)  # ranks clipped to full
        assert [c.name for c in changes] == ["lstm"] and isinstance(model.lstm, LowRankLSTM)
        assert model.lstm.ranks() == [(16, 8), (16, 8), (16, 8), (16, 8)]
        got, got_len = model(*x)
        assert torch.equal(got_len, ref_len)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
        # the step-by-step factored recurrence (what quantized factors run) agrees too
        feats = torch.randn(12, 3, 16)
        lengths = torch.tensor([12, 7, 3])
        packed = pack_padded_sequence(feats, lengths, enforce_sorted=False)
        a, _ = pad_packed_sequence(dense_lstm(packed)[0])
        b, _ = pad_packed_sequence(model.lstm._loop(packed)[0])
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_svd_lstm_stage_reloads_and_exports_to_onnx(base, tmp_path, tiny_tsv):
    out = tmp_path / "svd"
    model, comp = compress(parse("compress", str(base), "--recipe", "svd", "--svd-ranks", "lstm=5:4",
                                 "--data", str(tiny_tsv), "--steps", "2", "--batch-size", "4", "--out", str(out)),
                           log=lambda m: None)
    assert comp["structure"]["lstm"] == {"kind": "lowrank_lstm", "ranks": [[5, 4]] * 4}
    loaded, cfg, _ = load_model(str(out))
    x = line_batch(5, [48, 30, 21])
    with torch.no_grad():
        ref, lengths = model.eval()(*x)
        assert torch.equal(loaded(*x)[0], ref)
    import onnxruntime as ort

    feed = {"images": x[0].numpy(), "widths": x[2].numpy()}
    for int8 in (False, True):
        path = export_lowrank_onnx(loaded, tmp_path / f"svd{int(int8)}.onnx", int8=int8)
        lp, ln = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)
        assert ln.tolist() == lengths.tolist()
        want = ref.log_softmax(-1).numpy()
        real = np.arange(lp.shape[0])[:, None] < ln[None, :]  # padded frames are not compared
        err = np.abs(lp - want)[real].max()
        assert err < (1e-4 if not int8 else 0.5), (int8, err)
    with pytest.raises(InkpackError, match="not a LowRankLSTM"):
        export_lowrank_onnx(load_model(str(base))[0], tmp_path / "dense.onnx")


def test_onnx_graph_keeps_the_input_factor(base, tmp_path):
    import onnx

    model, _, _ = load_model(str(base))
    lowrank_lstm(model, rank_ih=3, rank_hh=None)
    path = export_lowrank_onnx(model, tmp_path / "m.onnx")
    g = onnx.load(str(path)).graph
    inits = {i.name: list(i.dims) for i in g.initializer}
    lstm_w = [inits[n.input[1]] for n in g.node if n.op_type == "LSTM"]
    assert lstm_w == [[1, 32, 3]] * 4  # W of each direction/layer: 4H x r, r = 3


def test_narrow_student_distilled_with_lstm_l2_reloads(base, tmp_path, tiny_tsv):
    out = tmp_path / "narrow"
    model, comp = compress(parse("compress", str(base), "--recipe", "distill", "--student-lstm-hidden", "4",
                                 "--criterion", "lstm-l2", "--data", str(tiny_tsv), "--steps", "3",
                                 "--finetune-steps", "2", "--batch-size", "4", "--out", str(out)), log=lambda m: None)
    cfg = json.loads(out.with_suffix(".json").read_text())
    assert cfg["options"]["lstm_hidden"] == 4 and model.lstm.hidden_size == 4
    teacher, _, _ = load_model(str(base))
    loaded, _, _ = load_model(str(out))
    x = line_batch(5, [48, 30, 21])
    with torch.no_grad():
        assert torch.equal(loaded(*x)[0], model.eval()(*x)[0])
    # the CNN came from the teacher (then CTC fine-tuned 2 steps: close to it, not equal)
    assert torch.allclose(loaded.cnn.body[0].weight, teacher.cnn.body[0].weight, atol=0.05)
    with pytest.raises(InkpackError, match="lstm-l2"):
        compress(parse("compress", str(base), "--recipe", "distill", "--student-lstm-hidden", "4", "--criterion",
                       "cnn-l2", "--data", str(tiny_tsv), "--out", str(tmp_path / "x")), log=lambda m: None)


def test_inference_cache_of_the_rebuilt_matrices_follows_the_factors():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True))
    lowrank_lstm(model, rank_ih=3, rank_hh=2)
    low = model[0]
    x = torch.randn(7, 2, 6)
    with torch.no_grad():
        a = low(x)[0]
        assert torch.equal(low(x)[0], a)  # served from the cache
        low.cells[1].hh[0].weight.mul_(0.5)  # an in-place change of one factor
        b = low(x)[0]
    assert not torch.equal(a, b)
    low.load_state_dict({k: v * 0.9 for k, v in low.state_dict().items()})
    with torch.no_grad():
        c = low(x)[0]
    assert not torch.equal(b, c)
    y = low(x)[0]  # with autograd: rebuilt in the graph, gradients reach the factors
    y.sum().backward()
    assert low.cells[0].ih[0].weight.grad is not None
    torch.testing.assert_close(y.detach(), c)
