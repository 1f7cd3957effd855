"""The ``inkpack`` command. User errors print one line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from inkpack.errors import InkpackError

REPO = Path(__file__).resolve().parents[2]
INK_DATA = (".pot", ".npz")  # evaluated by the ink side (characters / online lines)


def _write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


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


def cmd_train(a: argparse.Namespace) -> int:
    if a.task in ("char", "line"):  # online handwriting: characters or ink lines
        from inkpack.ink_commands import train_ink

        return train_ink(a)
    if a.nproc is not None and a.nproc < 1:
        raise InkpackError(f"train: --nproc must be at least 1, got {a.nproc}")
    if a.nproc and a.nproc > 1 and "LOCAL_RANK" not in os.environ:  # not yet under torchrun
        return _relaunch_distributed(a.nproc, getattr(a, "argv", None) or sys.argv[1:])
    from inkpack.train.loop import TrainConfig, train

    over = {
        "train": a.train, "val": a.val, "out": a.out, "arch": a.arch, "height": a.height,
        "batch_size": a.batch_size, "lr": a.lr, "epochs": a.epochs, "patience": a.patience,
        "batching": a.batching, "seed": a.seed, "threads": a.threads, "time_limit": a.time_limit,
        "max_steps": a.max_steps, "limit": a.limit, "workers": getattr(a, "workers", None),
        "init_from": getattr(a, "init_from", None),
    }
    if a.no_augment:
        over["augment"] = False
    if a.config:
        cfg = TrainConfig.from_yaml(a.config, **over)
    else:
        if not a.train:
            raise InkpackError("train: give TRAIN data (a TSV manifest, PAGE-XML or IAM lines.txt) or --config")
        cfg = TrainConfig(**{k: v for k, v in over.items() if v is not None})
    if not cfg.train:
        raise InkpackError("train: no training data (set 'train' in the config or pass TRAIN)")
    result = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result))
    return 0


# ------------------------------------------------------------------ evaluate / recognize
def _decoder(a: argparse.Namespace):
    if getattr(a, "decoder", "greedy") == "greedy":
        return None
    from inkpack.decode.beam import Decoder

    if a.decoder == "beam+lm" and not a.lm:
        raise InkpackError("--decoder beam+lm needs --lm LM.arpa (train one with `inkpack lm train`)")
    return Decoder(a.decoder, beam=a.beam, lm=a.lm, lexicon=a.lexicon, alpha=a.alpha, beta=a.beta)


def _recognizer(model: str | None, a: argparse.Namespace | None = None):
    from inkpack.recognizer import LineRecognizer

    return LineRecognizer.load(model, decoder=_decoder(a) if a is not None else None)


def cmd_evaluate(a: argparse.Namespace) -> int:
    import torch

    from inkpack.data.lines import load_lineset
    from inkpack.metrics import ErrorCounts

    if not os.path.exists(a.data):
        raise InkpackError(f"{a.data}: file not found")
    if Path(a.data).suffix.lower() in INK_DATA:
        from inkpack.ink_commands import evaluate_ink

        evaluate_ink(a.data, a.model, a.json, threads=a.threads, batch_size=a.batch_size, decoder=_decoder(a))
        return 0
    torch.set_num_threads(a.threads)
    rec = _recognizer(a.model, a)
    lines = load_lineset(a.data, rec.height, progress=False)
    for msg in lines.skipped:
        print(f"skipped: {msg}", file=sys.stderr)
    if len(lines) == 0:
        raise InkpackError(f"{a.data}: no readable lines")
    images = [torch.from_numpy(im.astype("float32") / 255.0)[None] for im in lines.images]
    rec.recognize_prepared(images[: min(4, len(images))], a.batch_size)  # warm-up
    t0 = time.perf_counter()
    hyps = rec.recognize_prepared(images, a.batch_size)
    dt = time.perf_counter() - t0
    counts = ErrorCounts()
    for h, r in zip(hyps, lines.texts):
        counts.add(h, r)
    res = {
        "cer": counts.cer, "wer": counts.wer, "lines": len(lines), "skipped": len(lines.skipped),
        "lines_per_s": len(lines) / dt, "ms_per_line": 1000 * dt / len(lines),
        "threads": a.threads, "batch_size": a.batch_size,
    }
    print(f"CER {100 * res['cer']:.2f}%  WER {100 * res['wer']:.2f}%  lines {res['lines']}  "
          f"{res['lines_per_s']:.1f} lines/s  {res['ms_per_line']:.2f} ms/line")
    _write_json(a.json, res)
    return 0


def cmd_recognize(a: argparse.Namespace) -> int:
    import torch

    from inkpack.data.images import load_gray
    from inkpack.errors import BadSampleError

    if all(Path(p).suffix.lower() in (".pot", ".inkml") for p in a.images):
        from inkpack.ink_commands import recognize_ink

        return recognize_ink(a.images, a.model, threads=a.threads, decoder=_decoder(a))
    torch.set_num_threads(a.threads)
    rec = _recognizer(a.model, a)
    grays, names, failed = [], [], 0
    for path in a.images:
        try:
            grays.append(load_gray(path))
            names.append(path)
        except BadSampleError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    for name, text in zip(names, rec.recognize(grays)):
        print(f"{name}\t{text}" if len(a.images) > 1 else text)
    return 2 if failed else 0


# ------------------------------------------------------------------ models / demo
def cmd_models(a: argparse.Namespace) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from inkpack.models import REGISTRY, build_model

    print(f"{'architecture':<16} {'input':<6} {'params':>9} {'GFLOPs':>8}  description")
    for name, spec in sorted(REGISTRY.items()):
        model = build_model(name, 86).eval()
        params = sum(p.numel() for p in model.parameters())
        gflops = float("nan")
        if spec.input_kind == "image":
            h = getattr(model, "height", 48)
            x = torch.zeros(1, 1, h, 8 * h)  # a typical line: 8x wider than high
            try:
                from inkpack.compress.report import count_flops

                gflops = count_flops(model, (x, torch.tensor([h]), torch.tensor([x.shape[-1]]))) / 1e9
            except ImportError:
                with FlopCounterMode(display=False) as fc, torch.no_grad():
                    model(x, torch.tensor([h]), torch.tensor([x.shape[-1]]))
                gflops = fc.get_total_flops() / 1e9
        print(f"{name:<16} {spec.input_kind:<6} {params / 1e6:>8.2f}M {gflops:>8.3f}  {spec.description}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """Recognize the bundled sample lines with the bundled model."""
    import torch

    from inkpack.data.lines import load_lineset
    from inkpack.metrics import ErrorCounts

    torch.set_num_threads(1)
    rec = _recognizer(a.model)
    manifest = REPO / "samples" / "hooker" / "samples.tsv"
    lines = load_lineset(str(manifest), rec.height, progress=False)
    images = [torch.from_numpy(im.astype("float32") / 255.0)[None] for im in lines.images]
    rec.recognize_prepared(images[:2], 1)
    counts = ErrorCounts()
    t0 = time.perf_counter()
    hyps = [rec.recognize_prepared([im], 1)[0] for im in images]
    dt = time.perf_counter() - t0
    for lid, h, r in zip(lines.ids, hyps, lines.texts):
        counts.add(h, r)
        print(f"{lid}\n  truth: {r}\n  read:  {h}")
    print(f"\n{len(hyps)} lines  CER {100 * counts.cer:.2f}%  WER {100 * counts.wer:.2f}%  "
          f"{1000 * dt / len(hyps):.1f} ms/line (1 thread)")
    return 0


# ------------------------------------------------------------------ lm
def cmd_lm_train(a: argparse.Namespace) -> int:
    from inkpack.decode.lm_cli import lm_train

    print(json.dumps(lm_train(a.texts, a.order, a.out, smoothing=a.smoothing)))
    return 0


def cmd_lm_eval(a: argparse.Namespace) -> int:
    from inkpack.decode.lm_cli import lm_eval

    print(json.dumps(lm_eval(a.lm, a.texts)))
    return 0


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inkpack", description="Train, compress and deploy compact handwriting recognizers.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a line recognizer with CTC")
    t.add_argument("train", nargs="?", help="training data: TSV manifest, PAGE-XML file/folder or IAM lines.txt")
    t.add_argument("--val", help="validation data (same formats)")
    t.add_argument("--config", help="YAML config (flags override it)")
    t.add_argument("--out", help="run directory for checkpoints, logs and the best model")
    t.add_argument("--arch", help="architecture (see `inkpack models`)")
    t.add_argument("--height", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--epochs", type=int)
    t.add_argument("--patience", type=int)
    t.add_argument("--batching", choices=["pad-max", "pad-min", "pack"])
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int)
    t.add_argument("--time-limit", type=float, help="minutes")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--workers", type=int, help="DataLoader processes that build batches ahead (augment, pad, pack)")
    t.add_argument("--limit", type=int, help="use only the first N training lines")
    t.add_argument("--init-from", metavar="MODEL",
                   help="warm start a fresh run from a trained model's same-named, same-shaped tensors")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--task", choices=["lines", "char", "line"], default="lines",
                   help="lines: offline line images (default); char: lstm-char on synthetic hanzi; "
                        "line: online-blstm on IAM-OnDB-style .npz ink lines")
    t.add_argument("--num-chars", type=int, help="char task: use only the first N classes")
    t.add_argument("--per-class", type=int, help="char task: synthetic samples per class and epoch")
    t.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel training with N processes on this machine (runs torch.distributed.run)")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="CER/WER and speed on labelled data")
    e.add_argument("data", help="TSV manifest, PAGE-XML file/folder, IAM lines.txt; or ink: .pot characters, .npz lines")
    e.add_argument("--model", help="model path (default: the bundled offline model)")
    e.add_argument("--json", help="write the results as JSON here")
    e.add_argument("--batch-size", type=int, default=1)
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(fn=cmd_evaluate)

    r = sub.add_parser("recognize", help="print one transcription per image")
    r.add_argument("images", nargs="+")
    r.add_argument("--model")
    r.add_argument("--threads", type=int, default=1)
    r.set_defaults(fn=cmd_recognize)

    from inkpack.deploy.commands import add_decoder_options

    for sp in (e, r):
        add_decoder_options(sp)

    lm = sub.add_parser("lm", help="character n-gram language models for beam search")
    lsub = lm.add_subparsers(dest="lm_command", required=True)
    lt = lsub.add_parser("train", help="train a character n-gram LM and write it as ARPA")
    lt.add_argument("texts", nargs="+", metavar="TEXT",
                    help="plain text (one line per sentence) or TSV manifests with a 'text' column")
    lt.add_argument("--order", type=int, default=6)
    lt.add_argument("--out", required=True, metavar="LM", help="ARPA file to write")
    lt.add_argument("--smoothing", choices=["kneser-ney", "witten-bell"], default="kneser-ney")
    lt.set_defaults(fn=cmd_lm_train)
    le = lsub.add_parser("eval", help="per-character perplexity of an ARPA LM on text files")
    le.add_argument("lm")
    le.add_argument("texts", nargs="+", metavar="TEXT")
    le.set_defaults(fn=cmd_lm_eval)

    m = sub.add_parser("models", help="list architectures with parameters and GFLOPs")
    m.set_defaults(fn=cmd_models)

    d = sub.add_parser("demo", help="recognize the bundled samples with the bundled model")
    d.add_argument("--model")
    d.set_defaults(fn=cmd_demo)

    from inkpack.deploy.commands import add_parsers as add_deploy_parsers

    add_deploy_parsers(sub)  # export, serve

    from inkpack.compress.commands import add_parsers as add_compress_parsers

    add_compress_parsers(sub)  # compress, report
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for `train --nproc`, which re-runs itself
    try:
        rc = int(args.fn(args) or 0)
    except InkpackError as e:
        print(f"error: {e}", file=sys.stderr)
        rc = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        rc = 130
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        # A torchrun worker whose work is saved: skip interpreter teardown, where gloo's
        # threads can rarely abort the process (SIGABRT) after a successful run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
