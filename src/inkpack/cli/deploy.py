"""``inkpack export``, ``inkpack serve`` and ``inkpack web``: the parsers and the calls into
:func:`inkpack.deploy.export.export_onnx`, :func:`inkpack.deploy.server.serve` and
:func:`inkpack.deploy.webbundle.build_web`."""

from __future__ import annotations

import argparse
import json
import math
import os

from inkpack.cli import options as O
from inkpack.cli import types as T
from inkpack.errors import ConfigError

DEFAULT_MAX_LINES = 2000  # = inkpack.deploy.page.DEFAULT_MAX_LINES (not imported: --help stays light)


def cmd_export(args: argparse.Namespace) -> int:
    from inkpack.deploy.export import export_onnx, sidecar_path

    out = export_onnx(args.model, args.out, int8=args.int8)
    facts = json.loads(sidecar_path(out).read_text(encoding="utf-8"))["onnx"]
    print(f"wrote {out} ({facts['bytes'] / 1e6:.2f} MB, {'int8' if facts['int8'] else 'fp32'}) "
          f"and {sidecar_path(out).name}")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from inkpack.deploy.webbundle import build_web

    char = None if args.no_ink else args.ink_model
    m = build_web(args.out, char_model=char, line_model=args.model, with_line=not args.no_line)
    sizes = ", ".join(f"{k} {v['name']} {v['bytes'] / 1e6:.2f} MB ({v['gz_bytes'] / 1e6:.2f} MB downloaded)"
                      for k, v in m["models"].items())
    print(f"wrote the web page to {args.out} (onnxruntime-web {m['runtime']['version']}, int8 models: "
          f"{sizes or 'none'}); serve it with: python -m http.server -d {args.out}")
    return 0


def _check_serve_options(args: argparse.Namespace) -> None:
    """One line naming the option for every bad value (before any model is loaded)."""
    def positive(name: str, v, minimum=1) -> None:
        if v is None or not math.isfinite(v) or v < minimum:
            raise ConfigError(f"serve: {name} must be >= {minimum} (got {v})")

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"serve: --port must be between 1 and 65535 (got {args.port})")
    positive("--threads", args.threads)
    positive("--max-batch", args.max_batch)
    positive("--max-wait-ms", args.max_wait_ms, 0)
    positive("--max-pixels", args.max_pixels)
    positive("--max-inflight", args.max_inflight)
    positive("--max-ink-points", getattr(args, "max_ink_points", 1))
    positive("--max-page-lines", getattr(args, "max_page_lines", 1))
    positive("--beam", getattr(args, "beam", 1))
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
        raise ConfigError(f"serve: --max-upload-mb must be > 0 (got {args.max_upload_mb})")
    if not (math.isfinite(args.read_timeout) and args.read_timeout > 0):
        raise ConfigError(f"serve: --read-timeout must be > 0 seconds (got {args.read_timeout})")
    for o in args.allow_origin or []:
        if o != "*" and not o.startswith(("http://", "https://")):
            raise ConfigError(f"serve: --allow-origin {o!r} must be '*' or like https://example.org")


def cmd_serve(args: argparse.Namespace) -> int:
    _check_serve_options(args)
    import torch

    from inkpack.decode.options import decoder_from_args
    from inkpack.deploy.server import serve

    torch.set_num_threads(args.threads)
    token = args.token or os.environ.get("INKPACK_TOKEN") or None
    web_models = None
    if args.web_models:
        from inkpack.deploy.webbundle import models_dir

        web_models = models_dir(args.web_models)
    serve(args.host, args.port, args.model, args.ink_model, log_level=args.log_level, decoder=decoder_from_args(args),
          max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
          max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, token=token,
          allow_origins=tuple(args.allow_origin or ()), max_inflight=args.max_inflight,
          read_timeout=args.read_timeout, max_ink_points=args.max_ink_points,
          max_page_lines=args.max_page_lines, seg_model=args.seg_model, web_models=web_models)
    return 0


def add_parsers(sub) -> None:
    """Add the ``export``, ``serve`` and ``web`` subcommands to an ``add_subparsers()`` object."""
    x = sub.add_parser("export", help="export a model to ONNX (optionally int8) for ONNX Runtime")
    x.add_argument("model", nargs="?", default=None, help="model path or name (default: the bundled model)")
    x.add_argument("--out", required=True, help="output .onnx file (a .onnx.json sidecar is written beside it)")
    x.add_argument("--int8", action="store_true", help="dynamic int8 quantization (LSTM and MatMul)")
    x.set_defaults(fn=cmd_export)

    s = sub.add_parser("serve", help="HTTP service + web demo (line, ink and PAGE-XML recognition)")
    O.model(s, "line model: path, name or .onnx (default: the bundled model)")
    s.add_argument("--ink-model", help="ink model (lstm-char or online-blstm; path or .onnx; default: none, "
                                       "the ink endpoint answers 404)")
    O.seg_model(s, "page segmenter for page images sent without PAGE-XML "
                   "(default: the bundled models/hooker-segment)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=T.port, default=8000, help="TCP port (default: 8000)")
    O.threads(s, help="torch intra-op threads (default: 1)")
    s.add_argument("--max-batch", type=T.positive_int, default=16, help="largest dynamic batch (default: 16)")
    s.add_argument("--max-wait-ms", type=T.nonneg_float, default=5.0,
                   help="how long a batch waits for company, in ms (default: 5.0)")
    s.add_argument("--max-upload-mb", type=T.positive_float, default=10.0,
                   help="largest request body in MiB; larger get 413 (default: 10.0)")
    s.add_argument("--max-pixels", type=T.positive_int, default=40_000_000,
                   help="largest image in pixels; larger get 413 (default: 40000000)")
    s.add_argument("--max-ink-points", type=T.positive_int, default=100_000,
                   help="most pen points in one ink request, all samples together; more get 413 (default: 100000)")
    s.add_argument("--max-page-lines", type=T.positive_int, default=DEFAULT_MAX_LINES,
                   help=f"most TextLines in one PAGE-XML request; more get 413 (default: {DEFAULT_MAX_LINES})")
    s.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default: warning)")
    s.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /v1/* (default: env INKPACK_TOKEN, "
                                   "else none; the variable keeps it out of the process list)")
    s.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="web origin (https://host[:port]) allowed to call the service from a browser, "
                        "repeatable; '*' = any. Default: only the service's own pages")
    s.add_argument("--max-inflight", type=T.positive_int, default=64,
                   help="recognition requests at a time; more get 503 with Retry-After (default: 64)")
    s.add_argument("--read-timeout", type=T.positive_float, default=30.0,
                   help="seconds for the request headers and, separately, the whole body, else 408/closed "
                        "(default: 30.0)")
    s.add_argument("--web-models", metavar="DIR",
                   help="on-device models for the web page (a folder written by `inkpack web --out DIR`): "
                        "the page then recognizes in the browser, and on the server only if asked "
                        "(default: none, the page uses the server)")
    O.decoder(s)
    s.set_defaults(fn=cmd_serve)

    w = sub.add_parser("web", help="write the web page with on-device (in-browser) recognition as static files")
    w.add_argument("--out", required=True, help="output folder (serve it with any static file server)")
    w.add_argument("--ink-model", default="hanzi-lstm-char",
                   help="ink model for the writing pad: a character or online line model, path or name "
                        "(default: hanzi-lstm-char)")
    O.model(w, "line model: path or name (default: the bundled model)")
    w.add_argument("--no-ink", action="store_true", help="no on-device ink model")
    w.add_argument("--no-line", action="store_true", help="no on-device line model")
    w.set_defaults(fn=cmd_web)
