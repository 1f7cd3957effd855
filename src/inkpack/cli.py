"""The ``inkpack`` command.

Expected failures (``InkpackError``: bad input, bad option, unwritable output) print one line and
exit 2; ``--debug`` shows their traceback too. Any other exception is a bug and keeps its
traceback. Option values are checked by their argparse types (``inkpack.cli_types``) and output
paths before any long work starts. ``--help`` and ``--version`` do not import torch. A closed
pipe (``inkpack recognize ... | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from inkpack import __version__
from inkpack import cli_types as T
from inkpack.cli_run import cmd_demo, cmd_evaluate, cmd_evaluate_pages, cmd_recognize
from inkpack.cli_types import HelpFormatter, Parser  # noqa: F401 (HelpFormatter: its old home)
from inkpack.errors import ConfigError, InkpackError
from inkpack.jsonio import check_output_dir, check_output_file, dumps

TASKS = ("lines", "char", "line", "segment")  # `inkpack train --task`; a config's `task` key chooses too

REPO = Path(__file__).resolve().parents[2]
INK_DATA = (".pot", ".npz")  # evaluated by the ink side (characters / online lines)
# commands whose modules are imported only when asked for (torch, or another helper's module)
LAZY = {"compress": "compress a model: distill, tucker, svd, adw, kmeans, int8 (join with '+')",
        "report": "size / FLOPs / latency / accuracy table for models on the same data",
        "segment": "find the text lines of page images (PAGE-XML, ALTO, JSON), optionally read them"}
# output options of every command: checked before the command runs (flag -> file | dir)
OUTPUT_OPTIONS = {"json": "file", "output": "file", "plot": "file"}
OUT_IS_FILE = ("export", "compress", "lm")  # their --out is one file (or a stem); train's is a folder


# ------------------------------------------------------------------ train
def _relaunch_distributed(nproc: int, argv: list[str]) -> int:
    """``train --nproc N ARGS`` = ``torchrun --standalone --nproc_per_node N -m inkpack train ARGS``."""
    import subprocess

    rest, skip = [], False
    for tok in argv:
        if not skip and tok != "--nproc" and not tok.startswith("--nproc="):
            rest.append(tok)
        skip = tok == "--nproc"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "inkpack", *rest]
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # torchrun got the same SIGINT: let it stop its workers
        return proc.wait()


TRAIN_FLAGS = ("train", "val", "out", "arch", "height", "batch_size", "lr", "epochs", "patience", "batching",
               "seed", "threads", "time_limit", "max_steps", "limit", "workers", "init_from", "device", "ema",
               "init_resize", "images_dir", "sync", "block_steps", "block_momentum", "block_lr", "nesterov")


def train_config(a: argparse.Namespace):
    """The validated ``TrainConfig`` of ``inkpack train`` (YAML config, then flags)."""
    from inkpack.train.config import TrainConfig

    over = {k: getattr(a, k, None) for k in TRAIN_FLAGS}
    if a.no_augment:
        over["augment"] = False
    if a.config:
        cfg = TrainConfig.from_yaml(a.config, **over)
    else:
        if not a.train:
            raise ConfigError("train: give TRAIN data (a TSV manifest, PAGE-XML or IAM lines.txt) or --config")
        cfg = TrainConfig(**{k: v for k, v in over.items() if v is not None}).validate()
    if not cfg.train:
        raise ConfigError("train: no training data (set 'train' in the config or pass TRAIN)")
    check_output_dir(cfg.out, "--out")
    if os.path.isdir(cfg.out) and not os.access(cfg.out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {cfg.out}: run folder not writable (permission denied)")
    return cfg


def config_task(path: str | None) -> str | None:
    """The ``task`` key of a training YAML (None when absent or unreadable: the trainer that
    reads the file reports what is wrong with it)."""
    if not path:
        return None
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    task = data.get("task") if isinstance(data, dict) else None
    return task if isinstance(task, str) else None


def train_task(task: str | None, config: str | None) -> str:
    """``--task`` if given, else the config's ``task`` key, else ``lines``."""
    chosen = task or config_task(config) or "lines"
    if chosen not in TASKS:
        raise ConfigError(f"{config}: task must be one of {', '.join(TASKS)}, not {chosen!r}")
    return chosen


def cmd_train(a: argparse.Namespace) -> int:
    a.task = train_task(a.task, a.config)
    if a.task in ("char", "line"):  # online handwriting: characters or ink lines
        from inkpack.ink_commands import train_ink

        return train_ink(a)
    if a.nproc is not None and a.nproc > 1 and "LOCAL_RANK" not in os.environ:  # not yet under torchrun
        train_config(a)  # validate here, once, before starting N processes
        return _relaunch_distributed(a.nproc, getattr(a, "argv", None) or sys.argv[1:])
    cfg = train_config(a)
    from inkpack.train.loop import train

    result = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(dumps(result))
    return 0


# ------------------------------------------------------------------ models / lm
def cmd_models(a: argparse.Namespace) -> int:
    from inkpack.cli_models import list_models

    return list_models(a)


def cmd_lm_train(a: argparse.Namespace) -> int:
    from inkpack.decode.lm_cli import lm_train

    print(dumps(lm_train(a.texts, a.order, a.out, smoothing=a.smoothing)))
    return 0


def cmd_lm_eval(a: argparse.Namespace) -> int:
    from inkpack.decode.lm_cli import lm_eval

    print(dumps(lm_eval(a.lm, a.texts)))
    return 0


# ------------------------------------------------------------------ parser
def _train_parser(sub) -> None:
    from inkpack.train.config import TrainConfig as C

    t = sub.add_parser("train", help="train a line recognizer with CTC")
    t.add_argument("train", nargs="?", help="training data: TSV manifest, PAGE-XML file/folder or IAM lines.txt; "
                                            "--task line: .npz ink lines; --task char: CASIA .pot characters (a file "
                                            "or a folder; default: synthetic characters from the stroke medians)")
    t.add_argument("--val", help="validation data (same formats; default: none, no early stopping; --task char: "
                                 "the synthetic validation set, or every tenth sample of .pot training data)")
    t.add_argument("--config", help="YAML config; its paths are relative to it; flags override it")
    t.add_argument("--out", help=f"run folder: checkpoints, logs, best model (default: {C.out})")
    t.add_argument("--arch", help=f"architecture, see `inkpack models` (default: {C.arch})")
    t.add_argument("--height", type=T.min_int(8), help=f"input line height in pixels (default: {C.height})")
    t.add_argument("--batch-size", type=T.positive_int, help=f"lines per step (default: {C.batch_size})")
    t.add_argument("--lr", type=T.positive_float, help=f"peak learning rate (default: {C.lr})")
    t.add_argument("--epochs", type=T.positive_int, help=f"epochs of the schedule (default: {C.epochs})")
    t.add_argument("--patience", type=T.nonneg_int,
                   help=f"early stopping: epochs without val improvement (default: {C.patience})")
    t.add_argument("--batching", choices=["pad-max", "pad-min", "pack"], help=f"batch layout (default: {C.batching})")
    t.add_argument("--seed", type=T.nonneg_int, help=f"random seed (default: {C.seed})")
    t.add_argument("--threads", type=T.nonneg_int, help="torch threads; 0 = torch's default (default: 0)")
    t.add_argument("--time-limit", type=T.nonneg_float, help="stop after this many minutes (default: 0 = none)")
    t.add_argument("--max-steps", type=T.nonneg_int, help="stop after this many steps (default: 0 = none)")
    t.add_argument("--workers", type=T.nonneg_int,
                   help="DataLoader processes that build batches ahead: augment, pad, pack (default: 0)")
    t.add_argument("--limit", type=T.positive_int, help="use only the first N training lines (default: all)")
    t.add_argument("--init-from", metavar="MODEL",
                   help="warm start a fresh run from a trained model's same-named, same-shaped tensors; --task "
                        "char|line also take its architecture, options and preprocessing, and validate it once "
                        "before the first step (default: none)")
    t.add_argument("--resize", dest="init_resize", choices=["union", "new", "fail"],
                   help="with --init-from, for characters of the data the model lacks: union keeps the model's "
                        "characters and adds the new ones, new keeps only the data's characters, fail refuses "
                        "(default: union)")
    t.add_argument("--images", dest="images_dir", metavar="DIR",
                   help="PAGE-XML data: look for page images here first (default: next to the XML, its parent, "
                        "the OCR-D workspace root)")
    t.add_argument("--device", type=T.device,
                   help="auto | cpu | cuda[:N]; auto = CUDA when available (default: auto)")
    t.add_argument("--ema", type=T.unit_interval, metavar="DECAY",
                   help="exponential moving average of the weights, e.g. 0.999; 0 = off (default: 0)")
    t.add_argument("--no-augment", action="store_true", help="switch training augmentation off (default: on)")
    t.add_argument("--task", choices=TASKS, default=None,
                   help="lines: offline line images; char: lstm-char on synthetic hanzi or .pot characters; "
                        "line: online-blstm on IAM-OnDB-style .npz ink lines; segment: page line segmenter "
                        "(default: the config's task key, else lines)")
    t.add_argument("--num-chars", type=T.positive_int, help="char task: use only the first N classes (default: all)")
    t.add_argument("--per-class", type=T.positive_int, help="char task: synthetic samples per class and epoch")
    t.add_argument("--nproc", type=T.positive_int, metavar="N",
                   help="data-parallel training with N processes on this machine (runs torch.distributed.run)")
    t.add_argument("--sync", choices=["ddp", "bmuf"],
                   help="data parallel: ddp = all-reduce the gradients every step; bmuf = blockwise model-update "
                        "filtering, local steps and one synchronization per block (default: ddp)")
    t.add_argument("--block-steps", type=T.positive_int, metavar="TAU",
                   help=f"bmuf: local steps per block (default: {C.block_steps})")
    t.add_argument("--block-momentum", type=T.unit_interval, metavar="ETA",
                   help="bmuf: block momentum in [0, 1) (default: 1 - 1/N for N workers)")
    t.add_argument("--block-lr", type=T.positive_float, metavar="ZETA",
                   help=f"bmuf: block learning rate (default: {C.block_lr})")
    t.add_argument("--nesterov", action="store_const", const=True, default=None,
                   help="bmuf: start each block from the Nesterov look-ahead θ_g + η·Δ (default: classical)")
    t.set_defaults(fn=cmd_train)


def _run_parsers(sub) -> None:
    from inkpack.deploy.commands import add_decoder_options

    e = sub.add_parser("evaluate", help="CER/WER and speed on labelled data")
    e.add_argument("data", help="TSV manifest, PAGE-XML file/folder, IAM lines.txt; or ink: .pot characters, .npz lines")
    e.add_argument("--model", help="model: name, path or .onnx (default: the bundled offline model)")
    e.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    e.add_argument("--output", metavar="TSV", help="write per-line results: image, reference, hypothesis, cer")
    e.add_argument("--images", dest="images_dir", metavar="DIR",
                   help="PAGE-XML data: folder of the page images (default: where the XML says, "
                        "relative to its folder, its parent or the workspace)")
    e.add_argument("--batch-size", type=T.positive_int, default=1, help="lines per forward pass")
    e.add_argument("--threads", type=T.positive_int, default=1, help="torch / ONNX Runtime threads")
    e.add_argument("--device", type=T.device, default="auto", help="auto | cpu | cuda[:N]; auto = CUDA when available")
    e.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    e.add_argument("--perturb-order", type=T.perturb_rates, metavar="RATES", default=None,
                   help="ink data: perturb each sample's stroke order/direction first, e.g. "
                        "swap=0.05,reverse=0.03,join=0.1[,permute]")
    e.add_argument("--perturb-seed", type=T.nonneg_int, default=0, help="seed of --perturb-order")
    e.set_defaults(fn=cmd_evaluate)

    r = sub.add_parser("recognize", help="print one transcription per image or ink sample")
    r.add_argument("images", nargs="+", metavar="FILE",
                   help="line images, InkML, IAM-OnDB .xml strokes, CASIA .pot, PAGE-XML files or folders "
                        "(recognized by content)")
    r.add_argument("--model", help="model: name, path or .onnx (default: the bundled offline model for images, "
                                   "the online line model for ink lines, the character model for .pot)")
    r.add_argument("--json", action="store_true",
                   help="print a JSON list: text, per-character confidences and positions per input")
    r.add_argument("--out", metavar="PATH", help="PAGE-XML inputs: write the filled PAGE-XML here (a file for one "
                                                  "page, a folder otherwise; default: print the lines only)")
    r.add_argument("--images", dest="images_dir", metavar="DIR",
                   help="PAGE-XML inputs: folder of the page images (default: where the XML says, "
                        "relative to its folder, its parent or the workspace)")
    r.add_argument("--batch-size", type=T.positive_int, default=16, help="images (or page lines) per forward pass")
    r.add_argument("--threads", type=T.positive_int, default=1, help="torch / ONNX Runtime threads")
    r.add_argument("--device", type=T.device, default="auto", help="auto | cpu | cuda[:N]; auto = CUDA when available")
    r.add_argument("--page", action="store_true",
                   help="the images are page scans (or folders of them): segment each page, recognize its lines "
                        "and write PAGE-XML, ALTO or text in reading order (--out: a file, or a folder for several)")
    r.add_argument("--format", choices=["page", "alto", "text", "json"], default=None,
                   help="with --page: PAGE-XML 2019 (default), ALTO 4, plain text, JSON")
    r.add_argument("--seg-model", help="with --page: segmentation model (default: the bundled models/hooker-segment)")
    r.add_argument("--check-180", action="store_true",
                   help="with --page: also look for upside-down pages (a second segmentation pass)")
    r.set_defaults(fn=cmd_recognize)

    ep = sub.add_parser("evaluate-pages", help="page scans + ground-truth PAGE-XML: baseline P/R/F1 (cBAD), "
                                               "page CER/WER beside the CER with ground-truth lines")
    ep.add_argument("data", help="folder of page images with their PAGE-XML (same stem)")
    ep.add_argument("--model", help="line model: name, path or .onnx (default: the bundled offline model)")
    ep.add_argument("--seg-model", help="segmentation model (default: the bundled models/hooker-segment)")
    ep.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    ep.add_argument("--batch-size", type=T.positive_int, default=16, help="lines per forward pass")
    ep.add_argument("--threads", type=T.positive_int, default=1, help="torch / ONNX Runtime threads")
    ep.add_argument("--device", type=T.device, default="auto", help="auto | cpu | cuda[:N]; auto = CUDA when available")
    ep.set_defaults(fn=cmd_evaluate_pages)
    for sp in (e, r, ep):
        add_decoder_options(sp)
        _decoder_default(sp)


def _decoder_default(sp: argparse.ArgumentParser) -> None:
    """``--lm`` without ``--decoder`` means beam+lm: the decoder's default is resolved later."""
    sp.set_defaults(decoder=None)
    for act in sp._actions:
        if act.dest == "decoder":
            act.help = "greedy | beam | beam+lm (default: greedy, or beam+lm when --lm is given)"


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv``, commands other than the one asked for may stay light
    (``compress``/``report`` import torch: they are only built when asked for)."""
    p = Parser(prog="inkpack", description="Train, compress and deploy compact handwriting recognizers.")
    p.add_argument("--version", action="version", version=f"inkpack {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of expected errors too")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    _train_parser(sub)
    _run_parsers(sub)

    lm = sub.add_parser("lm", help="character n-gram language models for beam search")
    lsub = lm.add_subparsers(dest="lm_command", required=True, parser_class=Parser)
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

    m = sub.add_parser("models", help="list the shipped models and the architectures (parameters, GFLOPs)")
    m.set_defaults(fn=cmd_models)

    d = sub.add_parser("demo", help="recognize the bundled samples with the bundled model")
    d.add_argument("--model", help="model: name, path or .onnx (default: the bundled offline model)")
    d.set_defaults(fn=cmd_demo)

    from inkpack.deploy.commands import add_parsers as add_deploy_parsers

    add_deploy_parsers(sub)  # export, serve
    if "serve" in sub.choices:
        _decoder_default(sub.choices["serve"])
    command = _command(argv)
    if argv is None or command in ("compress", "report"):
        from inkpack.compress.commands import add_parsers as add_compress_parsers

        add_compress_parsers(sub)  # compress, report
    else:
        for name in ("compress", "report"):
            sub.add_parser(name, help=LAZY[name], add_help=False)
    if argv is None or command == "segment":
        from inkpack.segment.commands import add_parsers as add_segment_parsers

        add_segment_parsers(sub)  # segment
    else:
        sub.add_parser("segment", help=LAZY["segment"], add_help=False)
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
    from inkpack.train.segment import main as segment_main

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
