"""The ``inkpack`` command: one module per command group, each only parsing its flags and
calling library functions (:mod:`inkpack.cli.train`, :mod:`~inkpack.cli.run` for evaluate /
recognize / demo, :mod:`~inkpack.cli.pages` for segment / evaluate-pages / recognize --page,
:mod:`~inkpack.cli.models`, :mod:`~inkpack.cli.lm`, :mod:`~inkpack.cli.deploy` for export / serve /
web, :mod:`~inkpack.cli.compress` for compress / report); the options several commands share are
defined once in :mod:`inkpack.cli.options`, their value types in :mod:`inkpack.cli.types`.

Expected failures (``InkpackError``: bad input, bad option, unwritable output) print one line and
exit 2; ``--debug`` shows their traceback too. Any other exception is a bug and keeps its
traceback. Option values are checked by their argparse types and output paths before any long
work starts. ``--help`` and ``--version`` do not import torch. A closed pipe
(``inkpack recognize ... | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys

from inkpack import __version__
from inkpack.cli import compress, deploy, lm, models, pages, run, train
from inkpack.cli.train import cmd_train, config_task, train_config, train_task
from inkpack.cli.types import HelpFormatter, Parser
from inkpack.errors import InkpackError
from inkpack.jsonio import check_output_file

__all__ = ["HelpFormatter", "Parser", "build_parser", "cmd_train", "config_task", "main", "train_config",
           "train_task"]

# commands whose library modules are imported only when asked for (``inkpack.compress``)
LAZY = {"compress": compress.COMPRESS_HELP, "report": compress.REPORT_HELP}
# output options of every command: checked before the command runs (flag -> file | dir)
OUTPUT_OPTIONS = {"json": "file", "output": "file", "plot": "file"}
OUT_IS_FILE = ("export", "compress", "lm")  # their --out is one file (or a stem); train's is a folder


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv``, commands other than the one asked for may stay light
    (``compress``/``report`` import torch: they are only built when asked for)."""
    p = Parser(prog="inkpack", description="Train, compress and deploy compact handwriting recognizers.")
    p.add_argument("--version", action="version", version=f"inkpack {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of expected errors too")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    train.add_parser(sub)
    run.add_parsers(sub)  # evaluate, recognize
    pages.add_evaluate_pages_parser(sub)
    lm.add_parser(sub)
    models.add_parser(sub)
    run.add_demo_parser(sub)
    deploy.add_parsers(sub)  # export, serve, web
    if argv is None or _command(argv) in LAZY:
        compress.add_parsers(sub)  # compress, report
    else:
        for name, text in LAZY.items():
            sub.add_parser(name, help=text, add_help=False)
    pages.add_segment_parser(sub)
    return p


def _command(argv: list[str] | None) -> str | None:
    for tok in argv or []:
        if not tok.startswith("-"):
            return tok
    return None


def _check_outputs(a: argparse.Namespace) -> None:
    """Output paths of any command are writable before it starts (export fails after 30 s otherwise)."""
    for flag, kind in OUTPUT_OPTIONS.items():
        value = getattr(a, flag, None)
        if isinstance(value, str):
            check_output_file(value, f"--{flag}")
    out = getattr(a, "out", None)
    if isinstance(out, str) and a.command in OUT_IS_FILE:
        check_output_file(out, "--out")


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, t in enumerate(argv):
        if t.startswith(flag + "="):
            return t.split("=", 1)[1]
        if t == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _segment(argv: list[str]) -> int | None:
    """``train --task segment ...`` (or ``train --config X`` whose YAML says ``task: segment``) is
    the segmenter's own command line (inkpack.train.segment)."""
    if not argv or argv[0] != "train":
        return None
    if (_flag_value(argv, "--task") or config_task(_flag_value(argv, "--config"))) != "segment":
        return None
    rest = [t for i, t in enumerate(argv[1:], 1)
            if t != "--task=segment" and not (t == "--task" or (argv[i - 1] == "--task" and t == "segment"))]
    from inkpack.train.segment import main as segment_main  # noqa: I001

    return segment_main(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    argv = [t for t in argv if t != "--debug"]
    try:
        rc = _segment(argv)
        if rc is None:
            args = build_parser(argv).parse_args(argv)
            args.argv = argv  # for `train --nproc`, which re-runs itself
            _check_outputs(args)
            rc = int(args.fn(args) or 0)
    except InkpackError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        rc = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        rc = 130
    except BrokenPipeError:  # the reader went away (`| head -1`): stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        rc = 141
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        # A torchrun worker whose work is saved: skip interpreter teardown, where gloo's
        # threads can rarely abort the process (SIGABRT) after a successful run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
