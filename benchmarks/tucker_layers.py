"""Tucker-2 faster, not only smaller (issue 22, item 3): per-layer single-thread latency of each k×k conv
of the shipped student (models/hooker-darknet) and teacher (models/hooker-vgg), dense against Tucker-2 at
the ranks the recipe picks (energy 0.9, or --energies), in PyTorch and ONNX Runtime; then the whole model
dense, all-Tucker (the existing recipe) and Tucker only where the per-layer table says it is faster
(inkpack.compress.tucker_select), timed in turn within each round in both runtimes, with CER on the first
--cer-lines val lines (no fine-tuning after decomposition: the CER change is the raw approximation cost).

The per-layer sum of (dense - Tucker) over the selected layers is the cost model's predicted saving; the
table puts it beside the measured whole-model saving. Models are the shipped ones, not converged ones.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED, machine, parser, table, write_json

from inkpack.compress.measure import accuracy, example_input
from inkpack.compress.report import count_flops, count_params, measure_latencies
from inkpack.compress.retrain import Task
from inkpack.compress.tucker import tucker_decompose
from inkpack.compress.tucker_select import layer_table, select_ranks, tucker_where_faster
from inkpack.deploy.export import export_onnx
from inkpack.models.io import load_model

MODELS = ("hooker-darknet", "hooker-vgg")


def ort_latencies(models: dict, cfg: dict, example, runs: int, tmp: Path) -> dict[str, float]:
    """Median ms per model through ONNX Runtime (fp32, one thread), the models run in turn each round."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sessions = {}
    for i, (name, m) in enumerate(models.items()):
        path = export_onnx(m, tmp / f"m{i}.onnx", config=cfg)
        sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {"images": example[0].contiguous().numpy(), "widths": example[2].numpy()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    order = list(sessions.items())
    for i in range(runs + 3):  # the order rotates each pass: no model always runs first
        for k, s in order[i % len(order):] + order[:i % len(order)]:
            t0 = time.perf_counter()
            s.run(None, feed)
            if i >= 3:
                times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def one_model(name: str, args, out: dict) -> list[tuple]:
    model, cfg, alphabet = load_model(name)
    val = SHARED / "data/hooker/val.tsv"
    task = Task(cfg, alphabet, str(val), limit=args.cer_lines or 1, split="val") if val.exists() else None
    if task is not None:
        ex = example_input(model, cfg, Task(cfg, alphabet, str(val), split="val"))
    else:  # no data: a blank line of the median hooker width
        ex = (torch.zeros(1, 1, model.height, 1200), None, torch.tensor([1200]))
    energies = [float(e) for e in args.energies.split(",")]
    t0 = time.perf_counter()
    tab = layer_table(model, ex, energies, runs=args.runs, rounds=args.rounds)
    tab["model"], tab["example_width"] = name, int(ex[2][0])
    variants = {"dense": model}
    all_tk = copy.deepcopy(model)
    all_changes = tucker_decompose(all_tk, 0.9)
    variants["tucker all (recipe, energy 0.9)"] = all_tk
    picked = {}
    for backend in ("torch", "onnx"):
        m = copy.deepcopy(model)
        ch = tucker_where_faster(m, tab, backend)
        picked[backend] = select_ranks(tab, backend)
        variants[f"tucker where faster ({backend})"] = m
        tab[f"selected_{backend}"] = {k: list(v) for k, v in picked[backend].items()}
        tab[f"changes_{backend}"] = [f"{c.name}: {c.detail}" for c in ch]
    tab["changes_all"] = [f"{c.name}: {c.detail}" for c in all_changes]
    rows = {k: {"params": count_params(m), "gflops": count_flops(m, ex) / 1e9} for k, m in variants.items()}
    torch_ms = {k: [] for k in variants}
    ort_ms = {k: [] for k in variants}
    with tempfile.TemporaryDirectory(prefix="inkpack-tl-") as tmp:
        for _ in range(args.rounds):  # several rounds of the models in turn, both runtimes
            for k, v in measure_latencies(variants, ex, runs=args.runs, threads=1).items():
                torch_ms[k].append(v)
            for k, v in ort_latencies(variants, cfg, ex, args.runs, Path(tmp)).items():
                ort_ms[k].append(v)
    for k, r in rows.items():
        r["torch_ms"] = statistics.median(torch_ms[k])
        r["onnx_ms"] = statistics.median(ort_ms[k])
        if args.cer_lines and task is not None:
            r.update(accuracy(variants[k], cfg, alphabet, task))
    base = rows["dense"]
    for backend in ("torch", "onnx"):
        pred = sum(lay["dense_ms"][backend] - c["ms"][backend] for lay in tab["layers"] for c in lay["candidates"]
                   if picked[backend].get(lay["name"]) == tuple(c["ranks"]))
        key = f"tucker where faster ({backend})"
        rows[key]["predicted_saving_ms"] = pred
        rows[key]["measured_saving_ms"] = base[f"{backend}_ms"] - rows[key][f"{backend}_ms"]
    for r in rows.values():
        r["torch_speedup"] = base["torch_ms"] / r["torch_ms"]
        r["onnx_speedup"] = base["onnx_ms"] / r["onnx_ms"]
        r["size_ratio"] = base["params"] / r["params"]
    out["tables"][name] = tab
    out["models"][name] = rows
    out["seconds"][name] = time.perf_counter() - t0
    layer_rows = [(name, lay["name"], "x".join(map(str, lay["weight_shape"])), "x".join(map(str, lay["input_shape"][1:])),
                   c["energy"], f"{c['ranks'][0]},{c['ranks'][1]}", f"{lay['dense_params'] / c['params']:.2f}",
                   f"{lay['dense_ms']['torch']:.3f}", f"{c['ms']['torch']:.3f}", f"{c['speedup']['torch']:.2f}",
                   f"{lay['dense_ms']['onnx']:.3f}", f"{c['ms']['onnx']:.3f}", f"{c['speedup']['onnx']:.2f}")
                  for lay in tab["layers"] for c in lay["candidates"]]
    print(table(layer_rows, ("model", "layer", "weight", "input CxHxW", "energy", "ranks", "params x",
                             "torch dense", "torch tk", "x", "ort dense", "ort tk", "x")))
    return [(name, k, f"{r['params'] / 1e6:.3f}M", f"{r['size_ratio']:.2f}", f"{r['gflops']:.3f}",
             f"{r['torch_ms']:.1f}", f"{r['torch_speedup']:.2f}", f"{r['onnx_ms']:.1f}", f"{r['onnx_speedup']:.2f}",
             f"{r['cer']:.4f}" if "cer" in r else "-",
             f"{r['predicted_saving_ms']:.1f}/{r['measured_saving_ms']:.1f}" if "predicted_saving_ms" in r else "-")
            for k, r in rows.items()]


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated shipped model names")
    ap.add_argument("--energies", default="0.9", help="candidate Tucker energies per layer (comma-separated)")
    ap.add_argument("--runs", type=int, help="timed passes per round (default 20, quick 5)")
    ap.add_argument("--rounds", type=int, help="rounds (default 5, quick 2)")
    ap.add_argument("--cer-lines", type=int, help="val lines for CER (default 100, quick 20; 0 skips)")
    args = ap.parse_args()
    args.runs = args.runs or (5 if args.quick else 20)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.cer_lines = (20 if args.quick else 100) if args.cer_lines is None else args.cer_lines
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out: dict = {"quick": args.quick, "machine": machine(), "energies": args.energies, "runs": args.runs,
                 "rounds": args.rounds, "cer_lines": args.cer_lines, "tables": {}, "models": {}, "seconds": {},
                 "note": "shipped models (not converged); no fine-tuning after decomposition"}
    rows = []
    for name in args.models.split(","):
        rows += one_model(name.strip(), args, out)
    print(table(rows, ("model", "variant", "params", "Cr", "GFLOPs", "torch ms", "x", "ort ms", "x", "CER",
                       "saving pred/meas ms")))
    print(json.dumps({m: {k: round(r["torch_speedup"], 3) for k, r in rs.items()} for m, rs in out["models"].items()}))
    write_json(args.json, out)


if __name__ == "__main__":
    main()
