"""Figures for the seeds' compression tables: parameters, size on disk, FLOPs, latency, ratios.

FLOPs follow torch.utils.flop_counter's convention (2 per multiply-add, matmuls and convs only).
flop_counter skips aten::lstm (padded input), so each nn.LSTM is counted analytically by forward
hooks, 2·steps·4H·(in + H) per layer and direction (gate products; elementwise work not
counted), replacing whatever flop_counter saw inside it (packed input decomposes into addmm).
A LowRankLSTM is counted the same way in its factored form (``LowRankLSTM.flops``).
Count on the fp32 model: quantized LSTM/Linear kernels are invisible to flop_counter.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["compare", "count_flops", "count_params", "format_table", "lstm_flops",
           "measure_latencies", "measure_latency", "size_on_disk_mb", "summarize"]


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    """Parameters (shared ones once); `nonzero` counts only non-zero entries (after pruning)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += int((p.detach() != 0).sum()) if nonzero else p.numel()
    return total


def size_on_disk_mb(obj: nn.Module | str | os.PathLike) -> float:
    """MB (10^6 bytes) of a file, or of a module's state_dict as torch.save writes it
    (works for quantized modules, whose packed weights safetensors cannot hold)."""
    if isinstance(obj, (str, os.PathLike)):
        return os.path.getsize(obj) / 1e6
    buf = io.BytesIO()
    torch.save(obj.state_dict(), buf)
    return buf.tell() / 1e6


def lstm_flops(lstm: nn.LSTM, steps: int) -> int:
    """Gate matmul FLOPs of an nn.LSTM over `steps` (sequence × batch) positions."""
    H, D = lstm.hidden_size, 2 if lstm.bidirectional else 1
    R = lstm.proj_size or H  # the recurrent input is the projected state when proj_size > 0
    total = 0
    for layer in range(lstm.num_layers):
        n_in = lstm.input_size if layer == 0 else D * R
        per_step = 4 * H * (n_in + R) + (H * R if lstm.proj_size else 0)
        total += 2 * steps * D * per_step
    return total


def _steps(x: Any, batch_first: bool) -> int:
    if isinstance(x, PackedSequence):
        return int(x.data.shape[0])  # only the real (unpadded) positions are computed
    if x.dim() == 2:  # unbatched [T, F]
        return int(x.shape[0])
    return int(x.shape[0] * x.shape[1])


def _as_args(example_inputs: Any) -> tuple[Any, ...]:
    """A tuple/list is the positional arguments; anything else (a PackedSequence too) is one."""
    if isinstance(example_inputs, (tuple, list)) and not isinstance(example_inputs, PackedSequence):
        return tuple(example_inputs)
    return (example_inputs,)


def count_flops(model: nn.Module, example_inputs: Sequence[Any] | Any) -> float:
    """FLOPs of one forward pass on `example_inputs` (a tuple of positional args or one tensor)."""
    args = _as_args(example_inputs)
    counter = FlopCounterMode(display=False)
    extra, entered = [0], []

    def pre(mod: nn.Module, inputs: tuple[Any, ...]) -> None:
        entered.append(counter.get_total_flops())

    def post(mod: nn.Module, inputs: tuple[Any, ...], _out: Any) -> None:
        # some paths (packed input) decompose aten::lstm into counted addmm: replace, never add twice
        counted = counter.get_total_flops() - entered.pop()
        steps = _steps(inputs[0], mod.batch_first)
        extra[0] += (mod.flops(steps) if isinstance(mod, LowRankLSTM) else lstm_flops(mod, steps)) - counted

    from inkpack.compress.factored import LowRankLSTM

    lstms = [m for m in model.modules() if isinstance(m, (nn.LSTM, LowRankLSTM))]
    handles = [m.register_forward_pre_hook(pre) for m in lstms] + [m.register_forward_hook(post) for m in lstms]
    try:
        with torch.no_grad(), counter:
            model(*args)
    finally:
        for h in handles:
            h.remove()
    return float(counter.get_total_flops() + extra[0])


def _timed_rounds(models: dict[str, nn.Module | Callable[..., Any]], example_inputs: Sequence[Any] | Any,
                  runs: int, warmup: int, threads: int) -> dict[str, list[float]]:
    """ms of each forward pass after `warmup` rounds, the models run in turn within each round
    (in a rotating order), on `threads` CPU threads (restored after)."""
    args = _as_args(example_inputs)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    for m in models.values():
        if isinstance(m, nn.Module):
            m.eval()
    times: dict[str, list[float]] = {name: [] for name in models}
    try:
        with torch.inference_mode():
            names = list(models)
            for i in range(warmup + runs):
                k = i % len(names)  # rotate the order: no model always runs first (it runs slow)
                for name in names[k:] + names[:k]:
                    m = models[name]
                    t0 = time.perf_counter()
                    m(*args)
                    if i >= warmup:
                        times[name].append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(old)
    return times


def measure_latency(model: nn.Module | Callable[..., Any], example_inputs: Sequence[Any] | Any,
                    runs: int = 20, warmup: int = 3, threads: int = 1) -> dict[str, float]:
    """Median/min wall time in ms of one forward pass on `threads` CPU threads (restored after)."""
    times = _timed_rounds({"m": model}, example_inputs, runs, warmup, threads)["m"]
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": runs}


def measure_latencies(models: dict[str, nn.Module | Callable[..., Any]], example_inputs: Sequence[Any] | Any,
                      runs: int = 20, warmup: int = 3, threads: int = 1) -> dict[str, float]:
    """Median ms per model, the models run in turn within each round, so that a slow spell of a
    shared machine hits all of them alike (their ratios are what a table compares)."""
    times = _timed_rounds(models, example_inputs, runs, warmup, threads)
    return {name: statistics.median(t) for name, t in times.items()}


def summarize(model: nn.Module, example_inputs: Sequence[Any] | Any, *, flops: bool = True,
              latency_runs: int = 20, file: str | os.PathLike | None = None) -> dict[str, float]:
    """One row: params, non-zero params, size MB (of `file` when given), GFLOPs, latency."""
    row: dict[str, float] = {"params": count_params(model), "nonzero_params": count_params(model, True),
                             "size_mb": size_on_disk_mb(file if file is not None else model)}
    if flops:
        row["gflops"] = count_flops(model, example_inputs) / 1e9
    if latency_runs:
        row["latency_ms"] = measure_latency(model, example_inputs, runs=latency_runs)["median_ms"]
    return row


def compare(rows: dict[str, dict[str, float]], baseline: str) -> dict[str, dict[str, float]]:
    """Add the seeds' ratios against `baseline`: Cr (size), Sr (theoretical speed-up from FLOPs),
    speedup (measured latency)."""
    base = rows[baseline]
    out = {}
    for name, row in rows.items():
        r = dict(row)
        r["Cr"] = base["size_mb"] / row["size_mb"]
        if "gflops" in row and row["gflops"] > 0:
            r["Sr"] = base["gflops"] / row["gflops"]
        if "latency_ms" in row and row["latency_ms"] > 0:
            r["speedup"] = base["latency_ms"] / row["latency_ms"]
        out[name] = r
    return out


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Plain-text table, one model per line, columns in first-seen order."""
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    cells = {n: [fmt(r.get(c, "")) for c in cols] for n, r in rows.items()}
    width = max([len("model")] + [len(n) for n in rows])
    widths = [max([len(c)] + [len(v[i]) for v in cells.values()]) + 2 for i, c in enumerate(cols)]
    lines = ["model".ljust(width) + "".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    for name, vals in cells.items():
        lines.append(name.ljust(width) + "".join(v.rjust(w) for v, w in zip(vals, widths, strict=True)))
    return "\n".join(lines)
