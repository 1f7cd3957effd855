"""``inkpack evaluate``, ``recognize`` and ``demo``: the commands that run a recognizer.

One inference layer for all of them: every line image goes through
:class:`inkpack.infer.recognizer.Recognizer` (its ``prepare``, backend and decoding, shared with
the Python API, the service and ``report``), whatever command reads it. ``--model`` takes a
name, a path or an ``.onnx`` file everywhere, as ``inkpack.load`` does; what it reads is
``models.io.input_kind``. The work is in the library: ``evaluate`` of line data is
:func:`inkpack.infer.evaluate.evaluate_lines`; ``recognize`` dispatches files by content (images,
ink lines, ``.pot`` characters, PAGE-XML) with :class:`inkpack.infer.files.FileRecognizer`;
``--page`` scans are :mod:`inkpack.cli.pages`. This module parses, calls and prints.

Nothing here imports torch at module level (``inkpack --help`` imports this module).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from inkpack.cli import options as O
from inkpack.cli import types as T
from inkpack.cli.common import Out, file_recognizer
from inkpack.cli.common import decoder as _decoder
from inkpack.cli.pages import page_scans
from inkpack.errors import ConfigError, InputError
from inkpack.infer.evaluate import evaluate_lines

REPO = Path(__file__).resolve().parents[3]
INK_DATA = (".pot", ".npz")


# ------------------------------------------------------------------ evaluate
def cmd_evaluate(a: argparse.Namespace) -> int:
    from inkpack.jsonio import check_output_file

    check_output_file(a.json, "--json")
    check_output_file(a.output, "--output")
    if not os.path.exists(a.data):
        raise InputError(f"{a.data}: file not found")
    if not os.path.isdir(a.data):
        from inkpack.infer.inputs import file_kind

        if Path(a.data).suffix.lower() in INK_DATA or file_kind(a.data) == "npz":
            if a.output:
                raise ConfigError("--output: per-line results are written for line images, not ink data")
            if getattr(a, "images_dir", None):
                raise ConfigError(f"--images: page images belong to PAGE-XML data; {a.data} is ink data")
            from inkpack.ink_commands import evaluate_ink

            evaluate_ink(a.data, a.model, a.json, threads=a.threads, batch_size=a.batch_size, decoder=_decoder(a),
                         perturb=getattr(a, "perturb_order", None), seed=getattr(a, "perturb_seed", 0))
            return 0
    if getattr(a, "perturb_order", None):
        raise ConfigError(f"--perturb-order: stroke-order perturbations apply to ink data; {a.data} is line images")
    res = evaluate_lines(a.data, a.model, images_dir=getattr(a, "images_dir", None), batch_size=a.batch_size,
                         threads=a.threads, device=a.device, decoder=_decoder(a),
                         progress=getattr(a, "progress", "auto"), output=a.output)
    print(f"CER {100 * res['cer']:.2f}%  WER {100 * res['wer']:.2f}%  lines {res['lines']}  "
          f"{res['lines_per_s']:.1f} lines/s  {res['ms_per_line']:.2f} ms/line")
    if a.json:
        from inkpack.jsonio import write_json

        write_json(a.json, res, flag="--json")
    return 0


def cmd_recognize(a: argparse.Namespace) -> int:
    if getattr(a, "page", False):
        return page_scans(a)
    for flag in ("format", "seg_model"):
        if getattr(a, flag, None) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')}: only with --page (page scans)")
    out = Out(a.json, len(a.images) > 1)
    file_recognizer(a, _decoder(a)).run(a.images, out, getattr(a, "out", None))
    out.close()
    return 2 if out.failed else 0


# ------------------------------------------------------------------ demo
def cmd_demo(a: argparse.Namespace) -> int:
    """Recognize the bundled sample lines with the bundled model."""
    from inkpack.data.images import load_gray
    from inkpack.data.lines import read_records
    from inkpack.infer.recognizer import open_recognizer
    from inkpack.metrics import ErrorCounts

    rec = open_recognizer(a.model, threads=1, device="cpu")
    records, errors = read_records(str(REPO / "samples" / "hooker" / "samples.tsv"))
    if errors or not records:
        raise InputError(f"bundled samples unreadable: {errors[:1] or 'no lines'}")
    images = [rec.prepare(load_gray(r.path)) for r in records]
    rec.recognize_prepared(images[:2], 1)
    counts = ErrorCounts()
    t0 = time.perf_counter()
    hyps = [rec.recognize_prepared([im], 1)[0] for im in images]
    dt = time.perf_counter() - t0
    for r, h in zip(records, hyps):
        counts.add(h, r.text)
        print(f"{r.id}\n  truth: {r.text}\n  read:  {h}")
    how = "greedy" if rec.decoder is None else f"{rec.decoder.kind}, beam {rec.decoder.beam}"
    print(f"\n{len(hyps)} lines  CER {100 * counts.cer:.2f}%  WER {100 * counts.wer:.2f}%  "
          f"{1000 * dt / len(hyps):.1f} ms/line (1 thread, {how} decoding)")
    return 0


# ------------------------------------------------------------------ parsers
def add_parsers(sub) -> None:
    """``evaluate`` and ``recognize``."""
    e = sub.add_parser("evaluate", help="CER/WER and speed on labelled data")
    e.add_argument("data", help="TSV manifest, PAGE-XML file/folder, IAM lines.txt; or ink: .pot characters, .npz lines")
    O.model(e)
    O.json_out(e)
    e.add_argument("--output", metavar="TSV", help="write per-line results: image, reference, hypothesis, cer")
    O.images_dir(e)
    O.runtime(e, batch=1)
    O.progress(e)
    e.add_argument("--perturb-order", type=T.perturb_rates, metavar="RATES", default=None,
                   help="ink data: perturb each sample's stroke order/direction first, e.g. "
                        "swap=0.05,reverse=0.03,join=0.1[,permute]")
    e.add_argument("--perturb-seed", type=T.nonneg_int, default=0, help="seed of --perturb-order")
    O.decoder(e)
    e.set_defaults(fn=cmd_evaluate)

    r = sub.add_parser("recognize", help="print one transcription per image or ink sample")
    r.add_argument("images", nargs="+", metavar="FILE",
                   help="line images, InkML, IAM-OnDB .xml strokes, CASIA .pot, PAGE-XML files or folders "
                        "(recognized by content)")
    O.model(r, "model: name, path or .onnx (default: the bundled offline model for images, "
               "the online line model for ink lines, the character model for .pot)")
    r.add_argument("--json", action="store_true",
                   help="print a JSON list: text, per-character confidences and positions per input")
    r.add_argument("--out", metavar="PATH", help="PAGE-XML inputs: write the filled PAGE-XML here (a file for one "
                                                  "page, a folder otherwise; default: print the lines only)")
    O.images_dir(r, O.IMAGES_HELP.replace("PAGE-XML data:", "PAGE-XML inputs:"))
    O.runtime(r, batch_help="images (or page lines) per forward pass")
    r.add_argument("--page", action="store_true",
                   help="the images are page scans (or folders of them): segment each page, recognize its lines "
                        "and write PAGE-XML, ALTO or text in reading order (--out: a file, or a folder for several)")
    r.add_argument("--format", choices=["page", "alto", "text", "json"], default=None,
                   help="with --page: PAGE-XML 2019 (default), ALTO 4, plain text, JSON")
    O.seg_model(r, "with --page: " + O.SEG_MODEL_HELP)
    O.check_180(r, "with --page: also look for upside-down pages (a second segmentation pass)")
    O.decoder(r)
    r.set_defaults(fn=cmd_recognize)


def add_demo_parser(sub) -> None:
    d = sub.add_parser("demo", help="recognize the bundled samples with the bundled model")
    O.model(d)
    d.set_defaults(fn=cmd_demo)
