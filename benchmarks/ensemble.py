"""How much would an ensemble of line models gain? Frame-synchronous averaging of CTC outputs.

Models with the same alphabet, input height and frame rate (e.g. two runs of one recipe) read
every val line; their per-frame outputs are averaged — probabilities (``prob``) or
log-probabilities (``logprob``, a product of experts), renormalised — and decoded greedily and
with the first model's own decoder (the shipped default: beam 8 + its character LM). Each row:
CER / WER of one model or of an ensemble. A gain here says an ensemble is a better teacher to
distil from; the ensemble itself costs the sum of its models' forward passes.

    python benchmarks/ensemble.py [--quick] [--json OUT] --models STEM STEM [...]
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from common import SHARED, machine, parser, read_lines, table, write_json


def outputs(rec, grays) -> list[np.ndarray]:
    """Per line, the model's ``[T, K]`` log-probabilities."""
    out = []
    for g in grays:
        lp, n = rec.logits([rec.prepare(g)])
        out.append(torch.log_softmax(lp[: int(n[0]), 0].float(), -1).numpy())
    return out


def combine(per_model: list[list[np.ndarray]], how: str) -> list[np.ndarray]:
    """Average the models' outputs line by line (``prob`` or ``logprob``), as log-probabilities."""
    lines = []
    for outs in zip(*per_model):
        if len({o.shape[0] for o in outs}) > 1:
            raise SystemExit("ensemble: the models' frame counts differ (height or frame rate)")
        stack = np.stack(outs)
        if how == "prob":
            m = np.log(np.exp(stack).mean(0) + 1e-30)
        else:
            m = stack.mean(0)
        lines.append(m - np.logaddexp.reduce(m, axis=1, keepdims=True))
    return lines


def score(rec, greedy, lps, truths) -> dict:
    from inkpack.metrics import cer, wer

    row = {}
    for name, r in (("greedy", greedy), ("default", rec)):
        t0 = time.perf_counter()
        hyps = [r.decode(torch.from_numpy(lp)[:, None], torch.tensor([lp.shape[0]]))[0] for lp in lps]
        row[name] = {"cer": cer(hyps, truths), "wer": wer(hyps, truths),
                     "decode_ms_per_line": 1000 * (time.perf_counter() - t0) / len(lps)}
    return row


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, help="model stems (2 or more)")
    p.add_argument("--data", default=str(SHARED / "data/hooker/val.tsv"))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    import inkpack

    torch.set_num_threads(a.threads)
    grays, truths = read_lines(a.data, limit=60 if a.quick else None)
    recs = [inkpack.load(m, threads=a.threads) for m in a.models]
    greedy = inkpack.load(a.models[0], threads=a.threads, decoder="greedy")
    for r in recs[1:]:
        if r.alphabet.symbols != recs[0].alphabet.symbols or r.height != recs[0].height:
            raise SystemExit("ensemble: the models differ in alphabet or input height")
    per_model, fwd_ms = [], []
    for r in recs:
        t0 = time.perf_counter()
        per_model.append(outputs(r, grays))
        fwd_ms.append(1000 * (time.perf_counter() - t0) / len(grays))
    rows = []
    for i, m in enumerate(a.models):
        rows.append({"models": [m], "average": None, "forward_ms_per_line": fwd_ms[i],
                     **score(recs[0], greedy, per_model[i], truths)})
    for k in range(2, len(recs) + 1):
        for idx in itertools.combinations(range(len(recs)), k):
            for how in ("prob", "logprob"):
                lps = combine([per_model[i] for i in idx], how)
                rows.append({"models": [a.models[i] for i in idx], "average": how,
                             "forward_ms_per_line": sum(fwd_ms[i] for i in idx),
                             **score(recs[0], greedy, lps, truths)})
    print(table([(" + ".join(r["models"]), r["average"] or "-", f"{100 * r['greedy']['cer']:.2f}",
                  f"{100 * r['default']['cer']:.2f}", f"{100 * r['default']['wer']:.2f}",
                  f"{r['forward_ms_per_line']:.1f}") for r in rows],
                ("models", "average", "CER greedy %", "CER default %", "WER default %", "forward ms/line")))
    if a.json:
        write_json(a.json, {"machine": machine(), "data": a.data, "lines": len(truths), "rows": rows})


if __name__ == "__main__":
    main()
