"""Recipe study of the offline line recognizer: proxy runs at an equal time budget each.

One factor at a time from a common base (the shipped recipe: darknet-dblstm, height 48, 2 x
BLSTM 128, dropout 0.2, AdamW 1e-3, batch 16, augmentation on). Each variant trains from
scratch on the Hooker train lines for ``--budget`` minutes of wall time (2 threads, one run at
a time), with its cosine schedule sized to end at the budget (epochs estimated from a short
timed warm-up of that variant), then is validated on the val lines. Each row: val CER/WER at
the budget, the best epoch's CER and the curve (val CER by elapsed minute), train lines/s,
parameters, single-thread ms/line (batch 1, 40 val lines).

Short budgets favour small models: run it at two budgets at least (``--budget 30`` and
``--budget 120``) and read the slopes. Results accumulate in the JSON (a row per variant and
budget); a row already there is skipped unless ``--force``, so the study can be spread over
sessions.

    python benchmarks/recipe.py [--quick] [--json OUT] [--budget MIN] [--variants a,b,...]
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from common import REPO, SHARED, machine, parser, table, write_json

BASE = dict(arch="darknet-dblstm", height=48, batch_size=16, lr=1e-3, augment=True, ema=0.0,
            options={"lstm_hidden": 128, "lstm_layers": 2, "dropout": 0.2})
# name -> overrides of BASE (options are merged)
VARIANTS = {
    "base": {},
    "h64": {"height": 64},
    "h96": {"height": 96},
    "fr8": {"options": {"pool_widths": 8}},
    "2x256": {"options": {"lstm_hidden": 256}},
    "3x256": {"options": {"lstm_hidden": 256, "lstm_layers": 3}},
    "4x256": {"options": {"lstm_hidden": 256, "lstm_layers": 4}},
    "drop0.5": {"options": {"dropout": 0.5}},
    "noaug": {"augment": False},
    "lr3e-4": {"lr": 3e-4},
    "lr3e-3": {"lr": 3e-3},
    "bs2": {"batch_size": 2},
    "bs4": {"batch_size": 4},
    "bs8": {"batch_size": 8},
    "bs32": {"batch_size": 32},
    "ema": {"ema": 0.999},
    "gated": {"arch": "gated-dblstm"},
    # the best batch so far with one more factor (compare with the bs8 row run beside it)
    "bs8-shortcut": {"batch_size": 8, "options": {"ctc_shortcut": 0.1}},
    # one factor each from bs8-shortcut: the shortcut's weight, the peak rate
    "bs8-shortcut0.3": {"batch_size": 8, "options": {"ctc_shortcut": 0.3}},
    "bs8-shortcut-lr2e-3": {"batch_size": 8, "lr": 2e-3, "options": {"ctc_shortcut": 0.1}},
    "bs8-shortcut0.5": {"batch_size": 8, "options": {"ctc_shortcut": 0.5}},
    "bs8-shortcut1": {"batch_size": 8, "options": {"ctc_shortcut": 1.0}},
    # the same with bfloat16 autocast (precision: bf16; ~1.5-1.7x the steps per minute here)
    "bs8-shortcut0.5-bf16": {"batch_size": 8, "precision": "bf16", "options": {"ctc_shortcut": 0.5}},
    "h64-3x256-d0.5": {"height": 64, "options": {"lstm_hidden": 256, "lstm_layers": 3, "dropout": 0.5}},
    # one factor each from bs8-shortcut0.5-bf16: input height 64, HTR-Flor's gated convolutions
    "bs8-shortcut0.5-bf16-h64": {"batch_size": 8, "precision": "bf16", "height": 64, "options": {"ctc_shortcut": 0.5}},
    "bs8-shortcut0.5-bf16-gated": {"batch_size": 8, "precision": "bf16", "arch": "gated-dblstm",
                                   "options": {"ctc_shortcut": 0.5}},
}


def config(name: str, budget_min: float, out: Path, quick: bool, epochs: int = 1000, threads: int = 2):
    from inkpack.train.config import TrainConfig

    over = VARIANTS[name]
    kw = {**BASE, **{k: v for k, v in over.items() if k != "options"}}
    kw["options"] = {**BASE["options"], **over.get("options", {})}
    return TrainConfig(
        train=str(SHARED / "data/hooker/train.tsv"), val=str(SHARED / "data/hooker/val.tsv"),
        out=str(out), epochs=epochs, warmup_steps=300, patience=10**6, seed=1234, threads=threads,
        time_limit=budget_min, progress=False, ckpt_every=200, device="cpu",
        limit=300 if quick else None, val_limit=60 if quick else None, **kw)


def lines_per_s(cfg, steps: int = 8) -> float:
    from inkpack.train.loop import Trainer

    tr = Trainer(cfg)
    tr.setup()
    batches = tr._epoch_batches(0)
    tr.train_step(tr._make_batch(batches[0]))  # warm-up
    n, t0 = 0, time.perf_counter()
    for idx in batches[1 : 1 + steps]:
        n += len(idx)
        tr.train_step(tr._make_batch(idx))
    return n / (time.perf_counter() - t0), len(tr.train_set)


def ms_per_line(model, val_set, lines: int = 40, threads: int = 2) -> float:
    from inkpack.infer.preprocess import u8_to_tensor

    torch.set_num_threads(1)
    model.eval()
    t = 0.0
    with torch.no_grad():
        for img in val_set.images[:lines]:
            x = u8_to_tensor(img)[None] if img.dtype == np.uint8 else torch.from_numpy(img)[None, None]
            t0 = time.perf_counter()
            model(x, None, torch.tensor([x.shape[-1]]))
            t += time.perf_counter() - t0
    torch.set_num_threads(threads)
    return 1000 * t / min(lines, len(val_set.images))


def run_variant(name: str, budget: float, root: Path, quick: bool, threads: int = 2) -> dict:
    from inkpack.train.loop import Trainer

    out = root / f"{name}-{budget:g}min"
    probe = config(name, budget, root / f"{name}-probe", quick, threads=threads)
    speed, n_lines = lines_per_s(probe)
    # a cosine schedule that ends at the budget (90% of it training, the rest validation)
    epochs = max(1, math.floor(0.9 * budget * 60 * speed / n_lines))
    tr = Trainer(config(name, budget, out, quick, epochs=epochs, threads=threads))
    tr.setup()
    result = tr.fit()
    final = tr.validate()
    params = sum(p.numel() for p in tr.model.parameters())
    curve = [(round(h["elapsed_s"] / 60, 1), h.get("val_cer")) for h in tr.history]
    return {"variant": name, "budget_min": budget, "overrides": VARIANTS[name], "epochs_planned": epochs,
            "epochs_done": tr.epoch, "stop": result["stop"], "val_cer": final["val_cer"],
            "val_wer": final["val_wer"], "best_epoch_cer": min([c for _, c in curve if c is not None],
                                                               default=None),
            "curve": curve, "train_lines_per_s": speed, "params": params,
            "train_threads": threads, "ms_per_line_1thread": ms_per_line(tr.eval_model, tr.val_set, threads=threads)}


def main() -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=30.0, help="minutes of training per variant (default 30)")
    ap.add_argument("--variants", default="", help="comma-separated names (default: all); known: "
                    + ", ".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=2,
                    help="training threads per run (1: two studies side by side on a 2-core machine, "
                         "each with its own --json; rows record it)")
    ap.add_argument("--force", action="store_true", help="re-run rows already in the JSON")
    ap.add_argument("--runs", default=str(REPO / "runs" / "recipe"), help="where the runs go")
    a = ap.parse_args()
    names = [n for n in a.variants.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    budget = a.budget
    if a.quick:
        names, budget = names[:2] if a.variants else ["base", "h64"], min(budget, 1.5)
    rows = []
    if a.json and Path(a.json).exists() and not a.quick:
        rows = json.loads(Path(a.json).read_text())["rows"]
    done = {(r["variant"], r["budget_min"]) for r in rows}
    for name in names:
        if (name, budget) in done and not a.force:
            print(f"{name} @ {budget:g} min: in {a.json} already (--force to re-run)")
            continue
        rows = [r for r in rows if (r["variant"], r["budget_min"]) != (name, budget)]
        rows.append(run_variant(name, budget, Path(a.runs) / ("quick" if a.quick else ""), a.quick,
                                threads=a.threads))
        print(f"{name} @ {budget:g} min: val CER {100 * rows[-1]['val_cer']:.2f}%", flush=True)
        write_json(a.json, {"machine": machine(), "quick": a.quick, "rows": rows})
    rows.sort(key=lambda r: (r["budget_min"], r["val_cer"]))
    print(table([(r["variant"], f"{r['budget_min']:g}", f"{100 * r['val_cer']:.2f}",
                  f"{100 * r['best_epoch_cer']:.2f}" if r["best_epoch_cer"] is not None else "-",
                  r["epochs_done"], f"{r['train_lines_per_s']:.1f}", f"{r['params'] / 1e6:.2f}M",
                  f"{r['ms_per_line_1thread']:.1f}") for r in rows],
                ("variant", "budget min", "val CER %", "best epoch CER %", "epochs", "lines/s", "params",
                 "ms/line")))
    write_json(a.json, {"machine": machine(), "quick": a.quick, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
