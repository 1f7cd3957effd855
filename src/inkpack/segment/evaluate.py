"""Evaluate page segmentation (+ recognition) on page images with ground-truth PAGE-XML.

Baseline detection: the cBAD tolerance measure (:mod:`inkpack.segment.cbad`). Page CER:
the page's recognized text in reading order (non-empty lines joined by newlines) against the
ground-truth text (same), and page WER (words), beside the same measure with the ground-truth line polygons
cropped and recognized ("GT-line") and the plain line-level CER of those GT lines. To tell
reading-order disagreements from reading errors, ``page_cer_gt_order`` is the page CER with the
detected lines put in the ground truth's order (each matched to the ground-truth line its
polygon overlaps most, IoU > 0.25; an unmatched line stays after the line before it).
"""

from __future__ import annotations

import resource
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

from inkpack.errors import InkpackError
from inkpack.metrics import ErrorCounts
from inkpack.segment import cbad
from inkpack.segment.page import Segmenter, recognize_lines, to_gray
from inkpack.segment.pages import read_gt_page


def join(texts) -> str:
    return "\n".join(t for t in texts if t.strip())


def gt_order(polys: list[np.ndarray], gt_polys: list[np.ndarray], shape: tuple[int, int], f: int = 4) -> list[int]:
    """Indices of the detected lines ``polys`` sorted into the order of the ground-truth lines."""
    def mask(p):
        m = np.zeros((shape[0] // f + 1, shape[1] // f + 1), np.uint8)
        cv2.fillPoly(m, [np.round(np.asarray(p) / f).astype(np.int32)], 1)
        return m.astype(bool)

    gm = [mask(p) for p in gt_polys]
    key, last = [], -1.0
    for i, p in enumerate(polys):
        a = mask(p)
        iou = [(a & b).sum() / max(1, (a | b).sum()) for b in gm]
        if iou and max(iou) > 0.25:
            last = float(np.argmax(iou))
            key.append((last, 0, i))
        else:
            key.append((last, 1, i))
    return [i for *_, i in sorted(key)]


def evaluate_pages(pairs: list[tuple[str, str]], segmenter: Segmenter, recognizer=None,
                   progress: bool = True) -> dict:
    pages, errors = [], []
    seg_s, page_s, seg_cpu, page_cpu = [], [], [], []
    page_counts, gt_page_counts, gt_order_counts = ErrorCounts(), ErrorCounts(), ErrorCounts()
    line_counts = ErrorCounts()
    for img, xml in tqdm(pairs, desc="pages", disable=not (progress and sys.stderr.isatty())):
        try:
            gt = read_gt_page(xml)
            t0, c0 = time.perf_counter(), time.process_time()
            gray = to_gray(img)
            lines = segmenter.segment(gray)
            t2 = t3 = time.perf_counter()
            c2 = c3 = time.process_time()
            sx, sy = gray.shape[1] / gt.width, gray.shape[0] / gt.height   # GT coordinates -> image
            if recognizer is not None:   # timed: decode + segmentation + cropping + recognition
                texts, _ = recognize_lines(gray, [ln.polygon for ln in lines], recognizer)
                t3, c3 = time.perf_counter(), time.process_time()
                ref_lines = [ln for ln in gt.lines if ln.text.strip()]
                gt_texts, _ = recognize_lines(gray, [ln.polygon * [sx, sy] for ln in ref_lines], recognizer)
        except InkpackError as e:
            errors.append(str(e))
            continue
        seg_s.append(t2 - t0)
        seg_cpu.append(c2 - c0)
        if recognizer is not None:
            page_s.append(t3 - t0)
            page_cpu.append(c3 - c0)
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
            order = gt_order([ln.polygon for ln in lines], [ln.polygon * [sx, sy] for ln in ref_lines], gray.shape)
            gt_order_counts.add(join(texts[i] for i in order), ref)
            row.update(page_cer=one.cer, page_wer=one.wer, gt_line_page_cer=gt_one.cer, gt_line_page_wer=gt_one.wer,
                       ref_chars=len(ref))
        pages.append(row)
    agg = cbad.aggregate(pages)
    out = {"pages": len(pages), "failed": errors, "baseline_precision": agg["precision"],
           "baseline_recall": agg["recall"], "baseline_f1": agg["f1"],
           "gt_lines": int(sum(p["gt_lines"] for p in pages)), "detected_lines": int(sum(p["lines"] for p in pages)),
           "seg_s_per_page": float(np.mean(seg_s)) if seg_s else None,
           "seg_s_p90": float(np.percentile(seg_s, 90)) if seg_s else None,
           # CPU seconds of this process: what one thread costs, also on a machine shared with other jobs
           "seg_cpu_s_per_page": float(np.mean(seg_cpu)) if seg_cpu else None,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if recognizer is not None:
        out.update(page_cer=page_counts.cer, page_wer=page_counts.wer, page_cer_gt_order=gt_order_counts.cer,
                   gt_line_page_cer=gt_page_counts.cer, gt_line_page_wer=gt_page_counts.wer,
                   gt_line_cer=line_counts.cer, gt_line_wer=line_counts.wer,
                   page_s_per_page=float(np.mean(page_s)) if page_s else None,
                   page_cpu_s_per_page=float(np.mean(page_cpu)) if page_cpu else None)
    out["per_page"] = pages
    return out
