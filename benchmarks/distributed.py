"""Rank imbalance of count- versus cost-based splitting of global batches, and DDP equivalence.

Usage: ``benchmarks/distributed.py [--quick] [--json OUT]``.

For each size distribution (those of ``benchmarks/packing.py``: IAM line boxes, Hooker
line images, IAM-OnDB-derived word boxes; IAM lines resized to height 48 as
``train/loop.py`` loads them; IAM-OnDB point counts per line as the ink case), global batches of 32 and 64 are built as
training builds them (width-bucketed, or random), split among 2/4/8 ranks by count (the
seed's contiguous scatter; a strided deal is shown too) and by cost, and each rank's cost
is computed from sizes alone (no hardware): padded ``n * maxH * maxW``; packed: the area of
the canvas ``inkpack.packing.pack_layout`` builds for the rank's share (the split itself
balances the additive estimate ``(h+1)(w+1)``); ink: points. Per epoch,
``imbalance = sum over steps of the slowest rank / sum of the mean rank`` (the time lost
waiting); ``step x = slowest-rank cost under the count split / the same under the cost
split`` (the expected speed-up of a step); ``vs LB`` compares the cost split's slowest rank
with ``max(largest example, real cells / ranks)``, which no split can beat. Headline: the
worst padded-model configuration over distributions and batch sizes, 8 ranks,
width-bucketed global batches (how the training loop forms pad-min batches).
The 2-process gloo equivalence test is run as well (max |param difference| after k steps).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

from common import write_json

from inkpack.batching import bucket_batches, random_batches
from inkpack.packing import pack_layout
from inkpack.train.sharding import (
    batch_cost,
    example_cost,
    split_by_cost,
    split_by_count,
)

SEED = 20240611
WORLDS = (2, 4, 8)
BATCHES = (32, 64)
GOAL = 1.05


def load_distributions() -> tuple[dict[str, tuple[str, list]], list[str]]:
    """name -> (mode, sizes); sizes are (h, w) for images, point counts for ink.

    Image sizes are the packing benchmark's (``benchmarks/packing.py``: model-input scale,
    IAM boxes at 150 dpi, Hooker lines scaled to the median IAM line height).
    """
    out, skipped = {}, []
    spec = importlib.util.spec_from_file_location("bench_packing", ROOT / "benchmarks" / "packing.py")
    packing_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(packing_bench)
    try:
        sizes = packing_bench.load_sizes()
    except FileNotFoundError as e:  # the word sizes are made by benchmarks/data/make_word_sizes.py
        skipped.append(f"words, lines, hooker: {e}")
        sizes = {}
    for name in ("lines", "hooker", "words"):
        if name in sizes:
            out[name] = ("padded", sizes[name])
    if "lines" in sizes:  # as loop.py feeds lines: resized to height 48, aspect ratio kept
        out["lines_h48"] = ("padded", [(48, max(1, round(w * 48 / h))) for h, w in sizes["lines"]])
    npz = DATA / "iamondb" / "train.npz"
    if npz.exists():
        with np.load(npz) as d:
            out["ink_points"] = ("ink", np.diff(d["offsets"]).astype(int).tolist())
    else:
        skipped.append(f"ink_points: {npz} absent")
    return out, skipped


def global_batches(sizes: list, batching: str, b: int, max_batches: int) -> list[list[int]]:
    widths = [s[1] if isinstance(s, tuple) else s for s in sizes]
    if batching == "bucketed":  # raw-size images pad in height too: bucket on both sides
        heights = [s[0] for s in sizes] if isinstance(sizes[0], tuple) else None
        bs = bucket_batches(widths, b, seed=SEED, heights=heights)
    else:
        bs = random_batches(len(sizes), b, seed=SEED)
    return [x for x in bs if len(x) == b][:max_batches]


def rank_cost(sizes: list, mode: str) -> float:
    """What a rank's sub-batch costs: padded area, the packer's real canvas, or ink points."""
    if mode == "packed":
        return float(pack_layout([h for h, _ in sizes], [w for _, w in sizes]).canvas_cells) if sizes else 0.0
    return batch_cost(sizes, mode)


def measure(sizes: list, mode: str, batches: list[list[int]], world: int) -> dict:
    slow = {"count": 0.0, "strided": 0.0, "cost": 0.0}
    mean = dict.fromkeys(slow, 0.0)
    per_step_cost, split_s, bound = [], 0.0, 0.0
    for b in batches:
        sz = [sizes[i] for i in b]
        t = time.perf_counter()
        cost_parts = split_by_cost(sz, world, mode)
        split_s += time.perf_counter() - t
        splits = {
            "count": split_by_count(len(b), world),
            "strided": [list(range(r, len(b), world)) for r in range(world)],
            "cost": cost_parts,
        }
        for name, parts in splits.items():
            c = [rank_cost([sz[j] for j in p], mode) for p in parts]
            slow[name] += max(c)
            mean[name] += sum(c) / world
            if name == "cost":
                per_step_cost.append(max(c) / (sum(c) / world))
        real = [example_cost(x, "padded" if mode == "packed" else mode) for x in sz]
        bound += max(max(real), sum(real) / world)  # no split can beat this slowest rank
    return {
        "imbalance_count": slow["count"] / mean["count"],
        "imbalance_count_strided": slow["strided"] / mean["strided"],
        "imbalance_cost": slow["cost"] / mean["cost"],
        "step_ratio": slow["count"] / slow["cost"],
        "step_ratio_vs_strided": slow["strided"] / slow["cost"],
        "cost_over_lower_bound": slow["cost"] / bound,
        "imbalance_cost_per_step_p95": float(np.percentile(per_step_cost, 95)),
        "split_ms_per_batch": 1000 * split_s / len(batches),
        "steps": len(batches),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 global batches per configuration, 4 DDP steps")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    max_batches = 40 if args.quick else 200
    dists, skipped = load_distributions()
    rows, detail = [], {}
    for name, (mode, sizes) in dists.items():
        # as loop.py forms them: pad-min uses width buckets, packing random batches
        configs = [(mode, "bucketed"), (mode, "random")] + ([("packed", "random")] if mode == "padded" else [])
        detail[name] = {"examples": len(sizes), "size_model": mode, "results": []}
        for (m, batching), b in itertools.product(configs, BATCHES):
            batches = global_batches(sizes, batching, b, max_batches)
            for world in WORLDS:
                r = {"mode": m, "batching": batching, "global_batch": b, "ranks": world}
                r.update(measure(sizes, m, batches, world))
                detail[name]["results"].append(r)
                rows.append((name, r))
    print("imbalance = slowest rank / mean rank (per epoch); step x = slowest-rank cost, count split / cost split;")
    print("vs LB = slowest rank under the cost split / a lower bound no split can beat\n")
    print(f"{'distribution':19} {'mode':6} {'batching':8} {'B':>3} {'R':>2} | {'count':>6} {'strided':>7} "
          f"{'cost':>6} | {'step x':>6} {'vs LB':>6} {'ms/split':>8}")
    for name, r in rows:
        print(f"{name:19} {r['mode']:6} {r['batching']:8} {r['global_batch']:3d} {r['ranks']:2d} | "
              f"{r['imbalance_count']:6.3f} {r['imbalance_count_strided']:7.3f} {r['imbalance_cost']:6.3f} | "
              f"{r['step_ratio']:6.2f} {r['cost_over_lower_bound']:6.3f} {r['split_ms_per_batch']:8.2f}")

    head = [(n, r) for n, r in rows if r["ranks"] == 8 and r["mode"] == "padded" and r["batching"] == "bucketed"]
    worst_count = max(head, key=lambda x: x[1]["imbalance_count"])
    worst_cost = max(head, key=lambda x: x[1]["imbalance_cost"])
    worst_by_setting = {}  # 8 ranks, worst over distributions and batch sizes, per (mode, batching)
    for n, r in rows:
        key = f"{r['mode']}/{r['batching']}"
        w = worst_by_setting.setdefault(key, {"imbalance_count": 0.0, "imbalance_cost": 0.0, "step_ratio_min": 9e9})
        if r["ranks"] == 8:
            w["imbalance_count"] = max(w["imbalance_count"], r["imbalance_count"])
            w["imbalance_cost"] = max(w["imbalance_cost"], r["imbalance_cost"])
            w["step_ratio_min"] = min(w["step_ratio_min"], r["step_ratio"])
    print("\n8 ranks, worst over distributions and B in {32, 64}:")
    for key, w in worst_by_setting.items():
        print(f"  {key:16} imbalance count {w['imbalance_count']:.3f} -> cost {w['imbalance_cost']:.3f}, "
              f"step x >= {w['step_ratio_min']:.2f}")

    from inkpack.train.ddp_equivalence import run_equivalence  # the 2-process harness the test runs too

    steps = 4 if args.quick else 12
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_equivalence(tmp, steps=steps)
    equivalence = {
        "steps": steps,
        "processes": 2,
        "backend": "gloo",
        "max_abs_param_diff": res["max_diff"],
        "max_abs_param_diff_naive_per_rank_mean": res["max_diff_naive"],
        "max_abs_param_change_from_init": res["moved"],
        "examples_per_rank_per_step": res["counts"],
        "seconds": time.perf_counter() - t,
    }
    print(f"\nequivalence, 2 gloo processes vs 1, {steps} steps: max |diff| {res['max_diff']:.2e} "
          f"(naive per-rank mean: {res['max_diff_naive']:.2e}; weights moved {res['moved']:.2f})")

    def cfg(x):
        return {"distribution": x[0], **{k: x[1][k] for k in ("mode", "batching", "global_batch", "ranks")}}

    out = {
        "imbalance_count": worst_count[1]["imbalance_count"],
        "imbalance_cost": worst_cost[1]["imbalance_cost"],
        "equivalence_max_diff": res["max_diff"],
        "goal_imbalance_cost": GOAL,
        "goal_met": worst_cost[1]["imbalance_cost"] <= GOAL,
        "headline": "worst over distributions x global batch {32, 64}, 8 ranks, padded model, width-bucketed "
        "global batches (how loop.py forms pad-min batches)",
        "worst_count_config": cfg(worst_count),
        "worst_cost_config": cfg(worst_cost),
        "step_ratio_at_worst_cost": worst_cost[1]["step_ratio"],
        "worst_by_setting_8_ranks": worst_by_setting,
        "equivalence": equivalence,
        "per_distribution": detail,
        "skipped": skipped,
        "quick": args.quick,
        "max_global_batches_per_config": max_batches,
    }
    print(f"headline (8 ranks, padded, worst case): imbalance count {out['imbalance_count']:.3f} "
          f"-> cost {out['imbalance_cost']:.3f} (goal <= {GOAL}: {'met' if out['goal_met'] else 'MISSED'}; "
          f"worst at {cfg(worst_cost)})")
    for s in skipped:
        print("skipped:", s)
    write_json(args.json, out)


if __name__ == "__main__":
    main()
