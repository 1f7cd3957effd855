"""Teacher–student table of seeds 003/004 with a trained teacher: every criterion side by side.

The teacher is the shipped `vgg-dblstm` (`models/hooker-vgg`), the student a `darknet-dblstm`
with the teacher's feature size and frame rate (`--width 1`: the architecture of the shipped
`hooker-darknet`; `--teacher hooker-darknet --width 0.5` is the earlier, smaller setup). As in
the seed's pipeline the student copies the teacher's DBLSTM and IP layers, which stay fixed
while its CNN, fresh, learns from one criterion; then the whole student is fine-tuned with CTC.
Every student row spends the same number of steps on the same batches: `distill` steps +
`finetune` CTC steps, and the baseline row spends them all on CTC (head copied, no
distillation), so the rows differ only in the criterion. The teacher's outputs are computed once
per step and shared by the criteria. Evaluated on hooker val. All students share one
architecture, so latency is measured once per architecture, teacher and student interleaved run
by run on one thread for the median-width val line (`--part latency` re-measures only that into
an existing file).

    python benchmarks/distillation.py [--quick] --json benchmarks/results/distillation.json --plot docs/distillation.png
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import copy
import json
import time
from pathlib import Path

import torch
from common import REPO, SHARED, machine, parser, table, write_json
from compression import safetensors_mb

from inkpack.compress.measure import accuracy, example_input
from inkpack.compress.retrain import Task
from inkpack.compress.distill import (
    CRITERIA,
    distill,
    finetune_ctc,
    init_student,
    student_like,
)
from inkpack.compress.report import count_flops, count_params, measure_latencies
from inkpack.models.io import load_model

WIDTH = 1.0
TEACHER = "hooker-vgg"
STEPS = (600, 300)  # distillation, then CTC fine-tuning
LR = 1e-3


def load_teacher(quick: bool, name: str = TEACHER) -> tuple:
    """The teacher, its config and alphabet, the val task and its median-width example line."""
    teacher, cfg, alphabet = load_model(str(REPO / "models" / name))
    val = Task(cfg, alphabet, str(SHARED / "data/hooker/val.tsv"), limit=40 if quick else None, split="val")
    return teacher, cfg, alphabet, val, example_input(teacher, cfg, val)


def student_rows(quick: bool, threads: int, loaded: tuple, teacher_name: str, width: float) -> tuple[dict, dict]:
    torch.set_num_threads(threads)
    teacher, cfg, alphabet, val, ex = loaded
    s1, s2 = (6, 3) if quick else STEPS
    train = Task(cfg, alphabet, str(SHARED / "data/hooker/train.tsv"), batch_size=16, seed=3,
                 limit=200 if quick else None)
    scfg = dict(cfg, arch="darknet-dblstm", options={**cfg.get("options", {}), "width": width})

    def row(model, c) -> dict:
        return {"params": count_params(model), "size_mb": safetensors_mb(model, c),
                "gflops": count_flops(model, ex) / 1e9}

    rows = {f"teacher: {teacher_name}": {**row(teacher, cfg), **accuracy(teacher, cfg, alphabet, val)}}
    torch.manual_seed(0)
    fresh = student_like(cfg, "darknet-dblstm", alphabet.num_classes, width=width)
    cache: dict = {}  # the teacher's outputs per distillation step, shared by every criterion
    plans = [("no distillation (CTC only)", None)] + [(c, c) for c in CRITERIA]
    for name, criterion in plans:
        t0 = time.perf_counter()
        student = copy.deepcopy(fresh)
        if criterion is None:
            init_student(student, teacher)
            finetune_ctc(student, train.batch, s1 + s2, lr=LR / 3)
            losses = {}
        else:
            h = distill(teacher, student, train.batch, criterion, s1, lr=LR, cache=cache)
            f = finetune_ctc(student, lambda i: train.batch(s1 + i), s2, lr=LR / 3)
            losses = {"distill_loss_last50": sum(h["losses"][-50:]) / len(h["losses"][-50:]),
                      "ctc_loss_last50": sum(f["losses"][-50:]) / len(f["losses"][-50:])}
        torch.set_num_threads(threads)
        r = {**row(student, scfg), **accuracy(student, cfg, alphabet, val),
             **losses, "seconds": time.perf_counter() - t0}
        rows[f"student: {name}"] = r
        print(f"{name}: CER {r['cer']:.4f} WER {r['wer']:.4f} ({r['seconds']:.0f} s)", flush=True)
    t = rows[f"teacher: {teacher_name}"]
    for r in rows.values():
        r["Cr"], r["Sr"] = t["size_mb"] / r["size_mb"], t["gflops"] / r["gflops"]
        r["cer_above_teacher"] = r["cer"] - t["cer"]
    return rows, {"distill_steps": s1, "finetune_steps": s2, "batch_size": 16, "student_width": width, "teacher": teacher_name,
                  "lr_distill": LR, "lr_finetune": LR / 3, "temperature": 1.0, "val_lines": val.n,
                  "train_lines": train.n, "threads": threads}


def latencies(quick: bool, loaded: tuple, width: float) -> dict:
    """Median single-thread ms of teacher and (any) student on the median val line, interleaved
    run by run so that both see the same machine noise."""
    torch.set_num_threads(1)
    teacher, cfg, alphabet, _, ex = loaded
    teacher.eval()
    student = student_like(cfg, "darknet-dblstm", alphabet.num_classes, width=width).eval()
    runs = 5 if quick else 60
    med = measure_latencies({"teacher": teacher, "student": student}, ex, runs=runs, threads=1)
    return {"teacher_ms": med["teacher"], "student_ms": med["student"], "speedup": med["teacher"] / med["student"],
            "runs": runs, "example_width": int(ex[2][0])}


def with_latency(rows: dict, lat: dict) -> None:
    for name, r in rows.items():
        r["latency_ms"] = lat["teacher_ms"] if name.startswith("teacher") else lat["student_ms"]
        r["speedup"] = lat["teacher_ms"] / r["latency_ms"]


def plot(rows: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(range(len(names)), [100 * rows[n]["cer"] for n in names],
            color=["#555"] + ["#999"] + ["#3a7"] * (len(names) - 2))
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("hooker val CER (%)")
    ax.set_title("teacher–student criteria (same steps, same batches)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--plot", help="write a bar chart of CER per row (PNG)")
    p.add_argument("--threads", type=int, default=2, help="training threads (latency always on 1)")
    p.add_argument("--part", choices=["all", "latency"], default="all",
                   help="latency: re-measure only the latencies into the existing --json file")
    p.add_argument("--teacher", default=TEACHER, help="shipped model under models/ to distill from")
    p.add_argument("--width", type=float, default=WIDTH, help="the darknet-dblstm student's conv width")
    a = p.parse_args()
    loaded = load_teacher(a.quick, a.teacher)
    if a.part == "latency":
        prev = json.loads(Path(a.json).read_text())
        rows, setup = prev["rows"], prev["setup"]
    else:
        rows, setup = student_rows(a.quick, a.threads, loaded, a.teacher, a.width)
    lat = latencies(a.quick, loaded, a.width)
    with_latency(rows, lat)
    print(table([(n, f"{r['params'] / 1e6:.2f}M", f"{r['size_mb']:.2f}", f"{r['Cr']:.2f}", f"{r['gflops']:.3f}",
                  f"{r['latency_ms']:.2f}",
                  f"{r['speedup']:.2f}", f"{100 * r['cer']:.2f}", f"{100 * r['wer']:.2f}",
                  f"{100 * r['cer_above_teacher']:+.2f}") for n, r in rows.items()],
                ("model", "params", "MB", "Cr", "GFLOPs", "ms (1 thr)", "speed-up", "CER %", "WER %", "CER vs teacher")))
    students = {n: r for n, r in rows.items() if n.startswith("student: ") and "no distillation" not in n}
    best = min(students, key=lambda n: students[n]["cer"])
    write_json(a.json, {"rows": rows, "setup": setup, "latency": lat, "best_criterion": best.split(": ", 1)[1],
                        "quick": a.quick, "machine": machine()})
    if a.plot:
        plot(rows, a.plot)


if __name__ == "__main__":
    main()
