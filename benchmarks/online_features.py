"""Online line inputs: per-point features vs Bézier curves (issue 25, item 3) on IAM-OnDB.

Table 1 (always; cheap): for every line of ``val.npz`` (``--quick``: the first 100), the rows a
line model reads (points after the shipped preprocessing: y-std normalisation, redundant points
dropped at ``min_dist`` 0.05; Bézier curves at each ``--errors`` threshold, pen-up jumps
included), rows per character, the share of lines with enough rows for CTC (one row per
character plus one between repeated characters), and the feature extraction time per line
(eval preprocessing from the ``Ink``, one thread, median and p95), and the forward time per line
of the ``--config`` model (its weights untrained: the time does not depend on them) on those rows,
batch 1, one thread, on the first ``--forward-lines`` lines: for points with 4 rows stacked a
frame as the shipped model, for curves without stacking. Extraction + forward is the per-line
budget of the issue (10 ms on one thread).

Table 2 (``--train-minutes M``; off by default, hours of CPU for a useful M): the same line model
trained for M minutes on each kind of input, one after the other on one thread, from
``--config`` (default ``configs/iamondb-bezier-blstm.yaml``); the points run overrides
``preprocessing.features: points`` and stacks 4 points a frame (``subsample: 4``, the shipped
model's rate, about as many frames as curves). Each model is scored with ``inkpack evaluate``'s
code on all of ``val.npz`` (greedy CER/WER, ms/line on one thread). Runs go to
``runs/online-features-{points,bezier}`` (IAM-OnDB models: research use only, never committed).

    python benchmarks/online_features.py [--quick] [--json OUT] [--data DIR] [--errors 0.05,0.1,0.2]
        [--train-minutes M [--config YAML]]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import REPO, SHARED, machine, parser, table, write_json  # noqa: E402

from inkpack.data.formats.iamondb import read_iamondb_npz  # noqa: E402
from inkpack.data.ink_preprocess import PreprocessConfig, preprocess  # noqa: E402

POINTS = PreprocessConfig(scale="y_std", min_dist=0.05)  # the shipped line model's eval preprocessing


def ctc_rows_needed(text: str) -> int:
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


def forward_model(config: str, features: int, subsample: int):
    from inkpack.models import build_model
    from inkpack.train.ink_train import InkTrainConfig

    opts = {**InkTrainConfig.from_yaml(config).options, "in_features": features, "subsample": subsample}
    return build_model("online-blstm", 80, **opts).eval(), opts


def measure(inks, cfg: PreprocessConfig, name: str, base_rows: float | None, model, n_forward: int) -> dict:
    rows, ms, ok, chars, fwd = [], [], 0, 0, []
    for i, ink in enumerate(inks):
        t0 = time.perf_counter()
        f = preprocess(ink, cfg, None)
        ms.append(1000 * (time.perf_counter() - t0))
        if i < n_forward and len(f):
            with torch.inference_mode():
                x = torch.from_numpy(f)[None]
                t0 = time.perf_counter()
                model(x, torch.tensor([len(f)]))
                fwd.append(1000 * (time.perf_counter() - t0))
        rows.append(len(f))
        text = ink.label or ""
        chars += len(text)
        ok += len(f) >= ctc_rows_needed(text)
    r = np.array(rows, dtype=float)
    out = {"input": name, "features": cfg.num_features, "rows_mean": float(r.mean()),
           "rows_median": float(np.median(r)), "rows_per_char": float(r.sum() / max(1, chars)),
           "ctc_feasible": ok / max(1, len(inks)), "ms_median": float(np.median(ms)),
           "ms_mean": float(np.mean(ms)), "ms_p95": float(np.percentile(ms, 95)),
           "forward_ms_median": float(np.median(fwd)) if fwd else None, "forward_lines": len(fwd)}
    out["reduction_vs_points"] = None if base_rows is None else base_rows / float(r.mean())
    return out


def lengths(inks, errors: list[float], config: str, n_forward: int) -> tuple[list[dict], dict]:
    pmodel, popts = forward_model(config, 6, 4)
    bmodel, bopts = forward_model(config, 10, 1)
    res = [measure(inks, POINTS, "points", None, pmodel, n_forward)]
    base = res[0]["rows_mean"]
    for e in errors:
        cfg = PreprocessConfig(scale="y_std", min_dist=0.05, features="bezier", bezier_error=e)
        res.append(measure(inks, cfg, f"bezier {e:g}", base, bmodel, n_forward))
    return res, {"points": popts, "bezier": bopts}


def train_both(config: str, minutes: float, data: Path, runs: Path) -> list[dict]:
    from inkpack.ink_commands import evaluate_ink
    from inkpack.train.ink_train import InkTrainConfig, fit_ink

    out = []
    for feats in ("points", "bezier"):
        cfg = InkTrainConfig.from_yaml(config, out=str(runs / f"online-features-{feats}"),
                                       train=str(data / "train.npz"), val=str(data / "val.npz"),
                                       time_limit=minutes, threads=1, progress=False)
        cfg.preprocessing = {**cfg.preprocessing, "features": feats}
        if feats == "points":
            cfg.options = {**cfg.options, "subsample": 4}
        t0 = time.time()
        result = fit_ink(cfg)
        ev = evaluate_ink(str(data / "val.npz"), str(Path(cfg.out) / "best"), threads=1)
        out.append({"input": feats, "minutes": (time.time() - t0) / 60, "steps": result["steps"],
                    "epochs": result["epochs"], "val_cer": ev["cer"], "val_wer": ev["wer"],
                    "ms_per_line": ev["ms_per_line"], "options": cfg.options})
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "iamondb"), help="folder of train.npz / val.npz")
    p.add_argument("--errors", default="0.05,0.1,0.2", help="Bézier fit thresholds (y-std units)")
    p.add_argument("--lines", type=int, default=None, help="val lines to measure (default all; --quick 100)")
    p.add_argument("--train-minutes", type=float, default=0.0, help="train both inputs this long (0 = off)")
    p.add_argument("--config", default=str(REPO / "configs" / "iamondb-bezier-blstm.yaml"))
    p.add_argument("--runs", default=str(REPO / "runs"), help="where the --train-minutes runs go")
    p.add_argument("--forward-lines", type=int, default=300, help="lines timed through the model (--quick: 50)")
    a = p.parse_args()
    torch.set_num_threads(1)
    data = Path(a.data)
    if not (data / "val.npz").is_file():
        raise SystemExit(f"{data / 'val.npz'}: not found (IAM-OnDB is local data; see ../shared/data/README)")
    inks = list(read_iamondb_npz(data / "val.npz", strict=False))
    n = a.lines or (100 if a.quick else len(inks))
    inks = inks[:n]
    errors = [float(e) for e in a.errors.split(",") if e]
    rows, models = lengths(inks, errors, a.config, min(a.forward_lines, 50) if a.quick else a.forward_lines)
    print(f"IAM-OnDB val, {len(inks)} lines ({sum(len(i.label or '') for i in inks) / len(inks):.1f} "
          f"characters a line), one thread:")
    print(table([(r["input"], r["features"], f"{r['rows_mean']:.1f}", f"{r['rows_per_char']:.2f}",
                  "-" if r["reduction_vs_points"] is None else f"{r['reduction_vs_points']:.2f}x",
                  f"{100 * r['ctc_feasible']:.1f}%", f"{r['ms_median']:.2f}", f"{r['ms_p95']:.2f}",
                  "-" if r["forward_ms_median"] is None else f"{r['forward_ms_median']:.2f}") for r in rows],
                ("input", "F", "rows/line", "rows/char", "fewer rows", "CTC-feasible", "ms median", "ms p95",
                 "forward ms")))
    print(f"forward: {Path(a.config).name} options, points {models['points']}, curves {models['bezier']}")
    result = {"benchmark": "online_features", "machine": machine(), "lines": len(inks), "lengths": rows,
              "forward_models": models, "config": a.config, "train": None}
    if a.train_minutes > 0:
        trained = train_both(a.config, a.train_minutes, data, Path(a.runs))
        print(f"\nEqual training time ({a.train_minutes:g} min each, one thread), full val greedy:")
        print(table([(r["input"], r["steps"], f"{r['epochs']}", f"{100 * r['val_cer']:.2f}%",
                      f"{100 * r['val_wer']:.2f}%", f"{r['ms_per_line']:.2f}") for r in trained],
                    ("input", "steps", "epochs", "val CER", "val WER", "ms/line")))
        result["train"] = {"minutes": a.train_minutes, "config": a.config, "runs": trained}
    write_json(a.json, result)


if __name__ == "__main__":
    main()
