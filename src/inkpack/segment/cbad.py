"""Baseline detection precision / recall / F1 with the tolerance scheme of ICDAR 2017 cBAD.

Following Grüning et al., "READ-BAD: a new dataset and evaluation scheme for baseline
detection in archival documents" (DAS 2018; the ICDAR 2017/2019 cBAD measure):

* polylines are resampled to points ``tick`` px apart along their length;
* each ground-truth (GT) line i gets a tolerance ``t_i = clip(rel_tol * d_i, min_tol, max_tol)``
  from its interline distance ``d_i`` (median vertical distance to the nearest GT baseline
  above or below in the same columns; the page median where it has no neighbour);
* a point at distance ``d`` from a polyline is covered with weight 1 if ``d <= t``,
  ``(3t - d) / 2t`` if ``t < d < 3t``, else 0;
* alignment: each hypothesis (detected) line is aligned to the one GT line that covers its
  points best (so a detection merging two GT lines only counts on one of them);
* recall R = mean over GT lines of the coverage of its points by the hypotheses aligned to it;
  precision P = mean over hypothesis lines of the coverage of its points by its GT line.
  Split lines keep R and P (both pieces align to the same GT line); merged lines lose both.

Per page P and R; over a set of pages, P and R are averaged over pages and
F1 = 2PR / (P + R). Coordinates in the GT's pixel grid (these pages: 50 % scans).
"""

from __future__ import annotations

import numpy as np

MIN_TOL, MAX_TOL, REL_TOL, TICK = 5.0, 15.0, 0.25, 2.5  # px at 50 % scale (10 / 30 / 5 at full scale)


def resample(poly: np.ndarray, tick: float = TICK) -> np.ndarray:
    poly = np.asarray(poly, np.float64)
    if len(poly) < 2:
        return poly.reshape(-1, 2)
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] < 1e-9:
        return poly[:1]
    n = max(2, int(round(cum[-1] / tick)) + 1)
    t = np.linspace(0, cum[-1], n)
    return np.stack([np.interp(t, cum, poly[:, 0]), np.interp(t, cum, poly[:, 1])], 1)


def point_to_polyline(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point to a polyline (its segments, not only its vertices)."""
    if len(poly) == 1:
        return np.linalg.norm(pts - poly[0], axis=1)
    a, b = poly[:-1], poly[1:]
    ab = b - a
    den = np.maximum((ab ** 2).sum(1), 1e-12)
    t = np.clip(((pts[:, None] - a[None]) * ab[None]).sum(2) / den[None], 0, 1)
    proj = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(pts[:, None] - proj, axis=2).min(1)


def coverage(d: np.ndarray, tol: float) -> np.ndarray:
    return np.where(d <= tol, 1.0, np.where(d < 3 * tol, (3 * tol - d) / (2 * tol), 0.0))


def interline_distances(gt: list[np.ndarray]) -> np.ndarray:
    """Per GT line: median vertical distance to the nearest other GT baseline in its columns."""
    out = np.full(len(gt), np.nan)
    for i, g in enumerate(gt):
        ds = []
        for x, y in resample(g, 5.0):
            best = np.inf
            for j, o in enumerate(gt):
                if j != i and o[:, 0].min() <= x <= o[:, 0].max():
                    order = np.argsort(o[:, 0])
                    d = abs(np.interp(x, o[order, 0], o[order, 1]) - y)
                    if 1e-6 < d < best:
                        best = d
            if np.isfinite(best):
                ds.append(best)
        if ds:
            out[i] = np.median(ds)
    if np.isnan(out).all():
        return np.full(len(gt), np.inf)
    return np.where(np.isnan(out), np.nanmedian(out), out)


def tolerances(gt: list[np.ndarray], min_tol=MIN_TOL, max_tol=MAX_TOL, rel_tol=REL_TOL) -> np.ndarray:
    return np.clip(rel_tol * interline_distances(gt), min_tol, max_tol)


def page_scores(gt: list, hyp: list, tick: float = TICK, tols: np.ndarray | None = None) -> dict:
    """P, R, F1 for one page; ``gt`` and ``hyp`` are lists of [k, 2] baseline polylines."""
    gt = [np.asarray(g, np.float64).reshape(-1, 2) for g in gt if len(g)]
    hyp = [np.asarray(h, np.float64).reshape(-1, 2) for h in hyp if len(h)]
    if not gt and not hyp:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "gt": 0, "hyp": 0}
    if not gt or not hyp:
        return {"precision": 0.0 if hyp else 1.0, "recall": 0.0 if gt else 1.0, "f1": 0.0,
                "gt": len(gt), "hyp": len(hyp)}
    tols = tolerances(gt) if tols is None else np.asarray(tols, np.float64)
    gpts = [resample(g, tick) for g in gt]
    hpts = [resample(h, tick) for h in hyp]
    # precision side: coverage of each hypothesis' points by each GT line (GT line's tolerance)
    hcov = np.array([[coverage(point_to_polyline(hp, g), tols[j]).mean() for j, g in enumerate(gt)]
                     for hp in hpts])
    align = hcov.argmax(1)
    precision = float(hcov[np.arange(len(hyp)), align].mean())
    rec = []
    for j, gp in enumerate(gpts):
        mine = [hyp[i] for i in range(len(hyp)) if align[i] == j]
        if not mine:
            rec.append(0.0)
            continue
        d = np.min([point_to_polyline(gp, h) for h in mine], axis=0)
        rec.append(float(coverage(d, tols[j]).mean()))
    recall = float(np.mean(rec))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gt": len(gt), "hyp": len(hyp)}


def aggregate(pages: list[dict]) -> dict:
    if not pages:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "pages": 0}
    p = float(np.mean([s["precision"] for s in pages]))
    r = float(np.mean([s["recall"] for s in pages]))
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r > 0 else 0.0, "pages": len(pages)}
