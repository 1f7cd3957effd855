"""Wavefront MDLSTM vs the plain cell-by-cell loop, and its GFLOP/s next to dense matmul.

    python benchmarks/mdlstm.py [--quick] [--json OUT]

One thread (the machine is shared). In one run: forward+backward time of the wavefront
layer and of the reference loop on the same input and parameters (batch 8), their ratio,
the max abs difference of outputs and gradients, and the layer's achieved GFLOP/s at batch
8 and 32 (FLOPs counted analytically over the real cells only: 3x the two projections'
multiply-adds for forward+backward, plus ~36h elementwise ops per cell and direction) next to
``torch.matmul`` GFLOP/s measured interleaved with the layer (so both see the same load).
Timings are medians over repetitions; the reference loop is timed once (it takes seconds).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from common import write_json

from inkpack.nn.mdlstm import MDLSTM
from inkpack.nn.mdlstm_reference import mdlstm_reference

GOAL_SPEEDUP, GOAL_FRACTION = 20.0, 0.25


def layer_flops(b: int, c: int, h: int, H: int, W: int, dirs: int) -> float:
    per_cell = 3 * 2 * 5 * h * (c + 2 * h) + 36 * h
    return float(b * H * W * dirs * per_cell)


def fwd_bwd(m: MDLSTM, x: torch.Tensor, gy: torch.Tensor) -> tuple[float, float]:
    """(wall, thread CPU) seconds of one forward + backward."""
    t, c = time.perf_counter(), time.thread_time()
    m(x).backward(gy)
    return time.perf_counter() - t, time.thread_time() - c


def matmul_time(a: torch.Tensor, b: torch.Tensor, budget_s: float) -> tuple[float, float]:
    """(wall, thread CPU) seconds per matmul, over about ``budget_s`` of repeated calls."""
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while True:
        torch.matmul(a, b)
        n += 1
        el = time.perf_counter() - t0
        if el >= budget_s:
            return el / n, (time.thread_time() - c0) / n


def compare_reference(m: MDLSTM, x: torch.Tensor) -> dict:
    params = list(m.parameters())
    x = x.clone().requires_grad_()
    t, c = time.perf_counter(), time.thread_time()
    y_ref = mdlstm_reference(x, m.weight_ih, m.weight_hh, m.bias, None, m.forget_scale, m.merge)
    g_ref = torch.autograd.grad(y_ref, [x, *params], torch.ones_like(y_ref))
    t_ref, c_ref = time.perf_counter() - t, time.thread_time() - c
    y = m(x)
    g = torch.autograd.grad(y, [x, *params], torch.ones_like(y))
    with torch.no_grad():
        return {
            "reference_fwd_bwd_s": t_ref,
            "reference_fwd_bwd_cpu_s": c_ref,
            "max_abs_diff": float((y - y_ref).abs().max()),
            "max_abs_diff_grads": max(float((a - b).abs().max()) for a, b in zip(g, g_ref)),
            # weight gradients sum over every cell, so compare them relative to their size
            "max_rel_diff_grads": max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(g, g_ref)),
        }


def measure_batch(b: int, c: int, h: int, H: int, W: int, reps: int) -> dict:
    torch.manual_seed(0)
    m = MDLSTM(c, h)
    x = torch.randn(b, c, H, W, requires_grad=True)
    gy = torch.randn(b, m.out_channels, H, W).to(memory_format=torch.channels_last)
    n = 1024
    a, bm = torch.randn(n, n), torch.randn(n, n)
    fwd_bwd(m, x, gy)  # warm-up (allocations, workspace pool)
    layer, mm = [], []
    for _ in range(reps):
        layer.append(fwd_bwd(m, x, gy))
        mm.append(matmul_time(a, bm, layer[-1][0]))
    t, tm = statistics.median(w for w, _ in layer), statistics.median(w for w, _ in mm)
    tc, tmc = statistics.median(c for _, c in layer), statistics.median(c for _, c in mm)
    flops = layer_flops(b, c, h, H, W, 4)
    return {
        "batch": b, "fwd_bwd_s": t, "gflop": flops / 1e9, "gflops": flops / t / 1e9,
        "matmul_gflops": 2 * n**3 / tm / 1e9, "fraction": (flops / t) / (2 * n**3 / tm),
        "fwd_bwd_cpu_s": tc, "gflops_cpu": flops / tc / 1e9, "matmul_gflops_cpu": 2 * n**3 / tmc / 1e9,
        "fraction_cpu": (flops / tc) / (2 * n**3 / tmc), "layer_wall_cpu_s": layer,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller map and fewer repetitions")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    c, h = 16, 16
    H, W, reps = (12, 96, 3) if args.quick else (24, 256, 5)

    torch.manual_seed(0)
    m = MDLSTM(c, h)
    x = torch.randn(8, c, H, W)
    ref = compare_reference(m, x)
    b8 = measure_batch(8, c, h, H, W, reps)
    b32 = measure_batch(32, c, h, H, W, reps)
    speedup = ref["reference_fwd_bwd_s"] / b8["fwd_bwd_s"]
    speedup_cpu = ref["reference_fwd_bwd_cpu_s"] / b8["fwd_bwd_cpu_s"]
    frac, frac_cpu = b32["fraction"], b32["fraction_cpu"]
    res = {
        "config": {"in_channels": c, "hidden": h, "directions": 4, "height": H, "width": W,
                   "threads": 1, "quick": args.quick, "dtype": "float32",
                   "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                   "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        **ref,
        "wavefront_fwd_bwd_s": b8["fwd_bwd_s"],
        "speedup_fwd_bwd": speedup,
        "speedup_fwd_bwd_cpu": speedup_cpu,
        "gflops": b32["gflops"],
        "matmul_gflops": b32["matmul_gflops"],
        "gflops_fraction_of_matmul": frac,
        "gflops_cpu": b32["gflops_cpu"],
        "matmul_gflops_cpu": b32["matmul_gflops_cpu"],
        "gflops_fraction_of_matmul_cpu": frac_cpu,
        "batch8": b8,
        "batch32": b32,
        "goals": {"speedup_ge_20x": speedup >= GOAL_SPEEDUP,
                  "fraction_ge_25pct_at_b32": frac >= GOAL_FRACTION,
                  "speedup_ge_20x_cpu": speedup_cpu >= GOAL_SPEEDUP,
                  "fraction_ge_25pct_at_b32_cpu": frac_cpu >= GOAL_FRACTION},
    }
    row = "{:38s}{:>11s}{:>11s}{:>11s}{:>11s}"
    print(f"MDLSTM {H}x{W}, C={c}, hidden={h} x 4 directions, float32, 1 thread; "
          "wall clock and thread CPU time")
    print(row.format("", "b8 wall", "b8 cpu", "b32 wall", "b32 cpu"))
    print(row.format("wavefront fwd+bwd (s)", *(f"{r[k]:.4f}" for r in (b8, b32)
                                                 for k in ("fwd_bwd_s", "fwd_bwd_cpu_s"))))
    print(row.format("reference loop fwd+bwd (s)", f"{ref['reference_fwd_bwd_s']:.3f}",
                     f"{ref['reference_fwd_bwd_cpu_s']:.3f}", "-", "-"))
    print(row.format("speedup (goal >= 20x)", f"{speedup:.1f}", f"{speedup_cpu:.1f}", "-", "-"))
    print(row.format("layer GFLOP/s", *(f"{r[k]:.2f}" for r in (b8, b32)
                                         for k in ("gflops", "gflops_cpu"))))
    print(row.format("matmul 1024^3 GFLOP/s, interleaved",
                     *(f"{r[k]:.2f}" for r in (b8, b32) for k in ("matmul_gflops", "matmul_gflops_cpu"))))
    print(row.format("fraction of matmul (goal >= 25% b32)", *(f"{r[k]:.1%}" for r in (b8, b32)
                                                               for k in ("fraction", "fraction_cpu"))))
    print(f"max abs diff vs reference (b8): outputs {ref['max_abs_diff']:.2e}, gradients "
          f"{ref['max_abs_diff_grads']:.2e} (relative to their size {ref['max_rel_diff_grads']:.2e})")
    write_json(args.json, res)


if __name__ == "__main__":
    main()
