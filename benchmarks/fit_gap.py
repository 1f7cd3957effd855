"""Does the offline model underfit or overfit? Its CER on training lines beside validation.

The model reads every ``--stride``-th *train* line (without augmentation, as at inference) and
every val line. Per split: CER and WER over all characters, quantiles of the per-line CER, and
where the errors are: the share of all character errors made on lines the model reads worse
than 50% CER, and the CER of the "zoomed" lines (more than 40 px of a 96-px-high line image per
transcribed character: crops of a thin band of a line, scaled up, with ascenders and descenders
cut) beside the others. A train CER near the val CER says the recipe underfits (more updates,
capacity, less regularization help); a train CER far below says it overfits (regularization,
data help). Writes a PNG of the per-line CER distributions with ``--plot``.

    python benchmarks/fit_gap.py [--quick] [--json OUT] [--plot PNG] [--model STEM] [--stride N]
"""

from __future__ import annotations

import numpy as np

from common import REPO, SHARED, machine, parser, read_lines, table, write_json

ZOOMED_PX_PER_CHAR = 40.0  # at the stored height of 96 px


def split_stats(rec, grays, truths) -> tuple[dict, np.ndarray]:
    from inkpack.metrics import ErrorCounts

    hyps = rec.recognize_prepared([rec.prepare(g) for g in grays])
    every, zoomed, normal = ErrorCounts(), ErrorCounts(), ErrorCounts()
    line_cer, errors, n_zoomed = [], [], 0
    for g, t, h in zip(grays, truths, hyps):
        one = ErrorCounts()
        one.add(h, t)
        every.add(h, t)
        px_per_char = g.shape[1] * 96.0 / g.shape[0] / max(len(t), 1)
        n_zoomed += px_per_char > ZOOMED_PX_PER_CHAR
        (zoomed if px_per_char > ZOOMED_PX_PER_CHAR else normal).add(h, t)
        line_cer.append(one.cer)
        errors.append(one.char_errors)
    line_cer, errors = np.array(line_cer), np.array(errors, dtype=float)
    bad = line_cer > 0.5
    q = {f"p{int(p * 100)}": round(float(np.quantile(line_cer, p)), 4) for p in (0.25, 0.5, 0.75, 0.9)}
    return {
        "lines": len(truths), "cer": round(every.cer, 4), "wer": round(every.wer, 4), "line_cer_quantiles": q,
        "share_lines_over_50pct": round(float(bad.mean()), 4),
        "share_errors_on_lines_over_50pct": round(float(errors[bad].sum() / max(errors.sum(), 1)), 4),
        "zoomed_lines": int(n_zoomed), "zoomed_cer": round(zoomed.cer, 4) if n_zoomed else None,
        "zoomed_share_of_errors": round(zoomed.char_errors / max(every.char_errors, 1), 4),
        "other_cer": round(normal.cer, 4),
    }, line_cer


def plot(path: str, curves: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bins = np.linspace(0, 1, 41)
    for name, c in curves.items():
        ax.hist(c, bins=bins, histtype="step", density=True, linewidth=1.5, label=f"{name} (CER per line)")
    ax.set_xlabel("line CER")
    ax.set_ylabel("density of lines")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "hooker-darknet"))
    ap.add_argument("--stride", type=int, default=8, help="read every N-th train line (default 8)")
    ap.add_argument("--plot", help="write a PNG of the per-line CER distributions here")
    a = ap.parse_args()
    if a.stride < 1:
        ap.error("--stride: must be at least 1")
    import torch

    from inkpack.infer.recognizer import open_recognizer

    torch.set_num_threads(1)
    rec = open_recognizer(a.model, threads=None, decoder="greedy")  # the network alone (the LM saw train)
    data = SHARED / "data" / "hooker"
    limit = 80 if a.quick else None
    results, curves = {}, {}
    for split, stride in (("train", a.stride), ("val", 1)):
        grays, truths = read_lines(data / f"{split}.tsv", limit, stride)
        results[split], curves[split] = split_stats(rec, grays, truths)
    rows = [(s, r["lines"], f"{r['cer']:.2%}", f"{r['wer']:.2%}", f"{r['line_cer_quantiles']['p50']:.1%}",
             f"{r['line_cer_quantiles']['p90']:.1%}", f"{r['share_errors_on_lines_over_50pct']:.1%}",
             f"{r['zoomed_lines']}: {r['zoomed_cer']:.1%}" if r["zoomed_lines"] else "0",
             f"{r['other_cer']:.2%}") for s, r in results.items()]
    print(table(rows, ("split", "lines", "CER", "WER", "median line CER", "p90 line CER",
                       "errors on lines >50%", "zoomed lines: CER", "other lines CER")))
    if a.plot:
        plot(a.plot, curves, f"{a.model.rstrip('/').split('/')[-1]}: train (every {a.stride}th line) vs val")
    write_json(a.json, {"benchmark": "fit_gap", "quick": a.quick, "model": a.model, "train_stride": a.stride,
                        "zoomed_px_per_char": ZOOMED_PX_PER_CHAR, "machine": machine(), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
