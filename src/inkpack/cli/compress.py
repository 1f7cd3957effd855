"""``inkpack compress`` (recipes, combinable with '+') and ``inkpack report`` (the seeds' tables):
the parsers and the calls into :func:`inkpack.compress.recipe.compress` and
:func:`inkpack.compress.measure.report`. Nothing here imports torch at import time:
``inkpack compress --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys

from inkpack.cli import options as O

COMPRESS_HELP = "compress a model: distill, tucker, svd, adw, kmeans, int8 (join with '+')"
REPORT_HELP = "size / FLOPs / latency / accuracy table for models on the same data"


def cmd_compress(args: argparse.Namespace) -> int:
    import torch

    from inkpack.compress.commands import compress

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    compress(args)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from inkpack.compress.commands import plot_report, report
    from inkpack.compress.report import format_table
    from inkpack.jsonio import write_json

    rows = report(args.models, args.data, args.limit, args.runs, log=lambda m: print(m, file=sys.stderr))
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows, flag="--json")
    if args.plot:
        plot_report(rows, args.plot)
    return 0


def add_parsers(sub) -> None:
    """``compress`` and ``report``."""
    from inkpack.compress.commands import CRITERIA

    p = sub.add_parser("compress", help=COMPRESS_HELP)
    p.add_argument("model")
    p.add_argument("--recipe", help="e.g. tucker+int8, svd+adw+kmeans, distill (none with --half: float16 storage "
                   "only); or a preset (its options; --steps and the like override its defaults): hooker-darknet-int8 "
                   "(the shipped model, from hooker-darknet), lstm-svd, lstm-narrow, lstm-adw")
    p.add_argument("--out", required=True, help="output stem (writes OUT.json + weights)")
    p.add_argument("--data", help="training data for retraining (TSV for image models, medians for char models)")
    p.add_argument("--steps", type=int, help="retraining steps per retraining stage (default 0: one-shot)")
    p.add_argument("--teacher", help="distill: teacher model (then MODEL is the student's start)")
    p.add_argument("--student-arch", default="darknet-dblstm", help="distill without --teacher: student architecture")
    p.add_argument("--student-width", type=float, help="distill without --teacher: scale the student's conv "
                   "channels (darknet-dblstm option width, e.g. 0.5)")
    p.add_argument("--student-lstm-hidden", type=int, help="distill without --teacher: a narrower student DBLSTM "
                   "(hidden units per direction), trained with --criterion lstm-l2 through a linear adapter on the "
                   "teacher's CNN")
    p.add_argument("--criterion", default="cnn-mah", choices=CRITERIA)
    p.add_argument("--temperature", type=float, default=1.0, help="softmax-ce temperature")
    p.add_argument("--finetune-steps", type=int, help="distill: CTC fine-tune steps afterwards (default 0)")
    p.add_argument("--energy", type=float, default=0.9, help="tucker: kept energy for ranks")
    p.add_argument("--tucker-method", default="energy", choices=("energy", "vbmf"))
    p.add_argument("--tucker-table", help="tucker: decompose only the convs this per-layer latency table "
                   "(benchmarks/tucker_layers.py --json) measured faster, at the ranks it measured")
    p.add_argument("--tucker-backend", default="torch", choices=("torch", "onnx"),
                   help="tucker --tucker-table: the runtime whose timings decide")
    p.add_argument("--tucker-min-speedup", type=float, default=1.0,
                   help="tucker --tucker-table: decompose a conv only above this measured speed-up")
    p.add_argument("--svd-energy", type=float, default=0.9, help="svd: kept energy per matrix")
    p.add_argument("--svd-ranks", help="svd: ranks per layer instead, e.g. fc2=64,fc1=64,lstm2=48:128 (LSTM ih:hh)")
    p.add_argument("--sparsity", help="adw: final share of dropped weights (default 0.5), or per matrix: "
                   "lstm.weight_*=0.75 (globs; matrices no glob names are not pruned)")
    p.add_argument("--bits", help="kmeans: bits per shared weight (default 5), or per layer: fc2.weight=5,*=4 "
                   "(layers no glob names stay unshared)")
    p.add_argument("--kmeans-steps", type=int, help="kmeans: its retraining steps (default --steps)")
    p.add_argument("--kmeans-train", default="latent", choices=("latent", "centroids"),
                   help="kmeans retraining: latent full-precision weights that may change cluster (default), "
                        "or the seed's centroid-only fine-tuning")
    p.add_argument("--kmeans-lr", type=float, help="kmeans retraining rate (default 1e-3 latent, --lr/3 centroids; "
                   "on lstm-char latent training kept 94.3%% top-1 at 1e-3, 91.7%% at 3e-4)")
    p.add_argument("--half-raw", action="store_true", help="kmeans: store biases and other unshared tensors as float16")
    p.add_argument("--half", action="store_true", help="store the weights file as float16 (half the size; loaded as "
                   "float32, then quantized when the recipe has int8)")
    p.add_argument("--lr", type=float, help="retraining rate (default 3e-4)")
    O.batch_size(p, 16, None, int)
    p.add_argument("--limit", type=int, help="use only the first N training lines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--converge", metavar="EVERY:PATIENCE[:MAX]",
                   help="retrain every stage to convergence instead of --steps: score every EVERY steps, halve the "
                   "rate after 2 scores without gain, end the stage after PATIENCE (or MAX steps); --steps still sets "
                   "adaptive drop-weight's rise (2/3 of it). Resumable: run the same command again")
    p.add_argument("--val", help="--converge: data each stage is scored on (TSV for image models; character "
                   "models default to a synthetic stream that neither training nor the validation set uses)")
    p.add_argument("--val-limit", type=int, help="--converge: score on the first N lines / samples")
    p.add_argument("--work", help="--converge: folder of the stage checkpoints (default OUT.stages)")
    O.threads(p, 0, None, int)
    p.set_defaults(fn=cmd_compress)
    r = sub.add_parser("report", help=REPORT_HELP)
    r.add_argument("models", nargs="+")
    r.add_argument("--data", help="evaluation data (TSV for image models; medians for char models)")
    r.add_argument("--limit", type=int, help="first N lines / samples")
    r.add_argument("--runs", type=int, default=10, help="timed runs per model")
    r.add_argument("--json")  # no metavar: its help reads --json JSON, as before
    r.add_argument("--plot", help="accuracy vs latency PNG")
    r.set_defaults(fn=cmd_report)
