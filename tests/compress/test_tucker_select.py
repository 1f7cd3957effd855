"""Tucker only where measured faster: the selection from a given latency table, the table's
measurement on a model, and the recipe's file reloading to compute the same output."""

import argparse
import json

import pytest
import torch
from torch import nn

from inkpack.cli.compress import add_parsers
from inkpack.compress.commands import compress
from inkpack.compress.tucker import TuckerConv2d
from inkpack.compress.tucker_select import layer_table, match_table, select_ranks, tucker_where_faster
from inkpack.errors import InkpackError
from inkpack.models import build_model
from inkpack.models.io import load_model

from compress_helpers import OPTS, base  # noqa: F401 (base: a fixture)


def _cand(ranks, torch_x, onnx_x):
    return {"energy": 0.9, "ranks": list(ranks), "speedup": {"torch": torch_x, "onnx": onnx_x}}


TABLE = {"layers": [
    {"name": "a", "weight_shape": [32, 16, 3, 3], "candidates": [_cand((20, 10), 0.8, 1.2)]},
    {"name": "b", "weight_shape": [64, 32, 3, 3], "candidates": [_cand((40, 20), 1.3, 0.9), _cand((30, 15), 1.6, 1.1)]},
    {"name": "c", "weight_shape": [64, 32, 3, 3], "candidates": [_cand((50, 30), 1.0, 1.0)]},
]}


def test_selection_from_a_given_table():
    # torch: a is slower, b's largest faster candidate wins, c (exactly 1.0x) is not faster
    assert select_ranks(TABLE, "torch") == {"b": (40, 20)}
    assert select_ranks(TABLE, "onnx") == {"a": (20, 10), "b": (30, 15)}
    # a higher bar drops b's larger candidate for its smaller, faster one
    assert select_ranks(TABLE, "torch", min_speedup=1.4) == {"b": (30, 15)}
    assert select_ranks(TABLE, "torch", min_speedup=0.5) == {"a": (20, 10), "b": (40, 20), "c": (50, 30)}
    with pytest.raises(InkpackError, match="unknown backend"):
        select_ranks(TABLE, "tflite")
    no_onnx = {"layers": [{"name": "a", "candidates": [{"ranks": [1, 1], "speedup": {"torch": 2.0}}]}]}
    with pytest.raises(InkpackError, match="no onnx timing"):
        select_ranks(no_onnx, "onnx")


def _example():
    g = torch.Generator().manual_seed(5)
    return torch.rand(2, 1, 16, 48, generator=g), torch.tensor([16, 16]), torch.tensor([48, 30])


def _measured_then_fixed(model):
    """A real table of the model (both runtimes, one pass each), speed-ups then overwritten so
    that the selection is known: the odd-numbered candidate layers are 'faster'."""
    tab = layer_table(model, _example(), (0.9,), runs=1, rounds=1, warmup=0)
    names = [lay["name"] for lay in tab["layers"]]
    convs = {n: m for n, m in model.named_modules() if type(m) is nn.Conv2d}
    assert names == [n for n, m in convs.items() if m.kernel_size == (3, 3) and min(m.in_channels, m.out_channels) >= 16]
    for lay in tab["layers"]:
        assert lay["weight_shape"] == list(convs[lay["name"]].weight.shape)
        assert lay["dense_ms"]["torch"] > 0 and lay["dense_ms"]["onnx"] > 0
        c = lay["candidates"][0]
        assert c["ms"]["torch"] > 0 and c["params"] < lay["dense_params"] or c["ranks"] == [64, 32]
    for i, lay in enumerate(tab["layers"]):
        lay["candidates"][0]["speedup"] = {"torch": 2.0 if i % 2 else 0.5, "onnx": 0.5}
    return tab, names


def test_where_faster_decomposes_only_the_selected_layers(base):
    model, _, _ = load_model(str(base))
    tab, names = _measured_then_fixed(model)
    ref = model(*_example())[0]
    changes = tucker_where_faster(model, json.loads(json.dumps(tab)), "torch")
    picked = [n for i, n in enumerate(names) if i % 2]
    assert sorted(n for n, m in model.named_modules() if isinstance(m, TuckerConv2d)) == sorted(picked)
    # kept: the unselected ones, and the first conv (1 input channel, never a candidate)
    assert {c.name for c in changes if c.detail.startswith("kept")} == set(names) - set(picked) | {"cnn.body.0"}
    with torch.no_grad():  # the decomposition approximates (ranks at energy 0.9): close, not equal
        assert (model(*_example())[0] - ref).abs().max() < 0.5 * ref.abs().max()
    other = build_model("vgg-dblstm", 28, **OPTS)
    with pytest.raises(InkpackError, match="no table in the file matches"):
        match_table(tab, other)


def test_recipe_with_table_reloads_to_the_same_output(base, tmp_path):
    model, _, _ = load_model(str(base))
    tab, names = _measured_then_fixed(model)
    table_file = tmp_path / "table.json"
    table_file.write_text(json.dumps({"tables": {"base": tab}}))
    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers())
    out = tmp_path / "tk"
    args = p.parse_args(["compress", str(base), "--recipe", "tucker", "--tucker-table", str(table_file), "--out", str(out)])
    compressed, comp = compress(args, log=lambda m: None)
    assert sorted(comp["structure"]) == sorted(n for i, n in enumerate(names) if i % 2)
    assert comp["tucker_selection"]["backend"] == "torch"
    again, _, _ = load_model(str(out))
    x = _example()
    with torch.no_grad():
        assert torch.equal(again(*x)[0], compressed.eval()(*x)[0])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InkpackError, match="bad.json: --tucker-table holds no"):
        compress(p.parse_args(["compress", str(base), "--recipe", "tucker", "--tucker-table", str(bad),
                               "--out", str(tmp_path / "x")]), log=lambda m: None)
