"""ONNX Runtime vs PyTorch on the Hooker validation lines: exactness, int8 speed and CER.

Measured side by side in one run, each line through every backend in turn (one thread each):
* parity: max |log-prob difference| of ORT fp32 vs PyTorch, per line (batch 1) and in mixed-width
  batches of 8 (file order, unsorted), and whether the greedy text is identical on every line;
  pass = max diff <= 1e-4 and identical text on all lines; for scale, both fp32 backends are
  also compared with the PyTorch model run in float64 (the float32 rounding noise of the model itself);
* speed: ms/line at batch 1, one thread: PyTorch fp32, ORT fp32, ORT int8 (dynamic quantization of
  LSTM + MatMul; convolutions stay fp32), with ratios to PyTorch;
* accuracy: CER/WER of each backend and the int8 CER change; file sizes.

    python benchmarks/onnx_parity.py [--quick] [--json OUT] [--model STEM] [--data TSV]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import write_json

from inkpack.data.formats.tsv import read_tsv
from inkpack.data.images import load_gray
from inkpack.deploy.export import export_onnx
from inkpack.errors import InkpackError
from inkpack.infer.recognizer import open_recognizer
from inkpack.metrics import ErrorCounts

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hooker" / "val.tsv"


def default_model() -> str:
    for stem in (ROOT / "models" / "hooker-darknet", ROOT / "runs" / "hooker-darknet" / "best"):
        if stem.with_suffix(".json").exists():
            return str(stem)
    raise InkpackError("no trained model: pass --model (models/hooker-darknet or runs/hooker-darknet/best)")


def load_lines(tsv: str, limit: int | None) -> tuple[list[np.ndarray], list[str], int]:
    records, errors = read_tsv(tsv)
    records = records[:limit] if limit else records
    grays, texts = [], []
    for r in records:
        grays.append(load_gray(r.path))
        texts.append(r.text)
    return grays, texts, len(errors)


def timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 40 lines only")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--model", help="model stem (default: models/hooker-darknet, else the training run's best)")
    ap.add_argument("--data", default=str(DATA))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = a.model or default_model()
    grays, refs, bad = load_lines(a.data, 40 if a.quick else None)
    tr = open_recognizer(model, threads=None, decoder="greedy")
    with tempfile.TemporaryDirectory(prefix="onnx-parity-") as tmp:
        f32 = export_onnx(model, Path(tmp) / "m.onnx")
        i8 = export_onnx(model, Path(tmp) / "m8.onnx", int8=True)
        sizes = {"torch_safetensors": Path(model).with_suffix(".safetensors").stat().st_size,
                 "onnx_fp32": f32.stat().st_size, "onnx_int8": i8.stat().st_size}
        ort32, ort8 = (open_recognizer(f, threads=1, decoder="greedy") for f in (f32, i8))
        res = run(tr, ort32, ort8, grays, refs)
    res.update({"model": str(model), "model_metrics": tr.config.get("metrics"), "data": a.data, "lines": len(grays), "unreadable_rows": bad,
                "quick": a.quick, "bytes": sizes, "threads": 1, "batch_size_timing": 1,
                "onnxruntime": __import__("onnxruntime").__version__, "torch": torch.__version__})
    report(res)
    write_json(a.json, res)
    return 0 if res["pass"] else 1


def run(tr, ort32, ort8, grays, refs) -> dict:
    prepared = [tr.prepare(g) for g in grays]
    names = ("torch", "ort_fp32", "ort_int8")
    backends = dict(zip(names, (tr, ort32, ort8)))
    for b in backends.values():  # warm-up
        b.logits(prepared[:1])
    secs = {n: 0.0 for n in names}
    texts = {n: [] for n in names}
    max_diff, max_diff8, same_text = 0.0, 0.0, 0
    vs64 = {"torch": 0.0, "ort_fp32": 0.0}
    for i, x in enumerate(prepared):
        outs = {}
        for k in range(3):  # rotate the order so drift on a shared machine hits all alike
            n = names[(i + k) % 3]
            (lp, ln), dt = timed(backends[n].logits, [x])
            secs[n] += dt
            outs[n] = (lp, ln)
            texts[n].append(backends[n].decode(lp, ln)[0])
        t_lp = outs["torch"][0]
        ref64 = f64_logprobs(tr.model, x)
        vs64["torch"] = max(vs64["torch"], float((t_lp.double() - ref64).abs().max()))
        vs64["ort_fp32"] = max(vs64["ort_fp32"], float((outs["ort_fp32"][0].double() - ref64).abs().max()))
        max_diff = max(max_diff, float((outs["ort_fp32"][0] - t_lp).abs().max()))
        max_diff8 = max(max_diff8, float((outs["ort_int8"][0] - t_lp).abs().max()))
        same_text += texts["ort_fp32"][-1] == texts["torch"][-1]
    batched = 0.0
    for s in range(0, len(prepared), 8):  # mixed widths, file order
        chunk = prepared[s : s + 8]
        a, _ = tr.logits(chunk)
        b, _ = ort32.logits(chunk)
        batched = max(batched, float((a - b).abs().max()))
    n = len(prepared)
    scores = {}
    for name in names:
        c = ErrorCounts()
        for h, r in zip(texts[name], refs):
            c.add(h, r)
        scores[name] = {"cer": c.cer, "wer": c.wer, "ms_per_line": 1000 * secs[name] / n}
    ms = {k: v["ms_per_line"] for k, v in scores.items()}
    agree8 = sum(a == b for a, b in zip(texts["ort_int8"], texts["ort_fp32"]))
    return {
        "fp32": {"max_abs_diff": max_diff, "max_abs_diff_batched": batched,
                 "identical_text_lines": same_text, "identical_text": same_text == n,
                 "torch_fp32_vs_float64": vs64["torch"], "ort_fp32_vs_float64": vs64["ort_fp32"]},
        "int8": {"max_abs_diff": max_diff8, "text_equal_to_fp32_lines": agree8,
                 "cer_change": scores["ort_int8"]["cer"] - scores["torch"]["cer"]},
        "scores": scores,
        "speedup_vs_torch": {k: ms["torch"] / v for k, v in ms.items()},
        "int8_speedup_vs_ort_fp32": ms["ort_fp32"] / ms["ort_int8"],
        "pass": bool(max(max_diff, batched) <= 1e-4 and same_text == n),
    }


_F64: dict = {}


def f64_logprobs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Log-probs of a float64 copy of ``model`` on one prepared line (the rounding-free reference)."""
    import copy

    from inkpack.batching import pad_collate

    key = id(model)
    if key not in _F64:
        _F64[key] = copy.deepcopy(model).double().eval()
    b = pad_collate([x])
    with torch.inference_mode():
        lp, _ = _F64[key](b.images.double(), b.heights, b.widths)
    return lp.log_softmax(-1)


def report(r: dict) -> None:
    print(f"model {r['model']}  lines {r['lines']}  (1 thread, batch 1)")
    print(f"{'backend':<10} {'ms/line':>8} {'x torch':>8} {'CER %':>7} {'WER %':>7} {'MB':>6}")
    mb = {"torch": r["bytes"]["torch_safetensors"], "ort_fp32": r["bytes"]["onnx_fp32"], "ort_int8": r["bytes"]["onnx_int8"]}
    for k, s in r["scores"].items():
        print(f"{k:<10} {s['ms_per_line']:>8.2f} {r['speedup_vs_torch'][k]:>8.2f} {100 * s['cer']:>7.2f} "
              f"{100 * s['wer']:>7.2f} {mb[k] / 1e6:>6.2f}")
    f = r["fp32"]
    print(f"ORT fp32 vs torch: max |diff| {f['max_abs_diff']:.2e} (batch 1), {f['max_abs_diff_batched']:.2e} "
          f"(mixed-width batches of 8); identical text on {f['identical_text_lines']}/{r['lines']} lines")
    print(f"vs the float64 model: torch fp32 {f['torch_fp32_vs_float64']:.2e}, ORT fp32 {f['ort_fp32_vs_float64']:.2e} "
          "(the float32 rounding noise of the model itself)")
    print(f"int8: max |diff| {r['int8']['max_abs_diff']:.3f}, same text as fp32 on "
          f"{r['int8']['text_equal_to_fp32_lines']}/{r['lines']}, CER change {100 * r['int8']['cer_change']:+.2f} points, "
          f"{r['int8_speedup_vs_ort_fp32']:.2f}x ORT fp32")
    print("PASS" if r["pass"] else "FAIL")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InkpackError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
