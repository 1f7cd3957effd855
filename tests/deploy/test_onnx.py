"""ONNX export: ORT matches PyTorch (mixed widths, dynamic width), int8, runtime, ink models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from deploy_helpers import gray_of, line_png, make_ink_model, make_line_model

from inkpack.api import load
from inkpack.deploy.export import export_onnx, sidecar_path
from inkpack.infer.backend import make_session
from inkpack.infer.recognizer import open_recognizer
from inkpack.errors import InkpackError
from inkpack.models.io import load_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_line_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(tiny_model, out)
    return out


def _batch(widths: list[int], height: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(len(widths), 1, height, max(widths))
    for i, w in enumerate(widths):
        images[i, :, :, :w] = torch.rand(1, height, w, generator=g)
    return images, torch.tensor(widths)


def test_ort_matches_torch_mixed_widths(tiny_model, exported):
    model, cfg, _ = load_model(str(tiny_model))
    h = cfg["options"]["height"]
    sess = make_session(exported)
    for widths in ([37, 160, 91, 12], [64, 64], [301]):  # mixed, equal, unseen width
        images, w = _batch(widths, h, seed=len(widths))
        with torch.no_grad():
            logits, lengths = model(images, None, w)
        lp, ln = sess.run(None, {"images": images.numpy(), "widths": w.numpy()})
        ref = logits.log_softmax(-1).numpy()
        assert lp.shape == ref.shape
        assert np.abs(lp - ref).max() <= 1e-4
        assert ln.tolist() == lengths.tolist() == [-(-x // model.width_factor) for x in widths]


def test_mixed_batch_equals_each_line_alone(tiny_model, exported):
    """The masked BLSTM is exact per sequence: the widest line of a batch reads as if alone."""
    _, cfg, _ = load_model(str(tiny_model))
    h = cfg["options"]["height"]
    sess = make_session(exported)
    images, w = _batch([200, 80], h)
    both, _ = sess.run(None, {"images": images.numpy(), "widths": w.numpy()})
    alone, _ = sess.run(None, {"images": images[:1].numpy(), "widths": w[:1].numpy()})
    assert np.abs(both[:, 0] - alone[:, 0]).max() <= 1e-5


def test_sidecar_and_dynamic_axes(tiny_model, exported):
    side = json.loads(sidecar_path(exported).read_text(encoding="utf-8"))
    assert side["arch"] == "darknet-dblstm" and side["onnx"]["width_factor"] == 4
    graph = onnx.load(str(exported)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[3] == "width" and dims[2] == 32
    assert sum(n.op_type == "LSTM" for n in graph.node) == 4  # 2 layers x 2 directions


def test_int8_quantizes_lstms_and_stays_close(tiny_model, exported, tmp_path):
    q = export_onnx(tiny_model, tmp_path / "tiny8.onnx", int8=True)
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert json.loads(sidecar_path(q).read_text())["onnx"]["int8"] is True
    images, w = _batch([120, 50], 32)
    a = make_session(exported).run(None, {"images": images.numpy(), "widths": w.numpy()})[0]
    b = make_session(q).run(None, {"images": images.numpy(), "widths": w.numpy()})[0]
    assert np.abs(np.exp(a) - np.exp(b)).max() < 0.1  # probabilities, not exact


def test_int8_compressed_model_exports_as_onnx_int8(tiny_model, tmp_path):
    """A model saved by `inkpack compress --recipe int8` exports from its float graph and is
    quantized in ONNX: the same graph as exporting its source with --int8."""
    import argparse

    from inkpack.cli.compress import add_parsers
    from inkpack.compress.commands import compress

    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers())
    stem = tmp_path / "q"
    compress(p.parse_args(["compress", str(tiny_model), "--recipe", "int8", "--out", str(stem)]), log=lambda m: None)
    a = export_onnx(stem, tmp_path / "a.onnx")
    b = export_onnx(tiny_model, tmp_path / "b.onnx", int8=True)
    assert json.loads(sidecar_path(a).read_text())["onnx"]["int8"] is True
    assert "DynamicQuantizeLSTM" in {n.op_type for n in onnx.load(str(a)).graph.node}
    images, w = _batch([90, 40], 32, seed=3)
    feed = {"images": images.numpy(), "widths": w.numpy()}
    assert np.array_equal(make_session(a).run(None, feed)[0], make_session(b).run(None, feed)[0])


def test_runtime_recognizer_matches_line_recognizer(tiny_model, exported):
    torch_rec = open_recognizer(str(tiny_model))
    ort_rec = open_recognizer(exported)
    assert (torch_rec.backend, ort_rec.backend) == ("torch", "onnxruntime")
    grays = [gray_of(line_png(t)) for t in ("hello", "kew gardens in june", "tea")]
    prepared = [torch_rec.prepare(g) for g in grays]
    assert ort_rec.recognize_prepared(prepared, 1) == torch_rec.recognize_prepared(prepared, 1)
    assert ort_rec.height == torch_rec.height


def test_api_load_onnx_equals_torch(tiny_model, exported):
    a, b = load(str(tiny_model)), load(str(exported))
    assert b.backend == "onnxruntime"
    for png in (line_png("hello"), line_png("a longer line")):
        ra, rb = a.recognize(png), b.recognize(png)
        assert ra.text == rb.text and ra.positions == rb.positions
        assert np.allclose(ra.confidences, rb.confidences, atol=1e-4)


@pytest.mark.parametrize("arch,opts", [("lstm-char", {}), ("online-blstm", {"subsample": 2})])
def test_ink_models_export_exactly(arch, opts, tmp_path):
    stem = make_ink_model(tmp_path, arch, **opts)
    model, _, _ = load_model(str(stem))
    out = export_onnx(stem, tmp_path / f"{arch}.onnx")
    sess = make_session(out)
    lengths = torch.tensor([31, 9, 20])
    feats = torch.zeros(3, 31, 6)
    for i, n in enumerate(lengths.tolist()):
        feats[i, :n] = torch.randn(n, 6)
    with torch.no_grad():
        ref = model(feats, lengths)
    got = sess.run(None, {"features": feats.numpy(), "lengths": lengths.numpy()})
    ref_lp = (ref[0] if isinstance(ref, tuple) else ref).log_softmax(-1).numpy()
    assert np.abs(got[0] - ref_lp).max() <= 1e-4
    if isinstance(ref, tuple):
        assert got[1].tolist() == ref[1].tolist() == [16, 5, 10]


def test_onnx_ink_recognizer_matches_torch(tmp_path):
    from inkpack.data.ink import Ink

    stem = make_ink_model(tmp_path, "lstm-char")
    out = export_onnx(stem, tmp_path / "char.onnx")
    ink = Ink([np.array([[0, 0, 0], [10, 1, 10], [20, 2, 20]], float), np.array([[5, -5, 40], [5, 9, 50]], float)])
    a, b = load(str(stem)).recognize(ink), load(str(out)).recognize(ink)
    assert [c[0] for c in a.candidates] == [c[0] for c in b.candidates]
    assert np.allclose([c[1] for c in a.candidates], [c[1] for c in b.candidates], atol=1e-5)


def test_refusals(tmp_path):
    from torch import nn

    from inkpack.models import build_model

    mdlstm = build_model("mdlstm", 3, hidden=[2, 3, 4], conv_features=[3, 5])  # its entry: no exporter, a reason
    with pytest.raises(InkpackError, match="MDLSTM models cannot be exported"):
        export_onnx(mdlstm, tmp_path / "md.onnx")
    with pytest.raises(InkpackError, match="no exporter for Linear"):  # not a registered architecture
        export_onnx(nn.Linear(2, 2), tmp_path / "lin.onnx")
    with pytest.raises(InkpackError, match=r"\.onnx"):
        export_onnx(nn.Linear(2, 2), tmp_path / "x.bin")
    with pytest.raises(InkpackError, match="not found"):
        open_recognizer(tmp_path / "missing.onnx")


def test_every_line_of_a_mixed_batch_equals_it_alone(tiny_model, exported):
    """Every line, not only the widest: a shorter line's padding must not reach its last frames
    through the convolutions and ceil-mode pools (the export traces the model's masks)."""
    _, cfg, _ = load_model(str(tiny_model))
    h = cfg["options"]["height"]
    sess = make_session(exported)
    widths = [200, 80, 37, 13, 1]
    images, w = _batch(widths, h)
    both, n = sess.run(None, {"images": images.numpy(), "widths": w.numpy()})
    for i, wi in enumerate(widths):
        alone, m = sess.run(None, {"images": images[i : i + 1, :, :, :wi].numpy(), "widths": w[i : i + 1].numpy()})
        assert m[0] == n[i]
        assert np.abs(both[: n[i], i] - alone[: m[0], 0]).max() <= 1e-5, f"line {i} (width {wi})"


def test_int8_onnx_recognizer_gives_each_line_what_it_gives_alone(tiny_model, tmp_path):
    """int8 activations take one scale per call, so the int8 runtime reads lines one by one."""
    i8 = export_onnx(tiny_model, tmp_path / "t8.onnx", int8=True)
    rec = open_recognizer(i8)
    assert rec.per_example
    h = rec.config["preprocessing"]["height"] if "preprocessing" in rec.config else 32
    images, w = _batch([90, 31, 7], h, seed=3)
    lines = [images[i, :, :, : int(w[i])] for i in range(3)]
    both, n = rec.logits(lines)
    for i, x in enumerate(lines):
        alone, m = rec.logits([x])
        assert torch.equal(both[: n[i], i], alone[: m[0], 0])
