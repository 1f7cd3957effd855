"""How much would an ensemble of line models gain? Frame-level averaging and text-level voting.

The models (same alphabet) read every val line. Models that also share input height and frame
rate (e.g. two runs of one recipe) have their per-frame outputs averaged — probabilities
(``prob``) or log-probabilities (``logprob``, a product of experts), renormalised — and decoded
greedily and with the first model's own decoder (the shipped default: beam 8 + its character
LM). Any three or more models are also combined after decoding (``vote``, ROVER-like: every
reading is aligned to the first model's by edit distance, and each character slot and each gap
between slots takes the majority; ties go to the first model), each model's outputs decoded
with the same two decoders. Each row: CER / WER of one model or of an ensemble. A gain here says
an ensemble is a better teacher to distil from; the ensemble itself costs the sum of its models'
forward passes. List the best model first: it is the pivot of the vote and its decoder is used.

    python benchmarks/ensemble.py [--quick] [--json OUT] --models STEM STEM [...]
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

import numpy as np
import torch
from rapidfuzz.distance import Levenshtein

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


def vote(readings: list[str]) -> str:
    """ROVER-like majority over readings of one line: each is aligned to ``readings[0]`` (the
    pivot); per pivot character the readings' aligned character or nothing, per gap between
    pivot characters their inserted text or nothing, each slot taking its most frequent entry
    (ties to the pivot's)."""
    piv = readings[0]
    n = len(piv)
    slots = [Counter() for _ in range(n)]
    gaps = [Counter() for _ in range(n + 1)]
    for rank, h in enumerate(readings):
        sub, ins = list(piv), [""] * (n + 1)
        for tag, i1, i2, j1, j2 in Levenshtein.opcodes(piv, h):
            if tag in ("equal", "replace"):
                m = min(i2 - i1, j2 - j1)
                sub[i1:i2] = [h[j1 + d] if d < m else "" for d in range(i2 - i1)]
                ins[i2] += h[j1 + m:j2]
            elif tag == "delete":
                sub[i1:i2] = [""] * (i2 - i1)
            else:  # insert
                ins[i1] += h[j1:j2]
        w = 1.0 + (1e-3 if rank == 0 else 0.0)
        for i in range(n):
            slots[i][sub[i]] += w
        for i in range(n + 1):
            gaps[i][ins[i]] += w
    out = []
    for i in range(n + 1):
        out.append(gaps[i].most_common(1)[0][0])
        if i < n:
            out.append(slots[i].most_common(1)[0][0])
    return "".join(out)


def measure(hyps: list[str], truths: list[str]) -> dict:
    from inkpack.metrics import cer, wer

    return {"cer": cer(hyps, truths), "wer": wer(hyps, truths)}


def score(rec, greedy, lps, truths) -> tuple[dict, dict]:
    """CER / WER of ``lps`` decoded greedily and by ``rec``'s decoder, and the readings."""
    row, texts = {}, {}
    for name, r in (("greedy", greedy), ("default", rec)):
        t0 = time.perf_counter()
        texts[name] = [r.decode(torch.from_numpy(lp)[:, None], torch.tensor([lp.shape[0]]))[0] for lp in lps]
        row[name] = {**measure(texts[name], truths),
                     "decode_ms_per_line": 1000 * (time.perf_counter() - t0) / len(lps)}
    return row, texts


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
        if r.alphabet.symbols != recs[0].alphabet.symbols:
            raise SystemExit("ensemble: the models differ in alphabet")
    per_model, fwd_ms = [], []
    for r in recs:
        t0 = time.perf_counter()
        per_model.append(outputs(r, grays))
        fwd_ms.append(1000 * (time.perf_counter() - t0) / len(grays))
    rows, texts = [], []
    for i, m in enumerate(a.models):
        row, txt = score(recs[0], greedy, per_model[i], truths)
        rows.append({"models": [m], "average": None, "forward_ms_per_line": fwd_ms[i], **row})
        texts.append(txt)
    for k in range(2, len(recs) + 1):
        for idx in itertools.combinations(range(len(recs)), k):
            if k >= 3:
                rows.append({"models": [a.models[i] for i in idx], "average": "vote",
                             "forward_ms_per_line": sum(fwd_ms[i] for i in idx),
                             **{d: measure([vote(list(r)) for r in zip(*(texts[i][d] for i in idx))], truths)
                                for d in ("greedy", "default")}})
            if len({recs[i].height for i in idx}) > 1:
                continue
            for how in ("prob", "logprob"):
                lps = combine([per_model[i] for i in idx], how)
                rows.append({"models": [a.models[i] for i in idx], "average": how,
                             "forward_ms_per_line": sum(fwd_ms[i] for i in idx),
                             **score(recs[0], greedy, lps, truths)[0]})
    print(table([(" + ".join(r["models"]), r["average"] or "-", f"{100 * r['greedy']['cer']:.2f}",
                  f"{100 * r['default']['cer']:.2f}", f"{100 * r['default']['wer']:.2f}",
                  f"{r['forward_ms_per_line']:.1f}") for r in rows],
                ("models", "average", "CER greedy %", "CER default %", "WER default %", "forward ms/line")))
    if a.json:
        write_json(a.json, {"machine": machine(), "data": a.data, "lines": len(truths), "rows": rows})


if __name__ == "__main__":
    main()
