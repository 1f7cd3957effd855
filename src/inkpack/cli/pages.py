"""The page commands: ``inkpack segment``, ``inkpack evaluate-pages``, ``recognize --page`` (page
scans) and ``recognize`` of PAGE-XML inputs. The work is in :mod:`inkpack.segment.commands`
(``run_pages``), :mod:`inkpack.segment.evaluate` and :mod:`inkpack.deploy.page`; nothing here
imports torch at module level.
"""

from __future__ import annotations

import argparse
import os
import sys

from inkpack.cli import options as O
from inkpack.cli.common import Out, image_rec, model_kind
from inkpack.cli.common import decoder as _decoder
from inkpack.errors import ConfigError, InkpackError, InputError

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
    return run_pages(a.images, a.out, a.format or "page", a.seg_model, lambda: image_rec(a, decoder, {}), a.threads,
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
    res = evaluate_pages(pairs, Segmenter(a.seg_model), image_rec(a, _decoder(a), {}))
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


def pagexml_inputs(path: str, a, kind_of_model: str, decoder, state: dict, out: Out) -> None:
    """A PAGE-XML file or folder: every TextLine recognized; with ``--out`` the filled XML written."""
    from inkpack.decode.recognition import Recognition
    from inkpack.deploy.page import crops_recognizer, recognize_pagexml

    if kind_of_model not in ("none", "image"):
        out.error(path, ConfigError(f"--model {a.model} is an {kind_of_model!r} model; {path} is a PAGE-XML page"))
        return

    def on_page(f: str, res) -> None:
        for lid, r in zip(res.line_ids, res.results):
            r = r if isinstance(r, Recognition) else Recognition(str(getattr(r, "text", r)))
            out.result(f"{f}:{lid}", r, r.text, sample=True)
        for e in res.errors:
            print(f"skipped: {f}: {e}", file=sys.stderr)

    target = getattr(a, "out", None)
    if target and not os.path.isdir(path) and target.lower().endswith(".xml") and not os.path.isdir(target):
        from inkpack.jsonio import check_output_file

        check_output_file(target, "--out")  # one page into one file: its folder is made now
    try:
        rep = recognize_pagexml(path, crops_recognizer(image_rec(a, decoder, state)), getattr(a, "out", None),
                                images_dir=getattr(a, "images_dir", None), batch_size=a.batch_size, on_page=on_page)
    except InkpackError as e:
        out.error(path, e)
        return
    for msg in rep.skipped_pages:  # one bad page of a folder is skipped and counted, never fatal
        print(f"skipped: {msg}", file=sys.stderr)
    if rep.outputs:
        print(f"wrote {len(rep.outputs)} PAGE-XML file(s): {rep.pages} pages, {rep.lines} lines "
              f"({len(rep.skipped_pages)} pages skipped)", file=sys.stderr)


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
