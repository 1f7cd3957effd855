"""`inkpack compress` (recipes, combinable with '+') and `inkpack report` (the seeds' tables).

A compressed model is NAME.json + weights. The json keeps the base architecture and adds a
``compression`` record: the recipe, the replaced modules (`lowrank.structure`), where the weights
are (``safetensors``, or ``shared-npz`` = the k-means compact file NAME.npz) and an ``int8`` flag
(fp32 weights stored, dynamic int8 applied at load). `model_io.load_model` calls
`compress.structure.load_compressed` for such files. Recipes run in the fixed order distill →
tucker → svd → adw → kmeans → int8 whatever order they are written in; retraining recipes use
--data/--steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inkpack.compress.structure import load_compressed  # noqa: F401 (its old home)
from inkpack.errors import InkpackError
from inkpack.jsonio import write_json

if TYPE_CHECKING:  # torch is imported where it runs: `inkpack compress --help` stays light
    import torch
    from torch import nn

# distillation criteria (= inkpack.compress.distill.CRITERIA, kept here so --help needs no torch)
CRITERIA = ("softmax-ce", "ip-l2", "lstm-l2", "cnn-l2", "cnn-mah")
RECIPES = ("distill", "tucker", "svd", "adw", "kmeans", "int8")


def parse_bits(text: str | int) -> int | dict[str, int]:
    """``5`` (every weight) or ``fc2.weight=5,lstm1.*=6,*=4`` (first matching glob wins)."""
    text = str(text).strip()
    try:
        if "=" not in text:
            return int(text)
        out = {}
        for part in text.split(","):
            key, _, val = part.partition("=")
            out[key.strip()] = int(val)
        return out
    except ValueError:
        raise InkpackError(f"--bits: expected N or NAME=N,..., got {text!r}") from None


def parse_recipe(text: str) -> list[str]:
    parts = [p.strip().lower() for p in text.split("+") if p.strip()]
    if not parts:
        raise InkpackError(f"--recipe: none given (use {'|'.join(RECIPES)}, joined by '+'; or --half alone)")
    bad = [p for p in parts if p not in RECIPES]
    if bad:
        raise InkpackError(f"--recipe: unknown part {bad[0]!r} (use {'|'.join(RECIPES)}, joined by '+')")
    return [r for r in RECIPES if r in parts]


def load_any(path: str, int8: bool = True) -> tuple[nn.Module, dict, object]:
    """load_model, optionally without the int8 step (FLOPs are counted on the fp32 graph)."""
    from inkpack.model_io import load_model

    return load_model(path, int8=int8)


def model_files(stem: Path, cfg: dict) -> list[Path]:
    comp = cfg.get("compression", {})
    return [stem.with_suffix(".json"), stem.with_suffix(".npz" if comp.get("weights") == "shared-npz" else ".safetensors")]


class Task:
    """Batches and loss for one model kind: image lines (CTC) or isolated characters (CE)."""

    def __init__(self, cfg: dict, alphabet, data: str | None, batch_size: int = 16, seed: int = 0,
                 limit: int | None = None, split: str = "train") -> None:
        self.kind = cfg.get("input_kind", "image")
        self.alphabet, self.batch_size, self.seed = alphabet, batch_size, seed
        if self.kind == "image":
            from inkpack.data.lines import LineBatcher, load_lineset

            if not data:
                raise InkpackError("this recipe retrains: give --data TRAIN.tsv (or --steps 0)")
            height = int(cfg.get("preprocessing", {}).get("height", cfg.get("options", {}).get("height", 48)))
            self.lines = load_lineset(data, height, progress=False, limit=limit)
            if not len(self.lines):
                raise InkpackError(f"{data}: no usable lines")
            self.batcher = LineBatcher(self.lines, alphabet)
            self.n = len(self.lines)
        elif self.kind == "char":
            from inkpack.data.hanzi_synth import HanziSynthDataset, load_medians
            from inkpack.data.ink_preprocess import PreprocessConfig

            medians = data or cfg.get("trained_on")
            if not medians or not os.path.exists(medians):
                raise InkpackError(f"character model: give --data MEDIANS.json.gz (not found: {medians})")
            chars = "".join(alphabet.symbols)
            pcfg = PreprocessConfig(**cfg.get("preprocessing", {}))
            med = load_medians(medians)
            if split == "val":
                self.ds = HanziSynthDataset.validation(med, chars, 1, prep_cfg=pcfg)
            else:
                self.ds = HanziSynthDataset(med, chars, 1, seed, "train", prep_cfg=pcfg)
            self.n = min(len(self.ds), limit) if limit else len(self.ds)
        else:
            raise InkpackError(f"compress/report: input kind {self.kind!r} is not supported")

    def batch(self, step: int):
        rng = np.random.default_rng((self.seed, step))
        idx = sorted(rng.choice(self.n, min(self.batch_size, self.n), replace=False).tolist())
        if self.kind == "image":
            self.batcher.epoch = step
            return self.batcher(sorted(idx, key=lambda i: self.lines.widths[i]))
        from inkpack.data.hanzi_synth import collate_chars

        self.ds.set_epoch(step)
        return collate_chars([self.ds[i] for i in idx])

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        if self.kind == "image":
            from inkpack.train.ctc import ctc_loss, run_model

            logits, lengths = run_model(model, batch)
            return ctc_loss(logits, lengths, batch)
        from torch import nn

        feats, lengths, targets = batch
        return nn.functional.cross_entropy(model(feats, lengths), targets)


def lr_factor(step: int, steps: int, hold: int = 0) -> float:
    """Share of the base rate at ``step``: 1 for the first ``hold`` steps, then a cosine to 0."""
    if step < hold or steps <= hold:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - hold) / (steps - hold)))


def retrain(model: nn.Module, task: Task, steps: int, *, lr: float = 3e-4, params=None,
            after_backward: Callable[[], None] | None = None, after_step: Callable[[], None] | None = None,
            log: Callable[[str], None] | None = None, schedule: str = "cosine", offset: int = 0,
            hold: int = 0) -> list[float]:
    """Adam fine-tuning with hooks for pruning masks and shared-weight gradients.

    ``schedule="cosine"`` decays the rate to zero over the steps: a constant rate from a fresh
    Adam state pulled the converged lstm-char from 98.4% to 96.7% top-1 in 400 steps at 3e-4
    (98.3% at 1e-4), which every later stage then had to win back. ``offset`` shifts the batch
    stream so that successive stages see different samples. ``hold`` keeps the full rate for
    that many steps first: adaptive drop-weight needs it while its sparsity rises (ADW to ~70% on
    lstm-char kept 92.2% top-1 holding 1e-3 over the rise, 47.4% with 3e-4 decaying throughout).
    """
    if schedule not in ("cosine", "constant"):
        raise InkpackError(f"retrain: schedule must be cosine or constant, not {schedule!r}")
    if steps <= 0:
        return []
    import torch

    params = list(params) if params is not None else list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: lr_factor(s, steps, hold)) if schedule == "cosine" else (lambda s: 1.0))
    losses = []
    model.train()
    for step in range(steps):
        loss = task.loss(model, task.batch(step + offset))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward:
            after_backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        if after_step:
            after_step()
        losses.append(float(loss.detach()))
        if log and (step + 1) % max(1, steps // 5) == 0:
            log(f"  step {step + 1}/{steps} loss {statistics.fmean(losses[-max(1, steps // 5):]):.4g}")
    model.eval()
    return losses


def drop_weights(model: nn.Module, targets: dict[str, float] | float, task: Task | None, steps: int, *,
                 lr: float, every: int = 1, offset: int = 0, log: Callable[[str], None] | None = None):
    """Adaptive drop-weight: the sparsity rises to ``targets`` over the first 2/3 of ``steps`` at
    the full rate (``hold``), the last third recovers under a cosine; 0 steps prunes one shot.
    Returns the finished :class:`~inkpack.compress.prune.Pruner` (its masks and sparsity)."""
    from inkpack.compress.prune import Pruner

    rise = max(1, steps * 2 // 3)
    pruner = Pruner(model, targets, rise, every=every)
    if steps:
        if log:
            log(f"adaptive drop-weight: {steps} retraining steps, the sparsity rising over {rise}")
        retrain(model, task, steps, lr=lr, after_step=pruner.step, offset=offset, log=log, hold=rise)
    pruner.finish()
    return pruner


def share_weights(model: nn.Module, bits: int | dict[str, int], mode: str, task: Task | None, steps: int, *,
                  lr: float | None = None, offset: int = 0, log: Callable[[str], None] | None = None,
                  on_shared: Callable[[], None] | None = None):
    """k-means sharing, then ``steps`` of retraining: ``latent`` full-precision weights behind the
    shared values (kmeans_train, default rate 1e-3) or the seed's ``centroids`` alone (1e-4).
    ``on_shared`` runs once the model computes with shared values, before any retraining.
    Returns the :class:`~inkpack.compress.kmeans.WeightSharing` that saves the compact file."""
    from inkpack.compress.kmeans import WeightSharing

    if mode not in ("latent", "centroids"):
        raise InkpackError(f"kmeans: training mode must be latent or centroids, not {mode!r}")
    if steps and mode == "latent":
        from inkpack.compress.kmeans_train import LatentSharing

        ls = LatentSharing(model, bits)
        if on_shared:
            on_shared()
        if log:
            log(f"k-means {bits} bits: {steps} steps of latent-weight training")
        retrain(model, task, steps, lr=lr or 1e-3, params=ls.parameters() + ls.other_parameters(),
                after_backward=ls.after_backward, after_step=ls.after_step, offset=offset, log=log)
        return ls.finish()
    ws = WeightSharing(model, bits)
    if on_shared:
        on_shared()
    if steps:
        if log:
            log(f"k-means {bits} bits: {steps} centroid fine-tuning steps")
        retrain(model, task, steps, lr=lr or 1e-4, params=ws.parameters() + ws.other_parameters(),
                after_backward=ws.sync_grads, after_step=ws.apply, offset=offset, log=log)
    return ws


def out_stem(path: str) -> Path:
    """OUT as given, or without the extension of one of the files it names."""
    out = Path(path)
    return out.with_suffix("") if out.suffix in (".json", ".safetensors", ".npz") else out


def store_half(model_path: str, out_path: str, log: Callable[[str], None] = print) -> tuple[nn.Module, dict]:
    """Rewrite a plain model with float16 weights (half the file; `load_model` returns float32)."""
    from inkpack.model_io import load_model, save_model

    model, cfg, _ = load_model(model_path)
    if cfg.get("compression"):
        raise InkpackError(f"{model_path}: already compressed; use --half with its recipe instead")
    out = out_stem(out_path)
    save_model(model, dict(cfg, weights_dtype="float16"), out, half=True)
    log(f"wrote {out}.json (float16 weights, {out.with_suffix('.safetensors').stat().st_size / 1e6:.2f} MB)")
    return model, {"recipe": "", "weights_dtype": "float16"}


def compress(args: argparse.Namespace, log: Callable[[str], None] = print) -> tuple[nn.Module, dict]:
    """Apply the recipe to MODEL and write OUT (.json + weights); returns (fp32 model, record)."""
    from inkpack.compress import lowrank, tucker
    from inkpack.compress.report import count_params
    from inkpack.model_io import load_model, resolve, save_model

    half = bool(getattr(args, "half", False))
    if not args.recipe and half:  # float16 storage only: a plain model file, loaded back as float32
        return store_half(args.model, args.out, log)
    recipe = parse_recipe(args.recipe or "")
    if half and "kmeans" in recipe:
        raise InkpackError("--half: a k-means file stores codes already; --half-raw halves its other tensors")
    model, cfg, alphabet = load_model(args.model)
    if cfg.get("compression"):
        raise InkpackError(f"{args.model}: already compressed; start from an uncompressed model")
    steps = int(args.steps or 0)
    task = None

    def get_task() -> Task:  # loaded only when a recipe retrains
        nonlocal task
        task = task or Task(cfg, alphabet, args.data, args.batch_size, args.seed, args.limit)
        return task

    notes: list[str] = []
    comp_extra: dict = {}
    base_params = count_params(model)
    if "distill" in recipe:
        from inkpack.compress.distill import distill, finetune_ctc, student_like

        if cfg.get("input_kind", "image") != "image":
            raise InkpackError("distill: only CNN-DBLSTM image models")
        if args.teacher:  # MODEL is the student's starting point
            teacher, tcfg, _ = load_model(args.teacher)
            student = model
        else:  # MODEL is the teacher; a fresh student
            teacher, tcfg = model, cfg
            extra = {"width": args.student_width} if args.student_width else {}
            student = student_like(cfg, args.student_arch, alphabet.num_classes, **extra)
            cfg = dict(cfg, arch=args.student_arch, options={**cfg.get("options", {}), **extra})
        t = get_task()
        log(f"distill {args.criterion}: {steps} steps, then CTC fine-tune {args.finetune_steps} steps")
        h = distill(teacher, student, t.batch, args.criterion, steps, lr=args.lr, temperature=args.temperature,
                    log_every=max(1, steps // 5), log=log)
        f = finetune_ctc(student, t.batch, args.finetune_steps, lr=args.lr / 3, log_every=max(1, args.finetune_steps // 5), log=log)
        notes.append(f"distill {args.criterion} from {tcfg.get('arch')} ({steps} + {args.finetune_steps} CTC steps; "
                     f"final distill loss {h['losses'][-1] if h['losses'] else None})")
        model, base_params = student, count_params(teacher)
        comp_extra = {"distill_losses": h["losses"][-1:], "finetune_losses": f["losses"][-1:]}
    if "tucker" in recipe:
        ch = tucker.tucker_decompose(model, args.energy, method=args.tucker_method)
        notes += [f"tucker {c.name}: {c.detail}" for c in ch]
    if "svd" in recipe:
        if args.svd_ranks:
            ch = lowrank.lowrank_layers(model, lowrank.parse_ranks(args.svd_ranks))
        else:
            ch = lowrank.lowrank_lstm(model, energy=args.svd_energy) + lowrank.lowrank_linear(model, energy=args.svd_energy)
        notes += [f"svd {c.name}: {c.detail}" for c in ch]
    if ("tucker" in recipe or "svd" in recipe) and steps:  # the seed retrains after every step
        log(f"fine-tune after decomposition: {steps} steps")
        retrain(model, get_task(), steps, lr=args.lr, log=log)
    if "adw" in recipe:
        log(f"adaptive drop-weight to {args.sparsity:.0%}")
        pruner = drop_weights(model, args.sparsity, get_task() if steps else None, steps, lr=args.lr, log=log)
        notes.append(f"adw sparsity {pruner.sparsity()['total']:.3f}")
    out = out_stem(args.out)
    comp: dict = {"recipe": "+".join(recipe), "source": str(resolve(args.model)), "int8": "int8" in recipe,
                  "weights": "safetensors", "base_params": base_params}
    if half:
        comp["weights_dtype"] = "float16"
    if "kmeans" in recipe:
        bits = parse_bits(args.bits)
        lr = args.kmeans_lr or (None if args.kmeans_train == "latent" else args.lr / 3)
        ws = share_weights(model, bits, args.kmeans_train, get_task() if steps else None, steps, lr=lr, log=log)
        ws.apply()
        out.parent.mkdir(parents=True, exist_ok=True)
        sizes = ws.save(out.with_suffix(".npz"), raw_half=args.half_raw)
        comp.update(weights="shared-npz", bits=bits, kmeans_train=args.kmeans_train if steps else None,
                    npz_ratio=sizes["ratio"])
    comp.update(structure=lowrank.structure(model), params=count_params(model),
                nonzero_params=count_params(model, nonzero=True), notes=notes, **comp_extra)
    cfg = {k: v for k, v in cfg.items() if k != "metrics"}
    cfg["compression"] = comp
    if comp["weights"] == "shared-npz":
        write_json(out.with_suffix(".json"), cfg, flag="--out")
    else:
        save_model(model, cfg, out, half=half)
    log(f"wrote {out}.json ({comp['recipe']}; {comp['params']:,} params, was {base_params:,})")
    return model, comp


def cmd_compress(args: argparse.Namespace) -> int:
    import torch

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    compress(args)
    return 0


def _example(model: nn.Module, cfg: dict, task: Task):
    """One representative input (median-width line / median-length character) for FLOPs and latency."""
    import torch

    if task.kind == "image":
        from inkpack.batching import pad_collate

        widths = task.lines.widths
        i = sorted(range(len(widths)), key=widths.__getitem__)[len(widths) // 2]
        b = pad_collate([torch.from_numpy(task.batcher.image(i))[None]])
        return (b.images, b.heights, b.widths)
    lens = [len(task.ds[i][0]) for i in range(min(task.n, 50))]
    i = sorted(range(len(lens)), key=lens.__getitem__)[len(lens) // 2]
    f = torch.from_numpy(task.ds[i][0])[None]
    return (f, torch.tensor([f.shape[1]]))


def _accuracy(model: nn.Module, cfg: dict, alphabet, task: Task) -> dict:
    import torch

    if task.kind == "image":
        from inkpack.metrics import ErrorCounts
        from inkpack.recognizer import LineRecognizer

        rec = LineRecognizer(model, cfg, alphabet)
        ims = [torch.from_numpy(task.batcher.image(i))[None] for i in range(task.n)]
        counts = ErrorCounts()
        for hyp, ref in zip(rec.recognize_prepared(ims), task.lines.texts, strict=True):
            counts.add(hyp, ref)
        return {"cer": counts.cer, "wer": counts.wer, "lines": task.n}
    from inkpack.data.hanzi_synth import collate_chars

    correct = 0
    with torch.inference_mode():
        for s in range(0, task.n, 64):
            feats, lengths, targets = collate_chars([task.ds[i] for i in range(s, min(task.n, s + 64))])
            correct += int((model(feats, lengths).argmax(-1) == targets).sum())
    return {"top1": correct / task.n, "samples": task.n}


def report(paths: list[str], data: str | None, limit: int | None = None, runs: int = 10,
           log: Callable[[str], None] = print) -> dict[str, dict]:
    """One row per model on the same data; ratios against the first model. Latencies of models
    on the same input are measured in turn within each round (``measure_latencies``)."""
    from inkpack.compress.report import (
        compare,
        count_flops,
        count_params,
        measure_latencies,
        size_on_disk_mb,
    )
    from inkpack.model_io import resolve

    rows: dict[str, dict] = {}
    groups: dict[tuple, tuple[Task, object, dict]] = {}  # task key -> (task, example input, {row name: model})
    for path in paths:
        stem = resolve(path)
        model, cfg, alphabet = load_any(path, int8=True)
        fp32, _, _ = load_any(path, int8=False)
        kind = cfg.get("input_kind", "image")
        key = (kind, data or cfg.get("trained_on"), json.dumps(cfg.get("preprocessing", {}), sort_keys=True),
               "".join(alphabet.symbols) if kind == "char" else "")
        if key not in groups:
            task = Task(cfg, alphabet, data, limit=limit, split="val")
            groups[key] = (task, _example(fp32, cfg, task), {})
        task, example, models = groups[key]
        comp = cfg.get("compression", {})
        files = sum(p.stat().st_size for p in model_files(stem, cfg) if p.exists()) / 1e6
        name = stem.name if stem.name not in rows else str(stem)
        row = {"params": count_params(fp32), "nonzero_params": count_params(fp32, nonzero=True),
               "size_mb": size_on_disk_mb(model) if comp.get("int8") else files, "files_mb": files,
               "gflops": count_flops(fp32, example) / 1e9}
        row.update(_accuracy(model, cfg, alphabet, task))
        row["recipe"] = comp.get("recipe", "-")
        rows[name] = row
        models[name] = model
        log(f"measured {name}")
    for _, example, models in groups.values():
        for name, ms in measure_latencies(models, example, runs=runs, threads=1).items():
            rows[name]["latency_ms"] = ms
    return compare(rows, next(iter(rows)))


def plot_report(rows: dict[str, dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in rows.items():
        acc = 100 * (1 - r["cer"]) if "cer" in r else 100 * r["top1"]
        ax.scatter(r["latency_ms"], acc)
        ax.annotate(name, (r["latency_ms"], acc), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (1 CPU thread)")
    ax.set_ylabel("accuracy % (100 - CER, or top-1)")
    ax.grid(alpha=0.3)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def cmd_report(args: argparse.Namespace) -> int:
    from inkpack.compress.report import format_table

    rows = report(args.models, args.data, args.limit, args.runs, log=lambda m: print(m, file=sys.stderr))
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows, flag="--json")
    if args.plot:
        plot_report(rows, args.plot)
    return 0


def add_parsers(sub) -> None:
    """`compress` and `report` subcommands (cli.py: `from inkpack.compress.commands import add_parsers`)."""
    p = sub.add_parser("compress", help="compress a model: distill, tucker, svd, adw, kmeans, int8 (join with '+')")
    p.add_argument("model")
    p.add_argument("--recipe", help="e.g. tucker+int8, svd+adw+kmeans, distill (none with --half: float16 storage only)")
    p.add_argument("--out", required=True, help="output stem (writes OUT.json + weights)")
    p.add_argument("--data", help="training data for retraining (TSV for image models, medians for char models)")
    p.add_argument("--steps", type=int, default=0, help="retraining steps per retraining stage (0: one-shot)")
    p.add_argument("--teacher", help="distill: teacher model (then MODEL is the student's start)")
    p.add_argument("--student-arch", default="darknet-dblstm", help="distill without --teacher: student architecture")
    p.add_argument("--student-width", type=float, help="distill without --teacher: scale the student's conv "
                   "channels (darknet-dblstm option width, e.g. 0.5)")
    p.add_argument("--criterion", default="cnn-mah", choices=CRITERIA)
    p.add_argument("--temperature", type=float, default=1.0, help="softmax-ce temperature")
    p.add_argument("--finetune-steps", type=int, default=0, help="distill: CTC fine-tune steps afterwards")
    p.add_argument("--energy", type=float, default=0.9, help="tucker: kept energy for ranks")
    p.add_argument("--tucker-method", default="energy", choices=("energy", "vbmf"))
    p.add_argument("--svd-energy", type=float, default=0.9, help="svd: kept energy per matrix")
    p.add_argument("--svd-ranks", help="svd: ranks per layer instead, e.g. fc2=64,fc1=64,lstm2=48:128 (LSTM ih:hh)")
    p.add_argument("--sparsity", type=float, default=0.5, help="adw: final share of dropped weights")
    p.add_argument("--bits", default="5", help="kmeans: bits per shared weight, or per layer: fc2.weight=5,*=4")
    p.add_argument("--kmeans-train", default="latent", choices=("latent", "centroids"),
                   help="kmeans retraining: latent full-precision weights that may change cluster (default), "
                        "or the seed's centroid-only fine-tuning")
    p.add_argument("--kmeans-lr", type=float, help="kmeans retraining rate (default 1e-3 latent, --lr/3 centroids; "
                   "on lstm-char latent training kept 94.3%% top-1 at 1e-3, 91.7%% at 3e-4)")
    p.add_argument("--half-raw", action="store_true", help="kmeans: store biases and other unshared tensors as float16")
    p.add_argument("--half", action="store_true", help="store the weights file as float16 (half the size; loaded as "
                   "float32, then quantized when the recipe has int8)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, help="use only the first N training lines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(fn=cmd_compress)
    r = sub.add_parser("report", help="size / FLOPs / latency / accuracy table for models on the same data")
    r.add_argument("models", nargs="+")
    r.add_argument("--data", help="evaluation data (TSV for image models; medians for char models)")
    r.add_argument("--limit", type=int, help="first N lines / samples")
    r.add_argument("--runs", type=int, default=10, help="timed runs per model")
    r.add_argument("--json")
    r.add_argument("--plot", help="accuracy vs latency PNG")
    r.set_defaults(fn=cmd_report)
