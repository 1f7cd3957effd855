"""Derive IAM-like word-box sizes from IAM-OnDB lines (sizes only: no ink leaves this script).

IAM's ``words.txt`` was not available (see ``../shared/data/iam-sizes/README.md``), so word
sizes for the packing benchmark are derived from the online IAM-OnDB lines:

* Scale: each line's bounding box is taken from its point coordinates (whiteboard units, y
  down). One global factor maps them to the pixels of a 300 dpi IAM scan: the median IAM
  line-box height (``lines.tsv``) divided by the median IAM-OnDB line-box height.
* Words: strokes are projected onto the x axis and overlapping projections merged into
  ink runs; the ``n - 1`` widest gaps between runs split the line into the ``n`` words of
  its transcription (text split on spaces, LOB tokens such as ``.`` count as words, as in
  IAM's own word segmentation). Lines with fewer gaps than needed are skipped.
* Size of a word: the bounding box of the points of its strokes, scaled, rounded up, plus
  one pixel for the pen width (an IAM box includes the ink thickness).

Output: ``iamondb_word_sizes.tsv`` with columns ``id w h`` (id = line id + word index).
Usage: ``python benchmarks/data/make_word_sizes.py [--data DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2] / "shared" / "data"


def line_strokes(points: np.ndarray) -> list[np.ndarray]:
    """Split a line's ``[N, 3]`` points (x, y, pen_end) into ``[k, 2]`` strokes."""
    cuts = np.flatnonzero(points[:, 2]) + 1
    return [s for s in np.split(points[:, :2].astype(np.int64), cuts) if len(s)]


def split_words(strokes: list[np.ndarray], n_words: int) -> list[np.ndarray] | None:
    """Group strokes into ``n_words`` x-ordered words at the widest gaps; None if too few gaps."""
    spans = sorted((int(s[:, 0].min()), int(s[:, 0].max()), k) for k, s in enumerate(strokes))
    runs: list[list] = []  # [x0, x1, stroke indices]
    for x0, x1, k in spans:
        if runs and x0 <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], x1)
            runs[-1][2].append(k)
        else:
            runs.append([x0, x1, [k]])
    if len(runs) < n_words:
        return None
    gaps = [runs[i + 1][0] - runs[i][1] for i in range(len(runs) - 1)]
    # stable: among equal gaps prefer the leftmost, so the result does not depend on sort details
    cut_after = sorted(sorted(range(len(gaps)), key=lambda i: (-gaps[i], i))[: n_words - 1])
    words, start = [], 0
    for c in cut_after + [len(runs) - 1]:
        idx = [k for r in runs[start : c + 1] for k in r[2]]
        words.append(np.concatenate([strokes[k] for k in idx]))
        start = c + 1
    return words


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE / "iamondb_word_sizes.tsv")
    args = ap.parse_args()

    iam = np.loadtxt(args.data / "iam-sizes" / "lines.tsv", skiprows=1, usecols=(1, 2))
    d = np.load(args.data / "iamondb" / "train.npz")
    pts, off, texts, ids = d["points"], d["offsets"], d["texts"], d["ids"]
    n_lines = len(off) - 1
    line_h = np.array([np.ptp(pts[off[i] : off[i + 1], 1]) for i in range(n_lines)], dtype=float)
    scale = float(np.median(iam[:, 1]) / np.median(line_h))

    rows, skipped = [], 0
    for i in range(n_lines):
        tokens = str(texts[i]).split()
        strokes = line_strokes(pts[off[i] : off[i + 1]])
        words = split_words(strokes, len(tokens)) if tokens and strokes else None
        if words is None:
            skipped += 1
            continue
        for j, wp in enumerate(words):
            w = math.ceil(np.ptp(wp[:, 0]) * scale) + 1
            h = math.ceil(np.ptp(wp[:, 1]) * scale) + 1
            rows.append(f"{ids[i]}-{j:02d}\t{w}\t{h}")
    args.out.write_text("id\tw\th\n" + "\n".join(rows) + "\n", encoding="utf-8")
    ws = np.array([int(r.split("\t")[1]) for r in rows])
    hs = np.array([int(r.split("\t")[2]) for r in rows])
    print(f"scale {scale:.5f} px/unit (IAM median line h {np.median(iam[:, 1]):.0f} px, "
          f"IAM-OnDB median {np.median(line_h):.0f} units)")
    print(f"{len(rows)} words from {n_lines - skipped} lines ({skipped} skipped: too few gaps); "
          f"median w {np.median(ws):.0f} h {np.median(hs):.0f}, "
          f"w 5-95% {np.percentile(ws, 5):.0f}-{np.percentile(ws, 95):.0f}, "
          f"h 5-95% {np.percentile(hs, 5):.0f}-{np.percentile(hs, 95):.0f}")


if __name__ == "__main__":
    main()
