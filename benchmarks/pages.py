"""Whole-page recognition on the Hooker val pages: segmentation quality, page CER, speed.

* baseline detection precision / recall / F1: the cBAD tolerance measure
  (:mod:`inkpack.segment.cbad`) of the shipped segmenter and, for comparison, of the
  classical projection-profile segmenter (:mod:`inkpack.segment.classical`);
* page CER (and WER): recognized page text in reading order vs the ground truth (non-empty lines joined
  by newlines), beside the same with the ground-truth line polygons and the line-level CER, and
  the page CER with the segmented lines put in the ground truth's order (reading order aside);
* seconds per page (one thread): segmentation (decode + network + post-processing) and the
  whole page (+ cropping and recognizing every line), wall clock and CPU time of the process
  (the CPU seconds are what one thread costs when the machine is shared with other jobs);
  peak resident memory.

    python benchmarks/pages.py [--quick] [--json OUT] [--seg-model STEM] [--line-model STEM] [--data DIR]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from common import SHARED, machine, parser, table, write_json  # noqa: E402

from inkpack.errors import InkpackError  # noqa: E402
from inkpack.segment.classical import ClassicalSegmenter  # noqa: E402
from inkpack.segment.evaluate import evaluate_pages  # noqa: E402
from inkpack.segment.page import Segmenter  # noqa: E402
from inkpack.segment.pages import page_pairs  # noqa: E402


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seg-model", default=None, help="segmenter (default models/hooker-segment)")
    p.add_argument("--line-model", default=None, help="line recognizer (default: the bundled model)")
    p.add_argument("--data", default=str(SHARED / "data/hooker/page-scans/val"))
    p.add_argument("--no-classical", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    try:
        import inkpack

        pairs = page_pairs(a.data)
        if a.quick:
            pairs = pairs[:8]
        seg = Segmenter(a.seg_model)
        rec = inkpack.load(a.line_model, threads=1)
        t0 = time.time()
        res = evaluate_pages(pairs, seg, rec)
        classical = None if a.no_classical else evaluate_pages(pairs, ClassicalSegmenter(), None)
    except InkpackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    per_page = res.pop("per_page")
    out = {"data": a.data, "quick": a.quick, "seg_model": a.seg_model or "models/hooker-segment",
           "line_model": a.line_model or "bundled default", "threads": 1, **res,
           "wall_s": time.time() - t0, "machine": machine()}
    if classical is not None:
        classical.pop("per_page")
        out["classical"] = {k: classical[k] for k in ("baseline_precision", "baseline_recall", "baseline_f1",
                                                     "detected_lines", "seg_s_per_page")}
    rows = [("segmenter (cBAD P / R / F1)", f"{res['baseline_precision']:.3f} / {res['baseline_recall']:.3f} / "
             f"{res['baseline_f1']:.3f}", ">= 0.95 F1")]
    if classical is not None:
        rows.append(("classical projection profile", f"{classical['baseline_precision']:.3f} / "
                     f"{classical['baseline_recall']:.3f} / {classical['baseline_f1']:.3f}", ""))
    rows += [("lines detected / GT", f"{res['detected_lines']} / {res['gt_lines']}", ""),
             ("page CER (segmented)", f"{100 * res['page_cer']:.2f}%", "<= GT-line + 2 points"),
             ("page CER with GT line polygons", f"{100 * res['gt_line_page_cer']:.2f}%", ""),
             ("page CER, segmented lines in GT order", f"{100 * res['page_cer_gt_order']:.2f}%", ""),
             ("page WER (segmented / GT line polygons)",
              f"{100 * res['page_wer']:.2f}% / {100 * res['gt_line_page_wer']:.2f}%", ""),
             ("line CER with GT line polygons", f"{100 * res['gt_line_cer']:.2f}%", ""),
             ("segmentation s/page (1 thread), wall / CPU",
              f"{res['seg_s_per_page']:.3f} (p90 {res['seg_s_p90']:.3f}) / {res['seg_cpu_s_per_page']:.3f}", "<= 0.5"),
             ("whole page s/page (1 thread), wall / CPU",
              f"{res['page_s_per_page']:.3f} / {res['page_cpu_s_per_page']:.3f}", "<= 1"),
             ("peak RSS", f"{res['peak_rss_mb']:.0f} MB", "")]
    print(f"{res['pages']} pages of {a.data}" + (f"; failed: {res['failed']}" if res["failed"] else ""))
    print(table(rows, ("measure", "value", "goal")))
    out["per_page"] = per_page
    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
