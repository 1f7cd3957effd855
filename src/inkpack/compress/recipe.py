"""The `inkpack compress` recipes (combinable with '+') applied to a model file.

A compressed model is NAME.json + weights. The json keeps the base architecture and adds a
``compression`` record: the recipe, the replaced modules (`layout.structure`), where the weights
are (``safetensors``, or ``shared-npz`` = the k-means compact file NAME.npz) and an ``int8`` flag
(fp32 weights stored, dynamic int8 applied at load). `models.io.load_model` applies
the `compress.structure` helpers for such files. Recipes run in the fixed order distill →
tucker → svd → adw → kmeans → int8 whatever order they are written in; retraining recipes use
--data/--steps (:mod:`inkpack.compress.retrain`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inkpack.compress.converge import Convergence, StageRun
from inkpack.compress.retrain import Task, drop_weights, retrain, share_weights
from inkpack.errors import InkpackError, InputError
from inkpack.jsonio import write_json

if TYPE_CHECKING:  # torch is imported where it runs: `inkpack compress --help` stays light
    from torch import nn

__all__ = ["OPTION_DEFAULTS", "PRESETS", "RECIPES", "apply_preset", "compress", "model_files", "out_stem", "parse_bits",
           "parse_recipe", "parse_sparsity", "stage_run", "store_half"]

RECIPES = ("distill", "tucker", "svd", "adw", "kmeans", "int8")
# the synthetic character stream that --converge scores stages on (the fixed validation set is
# seed VAL_SEED of the same generator; training draws from another stream)
SELECT_SEED = 20261207

# --recipe NAME: options that reproduce a model end to end (`source`: the model it was made from;
# `defaults`: options the command line may override, e.g. --steps for a quick run)
PRESETS: dict[str, dict] = {
    "hooker-darknet-int8": {"source": "hooker-darknet", "recipe": "int8", "half": True,
                            "doc": "the shipped models/hooker-darknet-int8: float16 file, dynamic int8 at load"},
    "lstm-svd": {"source": "hooker-darknet", "recipe": "svd", "svd_ranks": "lstm=64:48",
                 "defaults": {"steps": 60},
                 "doc": "low-rank DBLSTM (issue 22): input ranks 64, recurrent 48, 60 CTC steps (needs --data)"},
    "lstm-narrow": {"source": "hooker-darknet", "recipe": "distill", "student_lstm_hidden": 64,
                    "criterion": "lstm-l2", "defaults": {"steps": 50, "finetune_steps": 40, "lr": 1e-3},
                    "doc": "a 64-unit DBLSTM distilled with LSTM-L2 (issue 22): 50 distillation + 40 CTC steps "
                    "(needs --data)"},
    "lstm-adw": {"source": "hooker-darknet", "recipe": "adw+kmeans",
                 "defaults": {"sparsity": "lstm.weight_*=0.5", "steps": 60, "lr": 1e-4, "bits": "*=8",
                              "kmeans_steps": 0},
                 "doc": "adaptive drop-weight of the DBLSTM matrices to 50% over 60 CTC steps, then 8-bit k-means "
                 "sharing of every weight matrix, the pruned ones stored sparse (needs --data; a smaller file, "
                 "not a faster model: dense kernels skip no zeros)"},
}

# what the compress options mean when neither the command line nor a preset sets them
OPTION_DEFAULTS: dict[str, object] = {"steps": 0, "finetune_steps": 0, "lr": 3e-4, "sparsity": "0.5", "bits": "5",
                                      "kmeans_steps": None}


def apply_preset(args: argparse.Namespace) -> str | None:
    """``--recipe NAME`` of a preset: its options set on ``args`` (the recipe included), its
    ``defaults`` only where the command line left an option unset; then every option still unset
    gets :data:`OPTION_DEFAULTS`. Returns the preset's name (None for a plain recipe)."""
    name = (getattr(args, "recipe", None) or "").strip().lower()
    preset = PRESETS.get(name)
    for key, value in (preset or {}).items():
        if key not in ("source", "doc", "defaults"):
            setattr(args, key, value)
    for key, value in {**OPTION_DEFAULTS, **(preset or {}).get("defaults", {})}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return name if preset is not None else None


def _per_name(text: str | float, cast, flag: str, form: str):
    """``V`` (every weight) or ``GLOB=V,...`` (first matching glob wins) cast by ``cast``."""
    text = str(text).strip()
    try:
        if "=" not in text:
            return cast(text)
        out = {}
        for part in text.split(","):
            key, _, val = part.partition("=")
            out[key.strip()] = cast(val)
        return out
    except ValueError:
        raise InkpackError(f"{flag}: expected {form}, got {text!r}") from None


def parse_sparsity(text: str | float) -> float | dict[str, float]:
    """``0.5`` (every weight matrix) or ``lstm.weight_*=0.75,proj.weight=0.5`` (first matching glob
    wins; parameters no glob names are not pruned)."""
    return _per_name(text, float, "--sparsity", "S or NAME=S,...")


def parse_bits(text: str | int) -> int | dict[str, int]:
    """``5`` (every weight) or ``fc2.weight=5,lstm1.*=6,*=4`` (first matching glob wins)."""
    return _per_name(text, int, "--bits", "N or NAME=N,...")


def parse_recipe(text: str) -> list[str]:
    parts = [p.strip().lower() for p in text.split("+") if p.strip()]
    if not parts:
        raise InkpackError(f"--recipe: none given (use {'|'.join(RECIPES)}, joined by '+'; or --half alone)")
    bad = [p for p in parts if p not in RECIPES]
    if bad:
        raise InkpackError(f"--recipe: unknown part {bad[0]!r} (use {'|'.join(RECIPES)}, joined by '+')")
    return [r for r in RECIPES if r in parts]


def model_files(stem: Path, cfg: dict) -> list[Path]:
    comp = cfg.get("compression", {})
    return [stem.with_suffix(".json"), stem.with_suffix(".npz" if comp.get("weights") == "shared-npz" else ".safetensors")]


def out_stem(path: str) -> Path:
    """OUT as given, or without the extension of one of the files it names."""
    out = Path(path)
    return out.with_suffix("") if out.suffix in (".json", ".safetensors", ".npz") else out


def store_half(model_path: str, out_path: str, log: Callable[[str], None] = print) -> tuple[nn.Module, dict]:
    """Rewrite a plain model with float16 weights (half the file; `load_model` returns float32)."""
    from inkpack.models.io import load_model, save_model

    model, cfg, _ = load_model(model_path)
    if cfg.get("compression"):
        raise InkpackError(f"{model_path}: already compressed; use --half with its recipe instead")
    out = out_stem(out_path)
    save_model(model, dict(cfg, weights_dtype="float16"), out, half=True)
    log(f"wrote {out}.json (float16 weights, {out.with_suffix('.safetensors').stat().st_size / 1e6:.2f} MB)")
    return model, {"recipe": "", "weights_dtype": "float16"}


def read_table(path: str) -> dict:
    """A per-layer Tucker latency table (or a benchmarks/tucker_layers.py result holding several)."""
    import json

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: --tucker-table file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: --tucker-table is not a readable JSON file ({type(e).__name__})") from None
    if not isinstance(doc, dict) or not ("layers" in doc or "tables" in doc):
        raise InputError(f"{path}: --tucker-table holds no 'layers' or 'tables' (benchmarks/tucker_layers.py writes them)")
    return doc


def stage_run(args: argparse.Namespace, cfg: dict, alphabet, steps: int,
              log: Callable[[str], None]) -> StageRun | None:
    """``--converge EVERY:PATIENCE[:MAX]``: every retraining stage to convergence, scored on
    ``--val`` (lines) or on a synthetic character stream that neither training nor the fixed
    validation set uses; stage checkpoints in ``--work`` (default OUT.stages/), resumed by the
    same command."""
    text = getattr(args, "converge", None)
    if not text:
        return None
    conv = Convergence.parse(text)
    if not steps:
        raise InkpackError("--converge: give --steps N too (retraining on; adaptive drop-weight's sparsity rises over 2N/3)")
    kind = cfg.get("input_kind", "image")
    val = getattr(args, "val", None)
    if kind == "image" and not val:
        raise InkpackError("--converge: give --val VAL.tsv, the lines each stage's early stopping is scored on")
    task = Task(cfg, alphabet, val or args.data, limit=getattr(args, "val_limit", None), split="val",
                val_seed=None if kind == "image" else SELECT_SEED)
    work = Path(getattr(args, "work", None) or str(out_stem(args.out)) + ".stages")
    return StageRun(conv, lambda m: task.score(m, cfg), work, log, selection=task)


def compress(args: argparse.Namespace, log: Callable[[str], None] = print) -> tuple[nn.Module, dict]:
    """Apply the recipe to MODEL and write OUT (.json + weights); returns (fp32 model, record)."""
    from inkpack.compress import layout, lowrank, tucker
    from inkpack.compress.report import count_params
    from inkpack.models.io import load_model, resolve, save_model

    preset = apply_preset(args)
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
    run = stage_run(args, cfg, alphabet, steps, log)

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
            narrow = getattr(args, "student_lstm_hidden", None)
            if narrow:
                extra["lstm_hidden"] = int(narrow)
            student = student_like(cfg, args.student_arch, alphabet.num_classes, **extra)
            cfg = dict(cfg, arch=args.student_arch, options={**cfg.get("options", {}), **extra})
        if args.teacher and getattr(args, "student_lstm_hidden", None):
            raise InkpackError("distill: --student-lstm-hidden builds a fresh student; with --teacher, MODEL is the student")
        narrow = (getattr(getattr(student, "lstm", None), "hidden_size", None)
                  != getattr(getattr(teacher, "lstm", None), "hidden_size", None))  # a narrower DBLSTM
        if narrow and args.criterion != "lstm-l2":
            raise InkpackError("distill: a student DBLSTM narrower than the teacher's is distilled with --criterion lstm-l2")
        t = get_task()
        if run is not None:  # both stages to convergence, scored with the student's config
            from inkpack.compress.distill import DistillStage, init_student

            if not narrow:
                init_student(student, teacher)
            stage = DistillStage(teacher, student, t.batch, "lstm-l2-narrow" if narrow else args.criterion,
                                 args.temperature)
            scfg, sel = cfg, run.selection
            run.score = lambda m: sel.score(m, scfg)
            run("distill", student, stage, lr=args.lr, params=stage.params)
            stage.finish(student)
            run("finetune", student, t, lr=args.lr / 3)
            notes.append(f"distill {args.criterion} from {tcfg.get('arch')} to convergence, then CTC fine-tuning")
            model, base_params = student, count_params(teacher)
        elif narrow:
            log(f"distill lstm-l2 (narrow): {steps} steps, then CTC fine-tune {args.finetune_steps} steps")
            from inkpack.compress.distill import distill_narrow_lstm

            h = distill_narrow_lstm(teacher, student, t.batch, steps, lr=args.lr, log_every=max(1, steps // 5), log=log)
        else:
            log(f"distill {args.criterion}: {steps} steps, then CTC fine-tune {args.finetune_steps} steps")
            h = distill(teacher, student, t.batch, args.criterion, steps, lr=args.lr, temperature=args.temperature,
                        log_every=max(1, steps // 5), log=log)
        if run is None:
            f = finetune_ctc(student, t.batch, args.finetune_steps, lr=args.lr / 3,
                             log_every=max(1, args.finetune_steps // 5), log=log)
            notes.append(f"distill {args.criterion} from {tcfg.get('arch')} ({steps} + {args.finetune_steps} CTC "
                         f"steps; final distill loss {h['losses'][-1] if h['losses'] else None})")
            model, base_params = student, count_params(teacher)
            comp_extra = {"distill_losses": h["losses"][-1:], "finetune_losses": f["losses"][-1:]}
    if "tucker" in recipe and getattr(args, "tucker_table", None):  # only where measured faster
        from inkpack.compress.tucker_select import tucker_where_faster

        backend, min_x = getattr(args, "tucker_backend", "torch"), getattr(args, "tucker_min_speedup", 1.0)
        ch = tucker_where_faster(model, read_table(args.tucker_table), backend, min_x)
        comp_extra["tucker_selection"] = {"table": str(args.tucker_table), "backend": backend, "min_speedup": min_x}
        notes += [f"tucker {c.name}: {c.detail}" for c in ch]
    elif "tucker" in recipe:
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
        retrain(model, get_task(), steps, lr=args.lr, log=log, run=run, stage="svd" if "svd" in recipe else "tucker")
    if "adw" in recipe:
        targets = parse_sparsity(args.sparsity)
        log(f"adaptive drop-weight to {args.sparsity}")
        pruner = drop_weights(model, targets, get_task() if steps else None, steps, lr=args.lr, log=log, run=run)
        sp = pruner.sparsity()
        notes.append(f"adw sparsity {sp['total']:.3f}" + ("" if isinstance(targets, float) else f" of {len(sp) - 1} matrices"))
        comp_extra["sparsity"] = {"targets": targets, "measured": round(sp["total"], 4)}
    out = out_stem(args.out)
    comp: dict = {"recipe": "+".join(recipe), "source": str(resolve(args.model)), "int8": "int8" in recipe,
                  "weights": "safetensors", "base_params": base_params}
    if half:
        comp["weights_dtype"] = "float16"
    if preset:
        comp["preset"] = preset
    if "kmeans" in recipe:
        bits = parse_bits(args.bits)
        lr = args.kmeans_lr or (None if args.kmeans_train == "latent" else args.lr / 3)
        k_steps = steps if args.kmeans_steps is None else int(args.kmeans_steps)
        ws = share_weights(model, bits, args.kmeans_train, get_task() if k_steps else None, k_steps, lr=lr, log=log,
                           run=run)
        ws.apply()
        out.parent.mkdir(parents=True, exist_ok=True)
        sizes = ws.save(out.with_suffix(".npz"), raw_half=args.half_raw)
        comp.update(weights="shared-npz", bits=bits, kmeans_train=args.kmeans_train if k_steps else None,
                    npz_ratio=sizes["ratio"])
    if run is not None:
        comp_extra["converged"] = {stage: {k: r[k] for k in ("best", "steps", "stopped")} for stage, r in run.results.items()}
        notes += [f"{stage} retrained to convergence: {r['steps']} steps, selection score {r['best']:.4f} ({r['stopped']})"
                  for stage, r in run.results.items()]
    comp.update(structure=layout.structure(model), params=count_params(model),
                nonzero_params=count_params(model, nonzero=True), notes=notes, **comp_extra)
    cfg = {k: v for k, v in cfg.items() if k != "metrics"}
    cfg["compression"] = comp
    if comp["weights"] == "shared-npz":
        from inkpack.models.io import place_decoder_files

        write_json(out.with_suffix(".json"), place_decoder_files(cfg, out.parent), flag="--out")
    else:
        save_model(model, cfg, out, half=half)
    log(f"wrote {out}.json ({comp['recipe']}; {comp['params']:,} params, was {base_params:,})")
    return model, comp
