"""The page commands: ``inkpack segment``, ``inkpack evaluate-pages`` and ``recognize --page``
(page scans). The work is in :mod:`inkpack.segment.commands` (``run_pages``) and
:mod:`inkpack.segment.evaluate`; ``recognize`` of PAGE-XML inputs is
:class:`inkpack.infer.files.FileRecognizer`. Nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import sys

from inkpack.cli import options as O
from inkpack.cli.common import decoder as _decoder
from inkpack.cli.common import file_recognizer
from inkpack.errors import ConfigError, InputError
from inkpack.infer.files import model_kind

SEGMENT_HELP = "find the text lines of page images (PAGE-XML, ALTO, JSON), optionally read them"
FORMATS = ("alto", "json", "page", "text")  # = sorted(inkpack.segment.commands.SUFFIX)


def page_scans(a: argparse.Namespace) -> int:
    """``recognize --page``: page scans segmented, each line recognized, PAGE-XML / ALTO / text written."""
    from inkpack.segment.commands import run_pages

    if a.json:
        raise ConfigError("--json: with --page use --format json")
    kind_of_model = model_kind(a.model)
    if kind_of_model not in ("none", "image"):
        raise ConfigError(f"--model {a.model} is an {kind_of_model!r} model; --page needs a line image model")
    decoder = _decoder(a)
    return run_pages(a.images, a.out, a.format or "page", a.seg_model,
                     lambda: file_recognizer(a, decoder).line_recognizer(), a.threads,
                     check_180=getattr(a, "check_180", False))


def cmd_evaluate_pages(a: argparse.Namespace) -> int:
    """Baseline P/R/F1 (cBAD) and page CER/WER on page scans with ground-truth PAGE-XML."""
    import torch

    from inkpack.segment.evaluate import evaluate_pages
    from inkpack.segment.page import Segmenter
    from inkpack.segment.pages import page_pairs

    if model_kind(a.model) not in ("none", "image"):
        raise ConfigError(f"--model {a.model}: evaluate-pages needs a line image model")
    torch.set_num_threads(a.threads)
    pairs = page_pairs(a.data)
    res = evaluate_pages(pairs, Segmenter(a.seg_model), file_recognizer(a, _decoder(a)).line_recognizer())
    for msg in res["failed"]:
        print(f"skipped: {msg}", file=sys.stderr)
    if not res["pages"]:
        raise InputError(f"{a.data}: no page could be evaluated ({len(res['failed'])} failed)")
    print(f"baseline P {res['baseline_precision']:.3f}  R {res['baseline_recall']:.3f}  F1 {res['baseline_f1']:.3f}  "
          f"page CER {100 * res['page_cer']:.2f}%  WER {100 * res['page_wer']:.2f}%  "
          f"(GT lines: CER {100 * res['gt_line_page_cer']:.2f}%  WER {100 * res['gt_line_page_wer']:.2f}%)  "
          f"pages {res['pages']}  {res['page_s_per_page']:.2f} s/page")
    if a.json:
        from inkpack.jsonio import write_json

        write_json(a.json, {"data": a.data, "threads": a.threads, **res}, flag="--json")
    return 0


def cmd_segment(a: argparse.Namespace) -> int:
    from inkpack.segment.commands import run_pages

    if a.format == "text" and not a.recognize:
        raise InputError("--format text needs --recognize")

    def line_model():
        from inkpack.api import load

        return load(a.line_model, threads=max(1, a.threads))

    return run_pages(a.pages, a.out, a.format, a.seg_model, line_model if a.recognize else None, a.threads,
                     check_180=getattr(a, "check_180", False))


def add_evaluate_pages_parser(sub) -> None:
    ep = sub.add_parser("evaluate-pages", help="page scans + ground-truth PAGE-XML: baseline P/R/F1 (cBAD), "
                                               "page CER/WER beside the CER with ground-truth lines")
    ep.add_argument("data", help="folder of page images with their PAGE-XML (same stem)")
    O.model(ep, "line model: name, path or .onnx (default: the bundled offline model)")
    O.seg_model(ep)
    O.json_out(ep)
    O.runtime(ep)
    O.decoder(ep)
    ep.set_defaults(fn=cmd_evaluate_pages)


def add_segment_parser(sub) -> None:
    s = sub.add_parser("segment", help=SEGMENT_HELP)
    s.add_argument("pages", nargs="+", help="page image(s) or folder(s) of page images")
    s.add_argument("--out", help="output file (one page; default: standard output) or folder (several pages)")
    s.add_argument("--format", choices=FORMATS, default="page", help="PAGE-XML 2019 (default), ALTO 4, JSON, text")
    O.seg_model(s)
    s.add_argument("--recognize", action="store_true", help="also recognize each line (text and confidences)")
    s.add_argument("--line-model", help="line model for --recognize (default: the bundled offline model)")
    O.check_180(s, "also try each page upside down (a second segmentation); pages scanned sideways "
                   "are always turned upright")
    O.threads(s, help="torch intra-op threads", type=int)
    s.set_defaults(fn=cmd_segment)
