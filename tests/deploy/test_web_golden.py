"""One source of truth for the page's preprocessing: the Python code writes golden vectors (ink
features, normalized line pixels, gray conversion, CTC decoding, top-k, int8 ONNX logits) and the
page's JavaScript (``deploy/web/recognize.js`` and the vendored onnxruntime-web, run by node) must
reproduce them."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import CHAR_SYMBOLS, make_ink_model, make_line_model
from PIL import Image

from inkpack.api import char_positions
from inkpack.data.images import load_gray, prepare_line, to_ink
from inkpack.decode.greedy import greedy_with_alignment
from inkpack.infer.ink_preprocess import ink_features, preprocess_config
from inkpack.infer.ink_preprocess import to_ink as ink_of
from inkpack.infer.preprocess import line_to_u8, u8_to_tensor

WEB = Path(__file__).resolve().parents[2] / "src" / "inkpack" / "deploy" / "web"
CHECK = Path(__file__).resolve().parent / "web_golden_check.js"
NODE = shutil.which("node") or shutil.which("nodejs")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the page's JavaScript cannot run")


def _strokes(rng: np.random.Generator) -> list[list[list[float]]]:
    """Pen strokes as the page sends them: jittery paths with repeated points, straight runs
    (collinear points to drop) and one-point strokes (dots)."""
    out = []
    for _ in range(int(rng.integers(1, 5))):
        n = int(rng.choice([1, 2, 7, 40]))
        start = rng.uniform(0, 400, 2)
        steps = rng.normal(0, 6, (n, 2))
        steps[: n // 3] = steps[0]  # a straight run
        xy = start + np.cumsum(steps, 0)
        if n > 3:
            xy[2] = xy[1]  # a repeated point
        t = np.cumsum(rng.integers(5, 20, n))
        out.append([[round(float(x), 1), round(float(y), 1), int(tt)] for (x, y), tt in zip(xy, t)])
    return out


def _line_gray(rng: np.random.Generator, h: int, w: int, dark: bool) -> np.ndarray:
    g = np.full((h, w), 235, np.float64) + rng.normal(0, 6, (h, w))
    for _ in range(max(1, w // 15)):  # ink blobs
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        g[max(0, y - h // 4): y + h // 4, max(0, x - 3): x + 3] = rng.uniform(10, 90)
    g = np.clip(np.round(g), 0, 255).astype(np.uint8)
    return 255 - g if dark else g


def _vectors(tmp: Path) -> tuple[dict, dict]:
    rng = np.random.default_rng(23)
    inks, expect_inks = [], []
    cfgs = [{}, {"min_dist": 0.06}, {"center": "bbox", "scale": "y_std", "min_dist": 0.1, "max_cos": 0.95},
            {"scale": "max_side", "min_dist": 0.0}]
    # the rule's boundaries, met exactly: a repeated point (distance 0 >= min_dist 0) and points in
    # line on an axis (cosine exactly 1 <= max_cos 1) are kept
    edge = ([[[0, 100, 0], [0, 100, 5], [10, 100, 9], [20, 100, 14], [30, 100, 20], [30, 130, 30]], [[5, 5, 40]]],
            {"min_dist": 0.0, "max_cos": 1.0})
    for i in range(13):
        strokes, pcfg = (_strokes(rng), cfgs[i % len(cfgs)]) if i < 12 else edge
        feats, px = ink_features(ink_of({"strokes": strokes}), preprocess_config({"preprocessing": pcfg}))
        inks.append({"strokes": strokes, "pcfg": pcfg})
        expect_inks.append({"features": feats, "point_x": px})
    images, expect_images = [], []
    # shrink (INTER_AREA, integer and fractional factors; w * 48 / h = 394.5 rounds to even), grow
    # (INTER_LINEAR), same height, light on dark
    for h, w, dark in [(96, 789, False), (96, 791, False), (67, 301, False), (150, 233, True), (48, 120, False),
                       (31, 170, False), (20, 9, True), (110, 1, False)]:
        g = _line_gray(rng, h, w, dark)
        images.append({"gray": g.ravel().tolist(), "width": w, "height": h, "target": 48})
        prepared = u8_to_tensor(line_to_u8(prepare_line(g, 48)))[0].numpy()
        expect_images.append({"to_ink": to_ink(g), "data": prepared})
    gray, expect_gray = [], []
    for w, h in [(7, 5), (16, 3)]:
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[0, :, 3] = 255
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
        gray.append({"rgba": rgba.ravel().tolist(), "width": w, "height": h})
        expect_gray.append(load_gray(buf.getvalue(), name="rgba.png"))
    ctc, expect_ctc, symbols = [], [], "abcdefg"
    for t, length in [(30, 30), (41, 25), (1, 1)]:
        lp = rng.normal(0, 2, (t, 8)).astype(np.float32)
        lp[rng.random(t) < 0.4, 0] += 4  # blanks between characters
        al = greedy_with_alignment(lp, length)
        ctc.append({"log_probs": lp.ravel().tolist(), "T": t, "K": 8, "length": length, "symbols": symbols,
                    "width_factor": 4, "resized_width": 4 * t - 2, "source_width": 8 * t + 3})
        expect_ctc.append({"labels": al.labels, "confidences": al.confidences, "starts": al.starts,
                           "ends": al.ends, "text": "".join(symbols[k - 1] for k in al.labels),
                           "positions": [list(p) for p in char_positions(al.starts, al.ends, 4, 4 * t - 2, 8 * t + 3)]})
    logits = rng.normal(0, 3, 10).astype(np.float32)
    topk = [{"logits": logits.tolist(), "k": 4, "symbols": "abcdefghi"}]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = [int(i) for i in np.argsort(-p, kind="stable")[:4]]
    expect_topk = [[{"label": i, "text": "abcdefghi"[i - 1], "probability": float(p[i])} for i in order if i > 0]]
    models, expect_models = _model_vectors(tmp, rng)
    vectors = {"inks": inks, "images": images, "gray": gray, "ctc": ctc, "topk": topk, "models": models}
    expected = {"inks": expect_inks, "images": expect_images, "gray": expect_gray, "ctc": expect_ctc,
                "topk": expect_topk, "models": expect_models}
    return vectors, expected


def _model_vectors(tmp: Path, rng: np.random.Generator) -> tuple[list, list]:
    """int8 ONNX of tiny character, line-image and online line models; their logits from Python's ORT."""
    import onnx

    ort = pytest.importorskip("onnxruntime")
    from inkpack.deploy.export import export_onnx

    char = export_onnx(make_ink_model(tmp / "m"), tmp / "char.onnx", int8=True)
    line = export_onnx(make_line_model(tmp / "m"), tmp / "line.onnx", int8=True)
    h = json.loads((tmp / "line.onnx.json").read_text())["onnx"]["height"]
    online = export_onnx(make_ink_model(tmp / "m", arch="online-blstm"), tmp / "online.onnx", int8=True)
    cases = [(char, {"features": rng.normal(0, 1, (1, 23, 6)).astype(np.float32), "lengths": np.array([23])}),
             (line, {"images": rng.random((1, 1, h, 57)).astype(np.float32), "widths": np.array([57])}),
             (online, {"features": rng.normal(0, 1, (1, 31, 6)).astype(np.float32), "lengths": np.array([31])})]
    vectors, expected = [], []
    for path, feeds in cases:
        out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        names = [o.name for o in onnx.load(str(path)).graph.output]
        vectors.append({"path": str(path), "inputs": {k: {"dtype": "int64" if v.dtype == np.int64 else "float32",
                                                          "shape": list(v.shape), "data": v.ravel().tolist()}
                                                      for k, v in feeds.items()}})
        expected.append(dict(zip(names, out)))
    return vectors, expected


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden")
    vectors, expected = _vectors(tmp)
    (tmp / "vectors.json").write_text(json.dumps(vectors))
    p = subprocess.run([NODE, str(CHECK), str(WEB), str(tmp / "vectors.json"), str(tmp / "js.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return expected, json.loads((tmp / "js.json").read_text())


def test_ink_features_match_python(golden):
    expected, js = golden
    assert CHAR_SYMBOLS  # the tiny char model's alphabet (used in the logits case)
    for want, got in zip(expected["inks"], js["inks"]):
        assert got["length"] == len(want["features"]) > 0  # the same points kept
        np.testing.assert_allclose(np.reshape(got["features"], (-1, 6)), want["features"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got["point_x"], want["point_x"])


def test_line_pixels_match_python(golden):
    expected, js = golden
    for want, got in zip(expected["images"], js["images"]):
        np.testing.assert_allclose(got["to_ink"], want["to_ink"].ravel(), rtol=0, atol=1e-6)
        h, w = want["data"].shape
        assert (got["width"], len(got["data"])) == (w, h * w)
        diff = np.abs(np.asarray(got["data"]) - want["data"].ravel())
        # 8-bit values: the same, but for a rare float32 rounding tie at a half level (one step of 1/255)
        assert diff.max() <= 1 / 255 + 1e-6 and (diff > 1e-6).mean() <= 1e-3


def test_gray_conversion_matches_pil(golden):
    expected, js = golden
    for want, got in zip(expected["gray"], js["gray"]):
        np.testing.assert_array_equal(got, want.ravel())


def test_ctc_greedy_and_topk_match_python(golden):
    expected, js = golden
    for want, got in zip(expected["ctc"], js["ctc"]):
        for k in ("labels", "starts", "ends", "text", "positions"):
            assert got[k] == want[k], k
        np.testing.assert_allclose(got["confidences"], want["confidences"], rtol=1e-6)
    for want, got in zip(expected["topk"], js["topk"]):
        assert [c["label"] for c in got] == [c["label"] for c in want]
        assert [c["text"] for c in got] == [c["text"] for c in want]
        np.testing.assert_allclose([c["probability"] for c in got], [c["probability"] for c in want], rtol=1e-5)


def test_int8_onnx_logits_in_the_browser_runtime_match_python(golden):
    expected, js = golden
    for want, got in zip(expected["models"], js["models"]):
        for name, ref in want.items():
            assert list(got[name]["shape"]) == list(ref.shape)
            a = np.asarray(got[name]["data"]).reshape(ref.shape)
            if ref.dtype == np.int64:
                np.testing.assert_array_equal(a, ref)
            else:
                np.testing.assert_allclose(a, ref, rtol=0, atol=2e-3)
                assert (a.argmax(-1) == ref.argmax(-1)).all()
