"""Compression side by side (seeds 001/003/004): teacher vs student vs Tucker+int8 student, and
a sweep up to SVD + ADW + k-means on the online character model (char_compression.py).

The teacher is the shipped ``models/hooker-vgg`` (vgg-dblstm, fp16 on disk; its size is counted as
fp32 like every other fp32 row, so the ratios compare parameters, not storage formats). Where it is
missing the teacher is built with random weights, which is enough for size, FLOPs and latency, and
its CER is reported as null with the reason. Latency: median of single-line forward passes on one
thread, the median-width hooker validation line, all models in the same run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tensorly's SVDs spin-wait on a shared CPU otherwise
os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy
import json
import tempfile
import time
from pathlib import Path

import torch
from char_compression import char_part, plot
from common import REPO, SHARED, machine, parser, table, write_json

from inkpack.compress.measure import accuracy, example_input
from inkpack.compress.retrain import Task
from inkpack.compress.quantize import quantize_int8
from inkpack.compress.report import (
    count_flops,
    count_params,
    measure_latencies,
    size_on_disk_mb,
)
from inkpack.compress.tucker import tucker_decompose
from inkpack.errors import InkpackError
from inkpack.models import build_model
from inkpack.models.io import load_model, save_model

TEACHER = "hooker-vgg"
NO_TEACHER = (f"models/{TEACHER} not found: the teacher is built with random weights for size/FLOPs/latency only")


def row(model, example, size_mb: float) -> dict:
    return {"params": count_params(model), "size_mb": size_mb, "gflops": count_flops(model, example) / 1e9}


def safetensors_mb(model, cfg) -> float:
    with tempfile.TemporaryDirectory() as d:
        stem = save_model(model, cfg, Path(d) / "m")
        return stem.with_suffix(".safetensors").stat().st_size / 1e6


def image_part(quick: bool, out: dict) -> list[tuple]:
    student, cfg, alphabet = load_model("hooker-darknet")
    try:
        teacher, tcfg, _ = load_model(TEACHER)
        t_name = f"vgg-dblstm teacher ({TEACHER})"
    except InkpackError:
        teacher, tcfg = build_model("vgg-dblstm", alphabet.num_classes, **cfg.get("options", {})).eval(), None
        t_name = "vgg-dblstm (teacher, random weights)"
    limit = 100 if quick else None
    task = Task(cfg, alphabet, str(SHARED / "data/hooker/val.tsv"), limit=limit, split="val")
    ex = example_input(student, cfg, task)
    runs = 5 if quick else 15
    t0 = time.perf_counter()
    tk = copy.deepcopy(student)
    changes = tucker_decompose(tk, 0.9)
    tk_fp32 = copy.deepcopy(tk)
    tk8 = quantize_int8(tk, inplace=True)
    decomp_s = time.perf_counter() - t0
    rows = {
        t_name: row(teacher, ex, safetensors_mb(teacher, cfg)),
        "darknet-dblstm (hooker-darknet)": row(student, ex, (REPO / "models/hooker-darknet.safetensors").stat().st_size / 1e6),
        "darknet tucker(0.9)+int8": row(tk_fp32, ex, size_on_disk_mb(tk8)),
    }
    lat = measure_latencies(dict(zip(rows, (teacher, student, tk8))), ex, runs=runs, threads=1)  # interleaved
    for name, ms in lat.items():
        rows[name]["latency_ms"] = ms
    base = rows[t_name]
    if tcfg is not None:
        base.update(accuracy(teacher, tcfg, alphabet, task))
    acc_s = accuracy(student, cfg, alphabet, task)
    acc_tk = accuracy(tk8, cfg, alphabet, task)
    rows["darknet-dblstm (hooker-darknet)"].update(acc_s)
    rows["darknet tucker(0.9)+int8"].update(acc_tk)
    for r in rows.values():
        r["Cr"] = base["size_mb"] / r["size_mb"]
        r["Sr"] = base["gflops"] / r["gflops"]
        r["speedup"] = base["latency_ms"] / r["latency_ms"]
    st, tk_row = rows["darknet-dblstm (hooker-darknet)"], rows["darknet tucker(0.9)+int8"]
    out.update({
        "speedup": st["speedup"], "size_ratio": st["Cr"], "flops_ratio": st["Sr"],
        "cer_teacher": base.get("cer"), "wer_teacher": base.get("wer"),
        **({} if tcfg is not None else {"cer_teacher_reason": NO_TEACHER}),
        "cer_student": acc_s["cer"], "wer_student": acc_s["wer"], "val_lines": acc_s["lines"],
        "speedup_tucker_int8": tk_row["speedup"], "size_ratio_tucker_int8": tk_row["Cr"],
        "speedup_tucker_int8_vs_student": st["latency_ms"] / tk_row["latency_ms"],
        "cer_tucker_int8_no_finetune": acc_tk["cer"], "tucker_seconds": decomp_s,
        "tucker_layers": [f"{c.name}: {c.detail}" for c in changes],
        "image_rows": rows, "example_width": int(ex[2][0]),
    })
    return [(n, f"{r['params'] / 1e6:.2f}M", f"{r['Cr']:.2f}", f"{r['gflops']:.3f}", f"{r['Sr']:.2f}",
             f"{r['latency_ms']:.1f}", f"{r['speedup']:.2f}", f"{r['size_mb']:.2f}",
             f"{r['cer']:.3f}" if "cer" in r else "n/a (no teacher)") for n, r in rows.items()]


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "image", "char"], default="all",
                    help="image: teacher/student/Tucker rows only; char: the lstm-char sweep only")
    ap.add_argument("--plot-char", help="lstm-char part: write top-1 against size ratio here (PNG)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out: dict = {"quick": args.quick, "part": args.part, "machine": machine()}
    if args.part in ("all", "image"):
        img = image_part(args.quick, out)
        print(table(img, ("model", "params", "Cr", "GFLOPs", "Sr", "latency ms", "speed-up", "MB", "CER")))
    if args.part in ("all", "char"):
        ch = char_part(args.quick, out)
        if ch:
            print(table(ch, ("char model", "MB", "ratio", "top-1", "drop (points)", "latency ms")))
            if args.plot_char:
                plot(out["char_points"], out["char_top1_base"], args.plot_char)
        else:
            print("lstm-char part skipped:", out["char_skipped"])
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps({k: out.get(k) for k in ("speedup", "size_ratio", "cer_teacher", "cer_student",
                                              "speedup_tucker_int8", "char_size_ratio", "char_top1_drop")}))
    write_json(args.json, merged(args.json, out) if args.part != "all" else out)


def merged(path, out: dict) -> dict:
    """One part re-run: keep the other part's figures from an existing result file."""
    if not path or not Path(path).exists():
        return out
    prev = json.loads(Path(path).read_text())
    if out["part"] == "char":  # figures of an older sweep design must not outlive it
        prev = {k: v for k, v in prev.items() if not k.startswith("char_") and k not in ("seconds_char", "machine_char")}
    runs = dict(prev.get("part_runs") or {})
    runs[out["part"]] = {"time": out["machine"].get("time"), "seconds": out["seconds"], "quick": out["quick"]}
    return {**prev, **out, "part": "all (parts run separately, see part_runs)", "part_runs": runs}


if __name__ == "__main__":
    main()
