"""How much of the Hooker CER is label noise: expanded abbreviations in the transcriptions.

The transcriptions expand abbreviations (the written ``wd`` is transcribed ``would``), so a
model that reads the ink correctly is scored wrong there. 1) The model reads the *train* lines;
truth and output are aligned word by word (rapidfuzz opcodes on word lists), and a truth word
that comes out as a word at most half as long made of its letters in order (``would`` →
``wd``, ``received`` → ``recd``; or ``&`` for ``and``) is counted as a candidate expansion; pairs seen at least ``--min-count``
times form the expansion list. 2) On the *val* lines: CER of all lines, of the lines whose
truth holds none of the listed expanded words, and of those that hold one; plus the share of
all val character errors made on listed words read as their abbreviation.

    python benchmarks/label_noise.py [--quick] [--json OUT] [--model STEM]
"""

from __future__ import annotations

import collections

from rapidfuzz.distance import Levenshtein

from common import REPO, SHARED, machine, parser, read_lines, table, write_json


def is_abbreviation(short: str, long: str) -> bool:
    """``short`` could be ``long`` abbreviated: ``&`` for ``and``, or at most half its length
    (``wd``/``would``, ``recd``/``received``), its letters in order, the first letter kept."""
    if short == "&" and long.lower() == "and":
        return True
    # words of 4+ letters only: a dropped letter of "to" or "in" is a reading error, not a form
    if not (short.isalpha() and long.isalpha()) or len(long) < 4:
        return False
    if len(short) > len(long) // 2 or short[0].lower() != long[0].lower():
        return False
    it = iter(long.lower())
    return all(c in it for c in short.lower())


def word_pairs(truth: str, hyp: str):
    """(truth word, output word) for words substituted one for one."""
    t, h = truth.split(), hyp.split()
    for op in Levenshtein.opcodes(t, h):
        if op.tag == "replace" and op.src_end - op.src_start == op.dest_end - op.dest_start:
            yield from zip(t[op.src_start:op.src_end], h[op.dest_start:op.dest_end])


def main() -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "hooker-darknet"))
    ap.add_argument("--min-count", type=int, default=2, help="times a pair must be seen on train (default 3)")
    a = ap.parse_args()
    import torch

    from inkpack.metrics import ErrorCounts
    from inkpack.infer.recognizer import open_recognizer

    torch.set_num_threads(1)
    rec = open_recognizer(a.model, threads=None, decoder="greedy")  # the network alone (the LM saw train)
    data = SHARED / "data" / "hooker"
    grays, truths = read_lines(data / "train.tsv", 400 if a.quick else None)
    hyps = rec.recognize_prepared([rec.prepare(g) for g in grays])
    pairs = collections.Counter(p for t, h in zip(truths, hyps) for p in word_pairs(t, h)
                                if is_abbreviation(p[1].strip(".,;:"), p[0].strip(".,;:")))
    expansions = {t: h for (t, h), n in pairs.most_common() if n >= a.min_count}
    listed = {t.strip(".,;:") for t in expansions}

    vgrays, vtruths = read_lines(data / "val.tsv", 120 if a.quick else None)
    vhyps = rec.recognize_prepared([rec.prepare(g) for g in vgrays])
    every, clean, noisy = ErrorCounts(), ErrorCounts(), ErrorCounts()
    abbrev_errors = 0
    for t, h in zip(vtruths, vhyps):
        every.add(h, t)
        (noisy if any(w.strip(".,;:") in listed for w in t.split()) else clean).add(h, t)
        abbrev_errors += sum(Levenshtein.distance(tw, hw) for tw, hw in word_pairs(t, h)
                             if tw.strip(".,;:") in listed and is_abbreviation(hw.strip(".,;:"), tw.strip(".,;:")))
    res = {
        "model": a.model.replace(str(REPO) + "/", ""), "quick": a.quick, "train_lines": len(truths),
        "val_lines": len(vtruths), "min_count": a.min_count,
        "expansions": [{"truth": t, "read": h, "count": pairs[(t, h)]} for t, h in expansions.items()],
        "val_cer_all": every.cer, "val_cer_lines_without_expansions": clean.cer,
        "val_cer_lines_with_expansions": noisy.cer,
        "val_lines_with_expansions": sum(1 for t in vtruths if any(w.strip(".,;:") in listed for w in t.split())),
        "abbreviation_char_errors": abbrev_errors, "val_char_errors": every.char_errors,
        "share_of_val_char_errors": abbrev_errors / max(1, every.char_errors), "machine": machine(),
    }
    print(table([(e["truth"], e["read"], e["count"]) for e in res["expansions"][:25]],
                ("truth word", "model reads", "times on train")))
    print(table([("all val lines", res["val_lines"], f"{100 * every.cer:.2f}"),
                 ("lines without a listed expansion", res["val_lines"] - res["val_lines_with_expansions"],
                  f"{100 * clean.cer:.2f}"),
                 ("lines with one", res["val_lines_with_expansions"], f"{100 * noisy.cer:.2f}")],
                ("subset", "lines", "CER %")))
    print(f"character errors on listed words read as their abbreviation: {abbrev_errors} of "
          f"{every.char_errors} ({100 * res['share_of_val_char_errors']:.1f}% of the val CER)")
    write_json(a.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
