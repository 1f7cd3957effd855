"""`inkpack compress --recipe PRESET` outputs side by side (issue 22, items 2 and 5), and whether
unstructured sparsity of the DBLSTM pays in latency.

1. Every preset of ``inkpack.compress.recipe.PRESETS`` is built from its source model with the CLI
   (``python -m inkpack compress SOURCE --recipe NAME --out runs/hc-presets/NAME --data train.tsv
   --threads 1``; the retraining presets with their own step counts, ``--quick``: a few steps on
   64 lines), then one ``inkpack report`` (:func:`inkpack.compress.measure.report`) measures the
   source and every output from their files: CER on the hooker val lines (all 689, ``--quick`` 30),
   single-thread latency on the median-width line (the models run in turn within each round),
   file MB, parameters, GFLOPs; ratios are against the source, the shipped (not converged)
   ``models/hooker-darknet``.
2. Latency vs sparsity: the source's eight LSTM matrices pruned by magnitude (``Pruner``, one
   shot) to 0/50/75/90%, timed in PyTorch (whole model and the DBLSTM alone) and in ONNX Runtime
   fp32 and int8, all sparsities in turn within each round; plus one LSTM input matrix
   (512x256) times the example's feature sequence and one recurrent matrix-vector product,
   dense against ``torch.sparse`` CSR, to show what a sparse kernel would buy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, SHARED, machine, parser, table, write_json

from inkpack.compress.measure import accuracy, example_input, plot_report, report
from inkpack.compress.prune import Pruner
from inkpack.compress.recipe import PRESETS
from inkpack.compress.report import measure_latencies
from inkpack.compress.retrain import Task
from inkpack.deploy.export import export_onnx
from inkpack.models.io import load_model

TRAIN, VAL = SHARED / "data/hooker/train.tsv", SHARED / "data/hooker/val.tsv"
LSTM = "lstm.weight_*"


def build(name: str, out: Path, quick: bool, reuse: bool, oneshot: bool = False) -> dict:
    """One preset written by the CLI (``oneshot``: with ``--steps 0``, no retraining); returns its
    command line and build time."""
    preset = PRESETS[name]
    cmd = [sys.executable, "-m", "inkpack", "compress", preset["source"], "--recipe", name,
           "--out", os.path.relpath(out, REPO), "--threads", "1"]
    if preset.get("defaults"):  # a retraining preset
        cmd += ["--data", str(TRAIN)]
        if oneshot:
            cmd += ["--steps", "0"]
        elif quick:
            cmd += ["--steps", "3", "--finetune-steps", "2", "--limit", "64"]
    shown = " ".join(["inkpack"] + [os.path.relpath(c, REPO) if c.startswith(str(REPO.parent)) else c for c in cmd[3:]])
    if reuse and out.with_suffix(".json").exists():
        return {"command": shown, "seconds": None, "reused": True}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{shown} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"command": shown, "seconds": round(time.perf_counter() - t0, 1), "log": done.stdout.splitlines()[-3:]}


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def interleaved(fns: dict, runs: int, rounds: int) -> dict[str, float]:
    """Median over rounds of each round's median ms (`measure_latencies`: the callables in turn)."""
    per = {k: [] for k in fns}
    for _ in range(rounds):
        for k, ms in measure_latencies(fns, (), runs=runs).items():
            per[k].append(ms)
    return {k: statistics.median(v) for k, v in per.items()}


def sparsity_sweep(source: str, levels: list[float], task: Task | None, runs: int, rounds: int) -> dict[str, dict]:
    """The source with its LSTM matrices pruned one shot to each level: latency and CER."""
    _, cfg, alphabet = load_model(source)
    ex = example_input(load_model(source)[0], cfg, Task(cfg, alphabet, str(VAL), split="val"))
    models, rows = {}, {}
    for s in levels:
        model, _, _ = load_model(source)
        pruner = Pruner(model, {LSTM: s}, 0)
        pruner.finish()
        key = f"lstm {s:.0%}"
        models[key] = model.eval()
        rows[key] = {"target": s, "lstm_sparsity": round(pruner.sparsity()["total"], 4)}
    with torch.inference_mode():
        feats = {k: (m.features(ex[0], ex[2]), m.output_lengths(ex[2])) for k, m in models.items()}
    steps = int(feats[next(iter(feats))][0].shape[0]) if feats else 0
    fns = {f"torch|{k}": (lambda m=m: m(*ex)) for k, m in models.items()}
    fns.update({f"dblstm|{k}": (lambda m=m, f=feats[k]: m.sequence(*f)) for k, m in models.items()})
    with tempfile.TemporaryDirectory(prefix="inkpack-sparse-") as tmp:
        feed = {"images": ex[0].contiguous().numpy(), "widths": ex[2].numpy()}
        for k, m in models.items():
            for int8 in (False, True):
                path = export_onnx(m, Path(tmp) / f"{k.replace(' ', '').replace('%', '')}{'-int8' if int8 else ''}.onnx",
                                   int8=int8, config=cfg)
                fns[f"ort_{'int8' if int8 else 'fp32'}|{k}"] = (lambda s=session(path): s.run(None, feed))
                rows[k][f"onnx_{'int8_' if int8 else ''}mb"] = round(path.stat().st_size / 1e6, 3)
        # one input matrix over the line's feature sequence, one recurrent matrix-vector product
        x = torch.randn(256, max(steps, 1))
        h = torch.randn(128, 1)
        for k, m in models.items():
            w_ih, w_hh = m.lstm.weight_ih_l0.detach().clone(), m.lstm.weight_hh_l0.detach().clone()
            s_ih, s_hh = w_ih.to_sparse_csr(), w_hh.to_sparse_csr()
            fns.update({f"ih_dense|{k}": (lambda w=w_ih: w @ x), f"ih_csr|{k}": (lambda w=s_ih: w @ x),
                        f"hh_dense|{k}": (lambda w=w_hh: w @ h), f"hh_csr|{k}": (lambda w=s_hh: w @ h)})
        ms = interleaved(fns, runs, rounds)
    for name, v in ms.items():
        what, k = name.split("|")
        rows[k][f"{what}_ms"] = round(v, 4)
    for k, m in models.items():
        if task is not None:
            rows[k].update({a: b for a, b in accuracy(m, cfg, alphabet, task).items() if a in ("cer", "wer", "lines")})
    return {"rows": rows, "example_width": int(ex[2][0]), "sequence_steps": steps}


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--plot", help="accuracy vs latency PNG of the report rows")
    ap.add_argument("--out-dir", default="runs/hc-presets", help="where the presets' model files go")
    ap.add_argument("--presets", help="comma-separated preset names (default: all)")
    ap.add_argument("--reuse", action="store_true", help="keep preset files already in --out-dir")
    ap.add_argument("--runs", type=int, help="timed passes per model (default 30, quick 5)")
    ap.add_argument("--rounds", type=int, help="sparsity sweep: rounds (default 5, quick 2)")
    ap.add_argument("--val-lines", type=int, help="val lines for CER (default all 689, quick 30)")
    ap.add_argument("--levels", default="0,0.5,0.75,0.9", help="sparsity sweep: LSTM sparsities")
    ap.add_argument("--oneshot", default="lstm-adw", help="presets also built with --steps 0 (NAME-oneshot): what "
                    "their retraining buys")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs, rounds = args.runs or (5 if args.quick else 30), args.rounds or (2 if args.quick else 5)
    val_lines = args.val_lines or (30 if args.quick else None)
    names = [n.strip() for n in (args.presets or ",".join(PRESETS)).split(",") if n.strip()]
    sources = {PRESETS[n]["source"] for n in names}
    if len(sources) != 1:
        raise SystemExit(f"presets from several sources ({sorted(sources)}): give --presets of one")
    source = sources.pop()
    t0 = time.perf_counter()
    out_dir = REPO / args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = {}  # --reuse: the build records of the run that wrote the reused files
    if args.reuse and args.json and Path(args.json).exists():
        earlier = json.loads(Path(args.json).read_text(encoding="utf-8")).get("builds", {})
    oneshot = [n.strip() for n in args.oneshot.split(",") if n.strip() in names]
    builds = {}
    for key, n, once in [(n, n, False) for n in names] + [(f"{n}-oneshot", n, True) for n in oneshot]:
        builds[key] = build(n, out_dir / key, args.quick, args.reuse, once)
        if builds[key].get("reused") and key in earlier:
            builds[key] = dict(earlier[key], reused=True)
        print(f"built {key}: {builds[key]['command']} ({builds[key]['seconds']} s)", file=sys.stderr)
    src_cfg = load_model(source)[1]
    against = (f"{source} (shipped, not converged: val CER {src_cfg.get('metrics', {}).get('val_cer', float('nan')):.1%} "
               "in its file)")
    rows = report([source] + [str(out_dir / k) for k in builds], str(VAL), val_lines, runs,
                  log=lambda m: print(m, file=sys.stderr))
    for k, r in rows.items():
        r["measured_against"] = against
        r["preset"] = k if k in PRESETS else (k[: -len("-oneshot")] + " --steps 0" if k.endswith("-oneshot") else None)
    print(table([(k, r["recipe"], f"{r['params'] / 1e6:.3f}M", f"{r['nonzero_params'] / 1e6:.3f}M", f"{r['files_mb']:.2f}",
                  f"{r['Cr']:.2f}", f"{r['gflops']:.3f}", f"{r['latency_ms']:.2f}", f"{r['speedup']:.2f}",
                  f"{r['cer']:.2%}", f"{r['wer']:.2%}") for k, r in rows.items()],
                ("model", "recipe", "params", "non-zero", "file MB", "x smaller", "GFLOPs", "ms (1 thread)", "x faster",
                 "CER", "WER")))
    levels = [float(v) for v in args.levels.split(",") if v.strip()]
    _, _, alphabet = load_model(source)
    task = Task(src_cfg, alphabet, str(VAL), limit=val_lines, split="val")
    sweep = sparsity_sweep(source, levels, task, runs, rounds)
    sr = sweep["rows"]
    print(table([(k, f"{r['lstm_sparsity']:.2f}", f"{r['torch_ms']:.2f}", f"{r['dblstm_ms']:.2f}", f"{r['ort_fp32_ms']:.2f}",
                  f"{r['ort_int8_ms']:.2f}", f"{r['ih_dense_ms']:.3f}", f"{r['ih_csr_ms']:.3f}", f"{r['hh_dense_ms']:.4f}",
                  f"{r['hh_csr_ms']:.4f}", f"{r['cer']:.2%}" if "cer" in r else "-") for k, r in sr.items()],
                ("pruned", "LSTM zeros", "torch ms", "DBLSTM ms", "ORT fp32 ms", "ORT int8 ms", "W_ih dense",
                 "W_ih CSR", "W_hh dense", "W_hh CSR", "CER one-shot")))
    if args.plot:
        plot_report(rows, args.plot, title=f"hooker val, {task.n} lines; vs {source} (shipped, not converged)")
    write_json(args.json, {"quick": args.quick, "machine": machine(), "runs": runs, "rounds": rounds,
                           "val_lines": task.n, "measured_against": against, "builds": builds, "rows": rows,
                           "sparsity": sweep, "seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
