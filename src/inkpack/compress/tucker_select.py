"""Tucker-2 where it is faster, not only smaller (issue 22, item 3).

A Tucker-2 conv replaces one k×k conv by three (1×1 → k×k core → 1×1). Its FLOPs fall with the
ranks, but three small kernels may run slower than one large one (more passes over memory, less
efficient small GEMMs), so the decomposition that shrinks the file can slow the model down.
Here each k×k conv of a model is timed alone, dense against its Tucker-2 form at each candidate
rank pair, on the input it sees in the model (captured with a forward hook), in PyTorch and in
ONNX Runtime, on one thread, dense and Tucker run in turn within each round, several rounds
(:func:`layer_table`). :func:`select_ranks` then picks, deterministically from such a table,
the layers (and ranks) to decompose: per layer the candidate with the largest ranks (the most
accurate) whose measured speed-up over the dense conv is above ``min_speedup`` on the chosen
backend; layers with no such candidate stay dense. :func:`tucker_where_faster` applies it.

A table is JSON-able: ``{"layers": [{"name", "weight_shape", "input_shape", "dense_ms":
{backend: ms}, "candidates": [{"energy", "ranks": [r_out, r_in], "ms": {backend: ms},
"speedup": {backend: x}}]}]}`` (``benchmarks/tucker_layers.py`` writes them).
"""

from __future__ import annotations

import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from inkpack.compress.layers import LayerChange
from inkpack.compress.tucker import decompose_conv, tucker_decompose, tucker_ranks
from inkpack.errors import InkpackError

__all__ = ["BACKENDS", "conv_inputs", "layer_table", "match_table", "select_ranks", "tucker_where_faster"]

BACKENDS = ("torch", "onnx")


def _targets(model: nn.Module, min_channels: int = 16) -> list[tuple[str, nn.Conv2d]]:
    """The convs tucker_decompose would consider: k×k (k>1), groups 1, enough channels."""
    return [(n, m) for n, m in model.named_modules()
            if type(m) is nn.Conv2d and n and m.kernel_size[0] * m.kernel_size[1] > 1 and m.groups == 1
            and min(m.in_channels, m.out_channels) >= min_channels]


def conv_inputs(model: nn.Module, example: Sequence[Any], min_channels: int = 16) -> dict[str, torch.Tensor]:
    """The input each candidate conv receives on one forward pass of ``example`` (memory format kept)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: seen.setdefault(n, inp[0].detach().clone(
        memory_format=torch.preserve_format))) for n, m in _targets(model, min_channels)]
    try:
        with torch.inference_mode():
            model.eval()(*example)
    finally:
        for h in handles:
            h.remove()
    return seen


class _OrtLayer:
    """One module exported alone (legacy exporter, fixed input shape), run by ORT on one thread."""

    def __init__(self, module: nn.Module, x: torch.Tensor, tmp: Path, name: str) -> None:
        import onnxruntime as ort

        path = tmp / f"{name}.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(module.eval(), (x.contiguous(),), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["y"])
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.feed = {"x": x.contiguous().numpy()}

    def __call__(self, *_):
        return self.sess.run(None, self.feed)


def _time_in_turn(layers: list[dict[Any, Any]], inputs: list[torch.Tensor], runs: int, warmup: int) -> list[dict]:
    """Median ms of each callable of each layer: every pass runs every layer's forms in turn, layer
    after layer as in the model (so a layer's weights are not left hot in cache by its own
    previous call); one thread set by the caller."""
    import time

    times: list[dict[Any, list[float]]] = [{k: [] for k in fns} for fns in layers]
    with torch.inference_mode():
        for i in range(warmup + runs):
            for fns, x, t in zip(layers, inputs, times, strict=True):
                forms = list(fns.items())
                for k, f in forms[i % len(forms):] + forms[:i % len(forms)]:  # none always first
                    t0 = time.perf_counter()
                    f(x)
                    if i >= warmup:
                        t[k].append((time.perf_counter() - t0) * 1000)
    return [{k: statistics.median(v) for k, v in t.items()} for t in times]


def layer_table(model: nn.Module, example: Sequence[Any], energies: Sequence[float] = (0.9,), *,
                backends: Sequence[str] = BACKENDS, runs: int = 20, rounds: int = 3, warmup: int = 3,
                min_channels: int = 16, hooi_iters: int = 25) -> dict:
    """Per-layer latency of each candidate conv, dense vs Tucker-2 at the ranks each energy gives
    (``tucker_ranks``, as ``tucker_decompose`` picks them), one thread. Each of ``rounds`` rounds
    makes ``runs`` passes, each pass running every layer's dense and Tucker forms in turn, layer
    after layer; a form's figure is the median over rounds of its per-round medians."""
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise InkpackError(f"tucker latency: unknown backend {bad[0]!r} (torch or onnx)")
    inputs = conv_inputs(model, example, min_channels)
    convs = dict(_targets(model, min_channels))
    layers = []
    for name, x in inputs.items():
        conv = convs[name]
        cands, seen = [], set()
        for e in energies:
            ranks = tucker_ranks(conv.weight, e)
            if ranks in seen:
                continue
            seen.add(ranks)
            tk = decompose_conv(conv, *ranks, hooi_iters=hooi_iters)  # channels-last like conv
            cands.append({"energy": e, "ranks": list(ranks), "module": tk.eval()})
        layers.append({"name": name, "weight_shape": list(conv.weight.shape), "input_shape": list(x.shape),
                       "conv": conv, "x": x, "candidates": cands})
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="inkpack-tucker-") as tmp:
            for backend in backends:
                fns_by_layer = []
                for li, lay in enumerate(layers):
                    if backend == "torch":
                        fns = {"dense": lay["conv"].eval(), **{i: c["module"] for i, c in enumerate(lay["candidates"])}}
                    else:
                        fns = {"dense": _OrtLayer(lay["conv"], lay["x"], Path(tmp), f"l{li}d"),
                               **{i: _OrtLayer(c["module"], lay["x"], Path(tmp), f"l{li}c{i}")
                                  for i, c in enumerate(lay["candidates"])}}
                    fns_by_layer.append(fns)
                per_round: list[list[dict]] = [[] for _ in layers]
                for _ in range(rounds):
                    for li, med in enumerate(_time_in_turn(fns_by_layer, [lay["x"] for lay in layers], runs, warmup)):
                        per_round[li].append(med)
                for li, lay in enumerate(layers):
                    med = {k: statistics.median(r[k] for r in per_round[li]) for k in per_round[li][0]}
                    lay.setdefault("dense_ms", {})[backend] = med["dense"]
                    for i, c in enumerate(lay["candidates"]):
                        c.setdefault("ms", {})[backend] = med[i]
                        c.setdefault("speedup", {})[backend] = med["dense"] / med[i]
    finally:
        torch.set_num_threads(old)
    for lay in layers:
        conv = lay.pop("conv")
        lay.pop("x")
        k = conv.kernel_size[0] * conv.kernel_size[1]
        lay["dense_params"] = conv.weight.numel()
        for c in lay["candidates"]:
            c.pop("module")
            r_out, r_in = c["ranks"]
            c["params"] = conv.in_channels * r_in + r_in * r_out * k + r_out * conv.out_channels
    return {"runs": runs, "rounds": rounds, "threads": 1, "backends": list(backends), "layers": layers}


def select_ranks(table: dict, backend: str = "torch", min_speedup: float = 1.0) -> dict[str, tuple[int, int]]:
    """{conv name: (r_out, r_in)} of the layers to decompose: per layer the candidate with the
    most parameters (largest ranks) whose measured speed-up on ``backend`` exceeds
    ``min_speedup``; a layer without one is left out (stays dense). Ties go to the earlier one."""
    if backend not in BACKENDS:
        raise InkpackError(f"tucker latency: unknown backend {backend!r} (torch or onnx)")
    out: dict[str, tuple[int, int]] = {}
    try:
        for lay in table["layers"]:
            best = None
            for c in lay["candidates"]:
                if backend not in c.get("speedup", {}):
                    raise InkpackError(f"tucker latency table: layer {lay['name']!r} has no {backend} timing")
                r_out, r_in = c["ranks"]
                if c["speedup"][backend] > min_speedup and (best is None or r_out * r_in > best[0] * best[1]):
                    best = (int(r_out), int(r_in))
            if best is not None:
                out[lay["name"]] = best
    except (KeyError, TypeError, ValueError) as e:
        raise InkpackError(f"tucker latency table: malformed ({type(e).__name__}: {e})") from None
    return out


def match_table(doc: dict, model: nn.Module, min_channels: int = 16) -> dict:
    """The table in ``doc`` (a table, or a benchmark result holding ``tables``) whose layers are
    this model's candidate convs, with the same weight shapes."""
    want = {n: list(m.weight.shape) for n, m in _targets(model, min_channels)}
    tables = [doc] if "layers" in doc else list((doc.get("tables") or {}).values())
    for t in tables:
        if {lay.get("name"): lay.get("weight_shape") for lay in t.get("layers", [])} == want:
            return t
    raise InkpackError("tucker latency table: no table in the file matches this model's convolutions "
                       f"({len(want)} candidate convs, e.g. {next(iter(want), 'none')})")


def tucker_where_faster(model: nn.Module, table: dict, backend: str = "torch", min_speedup: float = 1.0,
                        hooi_iters: int = 25) -> list[LayerChange]:
    """Decompose, in place, only the convs ``select_ranks`` picks from ``table`` (after checking
    that the table was measured on this architecture); the others are reported as kept."""
    table = match_table(table, model)
    ranks = select_ranks(table, backend, min_speedup)
    names = [lay["name"] for lay in table["layers"]]
    changes = tucker_decompose(model, ranks=ranks, skip=[n for n in names if n not in ranks],
                               require_gain=False, hooi_iters=hooi_iters) if ranks else []
    for n in names:
        if n not in ranks:
            p = model.get_submodule(n).weight.numel()
            changes.append(LayerChange(n, "conv", p, p, f"kept (Tucker not faster on {backend} by > {min_speedup}x)"))
    return changes
