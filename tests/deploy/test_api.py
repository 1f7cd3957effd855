"""inkpack.api: load, recognize images (every input type) and lists, confidences, positions, threads."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import gray_of, line_png, make_ink_model, make_line_model
from PIL import Image

from inkpack.api import Recognition, Recognizer, char_positions, load
from inkpack.data.images import prepare_line
from inkpack.errors import BadSampleError, InkpackError
from inkpack.models.io import load_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_line_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def rec(tiny_model) -> Recognizer:
    return load(str(tiny_model))


def _reference(tiny_model, gray: np.ndarray) -> tuple[str, list[float], list[tuple[int, int]]]:
    """Independent reading of one line: a plain loop over the best path of the torch model."""
    model, cfg, alphabet = load_model(str(tiny_model))
    img = prepare_line(gray, cfg["preprocessing"]["height"])
    with torch.no_grad():
        logits, n = model(torch.from_numpy(img)[None, None], None, torch.tensor([img.shape[1]]))
    p = logits[: int(n[0]), 0].softmax(-1).numpy().astype(np.float64)
    best = p.argmax(1)
    text, conf, frames = "", [], []
    prev = 0
    for t, k in enumerate(best):
        if k != 0 and k != prev:
            text += alphabet.symbols[k - 1]
            conf.append(p[t, k])
            frames.append([t, t])
        elif k != 0 and k == prev:
            conf[-1] = max(conf[-1], p[t, k])
            frames[-1][1] = t
        prev = k
    scale = gray.shape[1] / img.shape[1]
    pos = [(int(np.floor(s * 4 * scale)), int(min(gray.shape[1], np.ceil(min((e + 1) * 4, img.shape[1]) * scale))))
           for s, e in frames]
    return text, conf, pos


def test_recognize_matches_independent_reading(rec, tiny_model):
    png = line_png("hello world", height=48)
    r = rec.recognize(png)
    text, conf, pos = _reference(tiny_model, gray_of(png))
    assert isinstance(r, Recognition) and text  # the tiny model reads something
    assert r.text == text
    assert np.allclose(r.confidences, conf, atol=1e-5)
    assert r.positions == pos
    assert len(r.text) == len(r.confidences) == len(r.positions)
    assert all(0 < c <= 1 for c in r.confidences)
    width = gray_of(png).shape[1]
    assert all(0 <= a < b <= width for a, b in r.positions)
    assert [a for a, _ in r.positions] == sorted(a for a, _ in r.positions)


def test_char_positions_hand_computed():
    # frames [0,1] and [3,5] at width factor 4; resized width 20 from a 40-pixel-wide input
    assert char_positions([0, 3], [1, 5], 4, 20, 40) == [(0, 16), (24, 40)]


def test_every_input_type_reads_the_same(rec, tmp_path):
    png = line_png("kew gardens")
    path = tmp_path / "line.png"
    path.write_bytes(png)
    gray = gray_of(png)
    inputs = [png, bytearray(png), str(path), path, gray, gray.astype(np.float32) / 255.0,
              np.repeat(gray[:, :, None], 3, axis=2), Image.open(io.BytesIO(png))]
    results = [rec.recognize(x) for x in inputs]
    for r in results[1:]:
        assert r.text == results[0].text and r.positions == results[0].positions
        assert np.allclose(r.confidences, results[0].confidences, atol=1e-6)


def test_list_is_batched_in_input_order(rec):
    pngs = [line_png("tea"), line_png("a much longer line of text"), line_png("tea")]
    out = rec.recognize(pngs)
    assert isinstance(out, list) and len(out) == 3
    assert out[0] == out[2]  # same input, same result, wherever it sits
    # the widest line of a batch is not padded, so it reads exactly as alone
    alone = rec.recognize(pngs[1])
    assert out[1].text == alone.text and np.allclose(out[1].confidences, alone.confidences, atol=1e-5)
    assert rec.recognize([]) == []


def test_threads_get_the_same_results_and_forward_is_serialized(tiny_model):
    r = load(str(tiny_model))
    model = r.model
    state = {"active": 0, "overlap": 0}
    orig = model.forward

    def guarded(*a, **k):
        state["active"] += 1
        if state["active"] > 1:
            state["overlap"] += 1
        time.sleep(0.002)
        try:
            return orig(*a, **k)
        finally:
            state["active"] -= 1

    model.forward = guarded
    pngs = [line_png(t) for t in ("hello", "tea time", "kew", "dear sir")]
    expected = [r.recognize(p) for p in pngs]
    errors, results = [], {}

    def work(i):
        try:
            for j in range(4):
                results[(i, j)] = r.recognize(pngs[(i + j) % 4])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert state["overlap"] == 0
    for (i, j), res in results.items():
        assert res == expected[(i + j) % 4]


def test_bad_inputs_are_one_line_errors(rec, tiny_model, tmp_path):
    with pytest.raises(InkpackError, match="unsupported input type"):
        rec.recognize(12345)
    with pytest.raises(BadSampleError, match="file not found"):
        rec.recognize(str(tmp_path / "nope.png"))
    with pytest.raises(BadSampleError, match="not an image"):
        rec.recognize(b"definitely not an image")
    with pytest.raises(InkpackError, match="image model"):
        rec.recognize({"strokes": [[[0, 0], [1, 1]]]})
    small = load(str(tiny_model), max_pixels=100)
    with pytest.raises(BadSampleError, match="too large"):
        small.recognize(line_png("hello"))
    with pytest.raises(BadSampleError, match="2-D"):
        rec.recognize(np.zeros((2, 3, 4, 5)))


def test_default_model_comes_from_models_dir(tmp_path, monkeypatch):
    make_line_model(tmp_path, name="hooker-darknet", seed=3)
    monkeypatch.setenv("INKPACK_MODELS", str(tmp_path))
    r = load()
    assert r.name == "hooker-darknet" and r.input_kind == "image"
    with pytest.raises(InkpackError, match="not found"):
        load(str(tmp_path / "missing"))


def test_char_model_candidates(tmp_path):
    from inkpack.data.ink import Ink
    from inkpack.infer.ink_preprocess import ink_features, preprocess_config

    stem = make_ink_model(tmp_path, "lstm-char")
    r = load(str(stem))
    assert r.input_kind == "char"
    ink = Ink([np.array([[0, 0, 0], [30, 2, 10], [60, 1, 20]], float)])
    res = r.recognize(ink)
    model, cfg, _ = load_model(str(stem))
    feats = torch.from_numpy(ink_features(ink, preprocess_config(cfg))[0])[None]
    with torch.no_grad():
        p = model(feats, torch.tensor([feats.shape[1]]))[0].softmax(-1).numpy()
    expected = sorted(((ch, float(p[i + 1])) for i, ch in enumerate("一丨〇")), key=lambda c: -c[1])
    assert [c for c, _ in res.candidates] == [c for c, _ in expected]  # class 0 is never a candidate
    assert np.allclose([q for _, q in res.candidates], [q for _, q in expected], atol=1e-6)
    assert res.text == expected[0][0]
    as_dict = r.recognize({"strokes": [[[0, 0], [30, 2], [60, 1]]]})
    assert as_dict.text == res.text
    listed = r.recognize([ink, {"strokes": [[[0, 0], [0, 40]], [[5, 5], [9, 9]]]}, ink])
    assert listed[0] == listed[2] and np.allclose(listed[0].confidences, res.confidences, atol=1e-6)


def test_online_line_model_positions(tmp_path):
    from inkpack.data.ink import Ink

    r = load(str(make_ink_model(tmp_path, "online-blstm")))
    xs = np.linspace(0, 500, 80)
    ink = Ink([np.column_stack([xs, 20 * np.sin(xs / 15), np.arange(80) * 10.0])])
    res = r.recognize(ink)
    assert len(res.text) == len(res.confidences) == len(res.positions)
    assert all(0 <= a <= b <= 500 for a, b in res.positions)
