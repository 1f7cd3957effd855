"""``inkpack models``: the shipped models (name, task, size, validation figure) and the
architectures (parameters, GFLOPs for a typical input of each kind).

Typical inputs: an image line 8x as wide as the model's height; an ink line of
``INK_LINE_POINTS`` points, a character of ``CHAR_POINTS`` points (6 features per point).
"""

from __future__ import annotations

import argparse
from pathlib import Path

INK_LINE_POINTS = 700
CHAR_POINTS = 60
TASKS = {"image": "line image", "ink": "ink line", "char": "ink char"}


def _measure(cfg: dict) -> str:
    m = cfg.get("metrics") or {}
    if isinstance(m, dict):
        full = m.get("full_val") if isinstance(m.get("full_val"), dict) else {}
        if isinstance(full.get("cer"), (int, float)):  # the whole val set, not a training-time subset
            return f"val CER {100 * full['cer']:.1f}%"
        if isinstance(m.get("val_cer"), (int, float)):
            return f"val CER {100 * m['val_cer']:.1f}%"
        if isinstance(m.get("val_top1"), (int, float)):
            return f"val top-1 {100 * m['val_top1']:.1f}%"
        if isinstance(m.get("val_baseline_f1"), (int, float)):
            return f"val baseline F1 {m['val_baseline_f1']:.3f}"
    src = (cfg.get("compression") or {}).get("source")
    return f"(compressed from {Path(src).name})" if src else "-"


def shipped_models(folder: Path) -> list[dict]:
    """One row per ``NAME.json`` in ``folder``: name, task, arch, MB (all of NAME's files), measure."""
    from inkpack.errors import InkpackError
    from inkpack.models.io import input_kind as _input_kind
    from inkpack.models.io import read_config

    rows = []
    for js in sorted(folder.glob("*.json")):
        stem = js.with_suffix("")
        try:
            cfg = read_config(stem)
        except InkpackError as e:
            rows.append({"name": stem.name, "task": "?", "arch": "?", "mb": 0.0, "measure": f"unreadable: {e}"})
            continue
        files = [p for p in folder.glob(stem.name + ".*") if p.is_file()]
        task = "page" if cfg.get("task") == "segment" else TASKS.get(_input_kind(cfg), _input_kind(cfg))
        rows.append({"name": stem.name, "task": task,
                     "arch": cfg["arch"], "mb": sum(p.stat().st_size for p in files) / 1e6,
                     "measure": _measure(cfg)})
    return rows


def _example(model, kind: str):
    import torch

    if kind == "image":
        h = int(getattr(model, "height", 48))
        x = torch.zeros(1, 1, h, 8 * h)
        return (x, torch.tensor([h]), torch.tensor([x.shape[-1]])), f"1x{h}x{8 * h}"
    n = CHAR_POINTS if kind == "char" else INK_LINE_POINTS
    feats = int(getattr(model, "in_features", 6))
    return (torch.zeros(1, n, feats), torch.tensor([n])), f"{n} points"


def architectures() -> list[dict]:
    from inkpack.compress.report import count_flops
    from inkpack.models import REGISTRY, build_model

    rows = []
    for name, spec in sorted(REGISTRY.items()):
        model = build_model(name, 86).eval()
        params = sum(p.numel() for p in model.parameters())
        args, what = _example(model, spec.input_kind)
        try:
            gflops = count_flops(model, args) / 1e9
        except Exception:  # noqa: BLE001 - a new architecture the counter cannot trace: say so, not nan
            gflops, what = None, "not countable"
        rows.append({"name": name, "input": spec.input_kind, "params": params, "gflops": gflops,
                     "typical_input": what, "description": spec.description})
    return rows


def cmd_models(a: argparse.Namespace) -> int:
    from inkpack.models.io import models_dir

    folder = models_dir()
    ships = shipped_models(folder)
    print(f"shipped models ({folder}):")
    print(f"{'name':<24} {'task':<10} {'architecture':<16} {'MB':>6}  validation")
    for r in ships:
        print(f"{r['name']:<24} {r['task']:<10} {r['arch']:<16} {r['mb']:>6.2f}  {r['measure']}")
    print(f"\n{'architecture':<16} {'input':<6} {'params':>9} {'GFLOPs':>8}  {'typical input':<13}  description")
    for r in architectures():
        g = f"{r['gflops']:>8.3f}" if r["gflops"] is not None else f"{'-':>8}"
        print(f"{r['name']:<16} {r['input']:<6} {r['params'] / 1e6:>8.2f}M {g}  {r['typical_input']:<13}  "
              f"{r['description']}")
    return 0


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list the shipped models and the architectures (parameters, GFLOPs)")
    m.set_defaults(fn=cmd_models)
