"""Evaluate page segmentation (+ recognition) on page images with ground-truth PAGE-XML.

Baseline detection: the cBAD tolerance measure (:mod:`inkpack.segment.cbad`). Page CER:
the page's recognized text in reading order (non-empty lines joined by newlines) against the
ground-truth text (same), and page WER (words), beside the same measure with the ground-truth line polygons
cropped and recognized ("GT-line") and the plain line-level CER of those GT lines.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
from tqdm import tqdm

from inkpack.errors import InkpackError
from inkpack.metrics import ErrorCounts
from inkpack.segment import cbad
from inkpack.segment.page import Segmenter, recognize_lines, to_gray
from inkpack.segment.pages import read_gt_page


def join(texts) -> str:
    return "\n".join(t for t in texts if t.strip())


def evaluate_pages(pairs: list[tuple[str, str]], segmenter: Segmenter, recognizer=None,
                   progress: bool = True) -> dict:
    pages, errors = [], []
    seg_s, page_s = [], []
    page_counts, gt_page_counts = ErrorCounts(), ErrorCounts()
    line_counts = ErrorCounts()
    for img, xml in tqdm(pairs, desc="pages", disable=not (progress and sys.stderr.isatty())):
        try:
            gt = read_gt_page(xml)
            t0 = time.perf_counter()
            gray = to_gray(img)
            lines = segmenter.segment(gray)
            t2 = t3 = time.perf_counter()
            sx, sy = gray.shape[1] / gt.width, gray.shape[0] / gt.height   # GT coordinates -> image
            if recognizer is not None:   # timed: decode + segmentation + cropping + recognition
                texts, _ = recognize_lines(gray, [ln.polygon for ln in lines], recognizer)
                t3 = time.perf_counter()
                ref_lines = [ln for ln in gt.lines if ln.text.strip()]
                gt_texts, _ = recognize_lines(gray, [ln.polygon * [sx, sy] for ln in ref_lines], recognizer)
        except InkpackError as e:
            errors.append(str(e))
            continue
        seg_s.append(t2 - t0)
        if recognizer is not None:
            page_s.append(t3 - t0)
        gtb = [ln.baseline * [sx, sy] for ln in gt.lines if ln.baseline is not None]
        score = cbad.page_scores(gtb, [ln.baseline for ln in lines])
        row = {"page": xml, "gt_lines": len(gtb), "lines": len(lines), **{k: score[k] for k in ("precision", "recall", "f1")},
               "seg_s": t2 - t0}
        if recognizer is not None:
            ref = join(ln.text for ln in ref_lines)
            hyp = join(texts)
            for h, ln in zip(gt_texts, ref_lines):
                line_counts.add(h, ln.text)
            one, gt_one = ErrorCounts(), ErrorCounts()
            for c in (one, page_counts):
                c.add(hyp, ref)
            for c in (gt_one, gt_page_counts):
                c.add(join(gt_texts), ref)
            row.update(page_cer=one.cer, page_wer=one.wer, gt_line_page_cer=gt_one.cer, gt_line_page_wer=gt_one.wer,
                       ref_chars=len(ref))
        pages.append(row)
    agg = cbad.aggregate(pages)
    out = {"pages": len(pages), "failed": errors, "baseline_precision": agg["precision"],
           "baseline_recall": agg["recall"], "baseline_f1": agg["f1"],
           "gt_lines": int(sum(p["gt_lines"] for p in pages)), "detected_lines": int(sum(p["lines"] for p in pages)),
           "seg_s_per_page": float(np.mean(seg_s)) if seg_s else None,
           "seg_s_p90": float(np.percentile(seg_s, 90)) if seg_s else None,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if recognizer is not None:
        out.update(page_cer=page_counts.cer, page_wer=page_counts.wer,
                   gt_line_page_cer=gt_page_counts.cer, gt_line_page_wer=gt_page_counts.wer,
                   gt_line_cer=line_counts.cer, gt_line_wer=line_counts.wer,
                   page_s_per_page=float(np.mean(page_s)) if page_s else None)
    out["per_page"] = pages
    return out
