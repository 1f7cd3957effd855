"""Compressing the DBLSTM of CNN-DBLSTM students (issue 22, item 2): which stage buys what.

Each model file given (the shipped student, and stages written by `inkpack compress`: low-rank LSTM
(`--recipe svd --svd-ranks lstm=IH:HH`, with or without CTC retraining), a narrower DBLSTM distilled
with LSTM-L2 (`--recipe distill --student-lstm-hidden H --criterion lstm-l2`)) is loaded from its file
and measured: parameters, file size, GFLOPs (low-rank LSTM counted in factored form), single-thread
latency on the median-width hooker val line in PyTorch fp32 and in ONNX Runtime fp32 and int8 (the
deployment path; low-rank models through inkpack.compress.lowrank_onnx, whose graph keeps the input
factor but rebuilds the recurrent matrix dense), all models of a runtime run in turn within each round,
and CER on the val set in PyTorch and through the ONNX int8 file (greedy decoding).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED, machine, parser, table, write_json

from inkpack.compress.factored import LowRankLSTM
from inkpack.compress.lowrank_onnx import export_lowrank_onnx
from inkpack.compress.measure import accuracy, example_input
from inkpack.compress.report import count_flops, count_params, measure_latencies
from inkpack.compress.retrain import Task
from inkpack.decode.greedy import greedy_decode
from inkpack.deploy.export import export_onnx
from inkpack.metrics import ErrorCounts
from inkpack.models.io import load_model, resolve


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_files(model, cfg, tmp: Path, key: str) -> dict[str, Path]:
    out = {}
    for int8 in (False, True):
        path = tmp / f"{key}{'-int8' if int8 else ''}.onnx"
        if isinstance(getattr(model, "lstm", None), LowRankLSTM):
            out["int8" if int8 else "fp32"] = export_lowrank_onnx(model, path, int8=int8)
        else:
            out["int8" if int8 else "fp32"] = export_onnx(model, path, int8=int8, config=cfg)
    return out


def ort_cer(sess, task: Task, alphabet) -> float:
    counts = ErrorCounts()
    for i in range(task.n):
        im = task.batcher.image(i)[None, None].astype("float32")
        lp, ln = sess.run(None, {"images": im, "widths": [im.shape[-1]]})
        counts.add(alphabet.decode(greedy_decode(lp, ln)[0]), task.lines.texts[i])
    return counts.cer


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--models", default="hooker-darknet",
                    help="comma-separated NAME=PATH or PATH (model names or files); the first is the baseline")
    ap.add_argument("--runs", type=int, help="timed passes per round (default 20, quick 5)")
    ap.add_argument("--rounds", type=int, help="rounds (default 5, quick 2)")
    ap.add_argument("--cer-lines", type=int, help="val lines for CER (default all, quick 30; 0 skips)")
    args = ap.parse_args()
    runs, rounds = args.runs or (5 if args.quick else 20), args.rounds or (2 if args.quick else 5)
    cer_lines = (30 if args.quick else None) if args.cer_lines is None else args.cer_lines
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    specs = [(m.split("=", 1) if "=" in m else (Path(m).name, m)) for m in args.models.split(",") if m.strip()]
    loaded = {k: load_model(p) for k, p in specs}
    _, cfg0, alphabet = next(iter(loaded.values()))
    val = str(SHARED / "data/hooker/val.tsv")
    ex = example_input(next(iter(loaded.values()))[0], cfg0, Task(cfg0, alphabet, val, split="val"))
    task = Task(cfg0, alphabet, val, limit=cer_lines, split="val") if cer_lines != 0 else None
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="inkpack-lstmc-") as tmp:
        files, sessions = {}, {}
        for key, (model, cfg, _) in loaded.items():
            stem = resolve(dict(specs)[key])
            files[key] = onnx_files(model, cfg, Path(tmp), key)
            sessions[key] = {v: session(p) for v, p in files[key].items()}
            lstm = model.lstm
            rows[key] = {"file": str(stem), "params": count_params(model), "lstm_params": count_params(lstm),
                         "lstm": f"lowrank {sorted(set(lstm.ranks()))}" if isinstance(lstm, LowRankLSTM)
                         else f"dense h={lstm.hidden_size}",
                         "size_mb": stem.with_suffix(".safetensors").stat().st_size / 1e6,
                         "onnx_mb": files[key]["fp32"].stat().st_size / 1e6,
                         "onnx_int8_mb": files[key]["int8"].stat().st_size / 1e6,
                         "gflops": count_flops(model, ex) / 1e9,
                         "notes": (cfg.get("compression") or {}).get("notes", [])}
        feed = {"images": ex[0].contiguous().numpy(), "widths": ex[2].numpy()}
        torch_ms = {k: [] for k in loaded}
        seq_ms = {k: [] for k in loaded}  # the DBLSTM alone (torch), on the model's own feature sequence
        with torch.inference_mode():
            feats = {k: (m.features(ex[0], ex[2]), m.output_lengths(ex[2])) for k, (m, _, _) in loaded.items()}
        seq_fns = {k: (lambda *_, m=m, f=feats[k]: m.sequence(*f)) for k, (m, _, _) in loaded.items()}
        ort_ms = {(k, v): [] for k in loaded for v in ("fp32", "int8")}
        for _ in range(rounds):
            for k, ms in measure_latencies({k: m for k, (m, _, _) in loaded.items()}, ex, runs=runs).items():
                torch_ms[k].append(ms)
            for k, ms in measure_latencies(seq_fns, ex, runs=runs).items():
                seq_ms[k].append(ms)
            times = {kv: [] for kv in ort_ms}
            order = list(ort_ms)
            for i in range(runs + 3):  # the order rotates each pass: no model always runs first
                for (k, v) in order[i % len(order):] + order[:i % len(order)]:
                    s = time.perf_counter()
                    sessions[k][v].run(None, feed)
                    if i >= 3:
                        times[(k, v)].append((time.perf_counter() - s) * 1000)
            for kv, t in times.items():
                ort_ms[kv].append(statistics.median(t))
        for k, (model, cfg, _) in loaded.items():
            r = rows[k]
            r["torch_ms"] = statistics.median(torch_ms[k])
            r["torch_dblstm_ms"] = statistics.median(seq_ms[k])
            r["ort_fp32_ms"] = statistics.median(ort_ms[(k, "fp32")])
            r["ort_int8_ms"] = statistics.median(ort_ms[(k, "int8")])
            # the least-disturbed round (a shared machine slows some rounds for everyone)
            r["round_min_ms"] = {"torch": min(torch_ms[k]), "ort_fp32": min(ort_ms[(k, "fp32")]),
                                 "ort_int8": min(ort_ms[(k, "int8")])}
            if task is not None:
                acc = accuracy(model, cfg, alphabet, task)
                r.update(cer=acc["cer"], wer=acc["wer"], lines=acc["lines"], cer_ort_int8=ort_cer(sessions[k]["int8"], task, alphabet))
    base = next(iter(rows.values()))
    for r in rows.values():
        r["size_ratio"] = base["size_mb"] / r["size_mb"]
        r["int8_size_ratio"] = base["size_mb"] / r["onnx_int8_mb"]
        r["flops_ratio"] = base["gflops"] / r["gflops"]
        r["torch_speedup"] = base["torch_ms"] / r["torch_ms"]
        r["ort_int8_speedup"] = base["torch_ms"] / r["ort_int8_ms"]
    print(table([(k, r["lstm"], f"{r['params'] / 1e6:.3f}M", f"{r['lstm_params'] / 1e6:.3f}M", f"{r['size_mb']:.2f}",
                  f"{r['onnx_int8_mb']:.2f}", f"{r['gflops']:.3f}", f"{r['torch_ms']:.1f} ({r['round_min_ms']['torch']:.1f})",
                  f"{r['torch_dblstm_ms']:.1f}",
                  f"{r['ort_fp32_ms']:.1f} ({r['round_min_ms']['ort_fp32']:.1f})",
                  f"{r['ort_int8_ms']:.1f} ({r['round_min_ms']['ort_int8']:.1f})", f"{r['ort_int8_speedup']:.2f}",
                  f"{r['cer']:.4f}" if "cer" in r else "-", f"{r['cer_ort_int8']:.4f}" if "cer" in r else "-")
                 for k, r in rows.items()],
                ("stage", "LSTM", "params", "LSTM params", "MB", "int8 onnx MB", "GFLOPs", "torch ms (best round)", "torch DBLSTM ms",
                 "ort ms (best round)",
                 "ort int8 ms (best round)", "x (vs base torch)", "CER", "CER ort int8")))
    out = {"quick": args.quick, "machine": machine(), "runs": runs, "rounds": rounds, "example_width": int(ex[2][0]),
           "cer_lines": task.n if task is not None else 0, "rows": rows, "seconds": time.perf_counter() - t0,
           "note": "against the shipped (not converged) hooker-darknet; stages retrained briefly"}
    print(json.dumps({k: {"torch_speedup": round(r["torch_speedup"], 3), "cer": r.get("cer")} for k, r in rows.items()}))
    write_json(args.json, out)


if __name__ == "__main__":
    main()
