"""``inkpack lm train|eval``: character n-gram language models for beam search
(the work is :mod:`inkpack.decode.lm_cli`)."""

from __future__ import annotations

import argparse

from inkpack.cli import types as T
from inkpack.jsonio import dumps


def cmd_lm_train(a: argparse.Namespace) -> int:
    from inkpack.decode.lm_cli import lm_train

    print(dumps(lm_train(a.texts, a.order, a.out, smoothing=a.smoothing)))
    return 0


def cmd_lm_eval(a: argparse.Namespace) -> int:
    from inkpack.decode.lm_cli import lm_eval

    print(dumps(lm_eval(a.lm, a.texts)))
    return 0


def add_parser(sub) -> None:
    lm = sub.add_parser("lm", help="character n-gram language models for beam search")
    lsub = lm.add_subparsers(dest="lm_command", required=True, parser_class=T.Parser)
    lt = lsub.add_parser("train", help="train a character n-gram LM and write it as ARPA")
    lt.add_argument("texts", nargs="+", metavar="TEXT",
                    help="plain text (one line per sentence) or TSV manifests with a 'text' column")
    lt.add_argument("--order", type=T.positive_int, default=6, help="n-gram order")
    lt.add_argument("--out", required=True, metavar="LM", help="ARPA file to write")
    lt.add_argument("--smoothing", choices=["kneser-ney", "witten-bell"], default="kneser-ney", help="smoothing")
    lt.set_defaults(fn=cmd_lm_train)
    le = lsub.add_parser("eval", help="per-character perplexity of an ARPA LM on text files")
    le.add_argument("lm", help="ARPA file")
    le.add_argument("texts", nargs="+", metavar="TEXT", help="text files or TSV manifests")
    le.set_defaults(fn=cmd_lm_eval)
