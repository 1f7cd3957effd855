"""`inkpack report`: models measured side by side on the same data (size, FLOPs, latency,
accuracy; the measuring functions are in :mod:`inkpack.compress.report`). torch is imported
where it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from inkpack.compress.recipe import model_files
from inkpack.compress.retrain import Task

if TYPE_CHECKING:  # torch is imported where it runs: `inkpack compress --help` stays light
    from torch import nn

__all__ = ["accuracy", "example_input", "plot_report", "report"]


def example_input(model: nn.Module, cfg: dict, task: Task):
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


def accuracy(model: nn.Module, cfg: dict, alphabet, task: Task) -> dict:
    """CER/WER over ``task``'s lines (images) or top-1 over its samples (characters)."""
    return task.accuracy(model, cfg)


_example = example_input  # the private names of before (benchmarks used them); kept for compatibility
_accuracy = accuracy


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
    from inkpack.models.io import input_kind, load_model, resolve

    rows: dict[str, dict] = {}
    groups: dict[tuple, tuple[Task, object, dict]] = {}  # task key -> (task, example input, {row name: model})
    for path in paths:
        stem = resolve(path)
        model, cfg, alphabet = load_model(path, int8=True)
        fp32, _, _ = load_model(path, int8=False)  # FLOPs are counted on the fp32 graph
        kind = input_kind(cfg)
        key = (kind, data or cfg.get("trained_on"), json.dumps(cfg.get("preprocessing", {}), sort_keys=True),
               "".join(alphabet.symbols) if kind == "char" else "")
        if key not in groups:
            task = Task(cfg, alphabet, data, limit=limit, split="val")
            groups[key] = (task, example_input(fp32, cfg, task), {})
        task, example, models = groups[key]
        comp = cfg.get("compression", {})
        files = sum(p.stat().st_size for p in model_files(stem, cfg) if p.exists()) / 1e6
        name = stem.name if stem.name not in rows else str(stem)
        row = {"params": count_params(fp32), "nonzero_params": count_params(fp32, nonzero=True),
               "size_mb": size_on_disk_mb(model) if comp.get("int8") else files, "files_mb": files,
               "gflops": count_flops(fp32, example) / 1e9}
        row.update(accuracy(model, cfg, alphabet, task))
        row["recipe"] = comp.get("recipe", "-")
        rows[name] = row
        models[name] = model
        log(f"measured {name}")
    for _, example, models in groups.values():
        for name, ms in measure_latencies(models, example, runs=runs, threads=1).items():
            rows[name]["latency_ms"] = ms
    return compare(rows, next(iter(rows)))


def plot_report(rows: dict[str, dict], out: str, title: str | None = None) -> None:
    """Accuracy (100 - CER, or top-1) against single-thread latency, one point per row (named in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lat = [r["latency_ms"] for r in rows.values()]
    for name, r in rows.items():
        acc = 100 * (1 - r["cer"]) if "cer" in r else 100 * r["top1"]
        mb = r.get("files_mb", r.get("size_mb"))
        label = f"{name} ({mb:.2f} MB)" if mb is not None else name
        ax.scatter(r["latency_ms"], acc, s=20 + 15 * (mb or 0), label=label)  # marker area grows with the file
    ax.legend(fontsize=8, loc="best")  # a legend, not labels at the points: close points would overlap
    if max(lat) > 5 * min(lat):  # a log axis only where the latencies span one
        ax.set_xscale("log")
    ax.margins(x=0.25, y=0.1)
    ax.set_xlabel("latency, ms (1 CPU thread; marker area: file MB)")
    ax.set_ylabel("accuracy % (100 - CER, or top-1)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
