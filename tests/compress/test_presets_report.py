"""`inkpack compress --recipe PRESET` on a tiny model, and `inkpack report` rows for every preset
(issue 22, items 2 and 5): each output reloads from its file to the logits the command built,
a pruned LSTM at 0% sparsity is the dense one, ADW prunes exactly the smallest LSTM weights and
the compact file holds them, and the report has a finite row for every preset."""

import math

import pytest
import torch

from inkpack.compress.commands import compress, report
from inkpack.compress.prune import Pruner
from inkpack.compress.recipe import PRESETS, apply_preset
from inkpack.models.io import load_model

from compress_helpers import line_batch, parse, save_tiny_base
from conftest import WORDS, make_tsv

LSTM_NAMES = [f"lstm.weight_{m}_l{i}{r}" for i in (0, 1) for m in ("ih", "hh") for r in ("", "_reverse")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny base, its data, and every preset applied to it (2 retraining steps each)."""
    root = tmp_path_factory.mktemp("presets")
    base, tsv = save_tiny_base(root), make_tsv(root, WORDS)
    torch.set_num_threads(1)
    out = {}
    for name in PRESETS:
        stem = root / name
        args = parse("compress", str(base), "--recipe", name, "--out", str(stem), "--data", str(tsv),
                     "--steps", "2", "--finetune-steps", "2", "--batch-size", "4")
        model, comp = compress(args, log=lambda m: None)
        out[name] = (stem, model.eval(), comp)
    return base, tsv, out


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_reloads_to_the_logits_it_built(built, name):
    _, _, out = built
    stem, model, comp = out[name]
    assert comp["preset"] == name
    loaded, cfg, _ = load_model(str(stem), int8=False)  # what `report` counts FLOPs on
    assert cfg["compression"]["preset"] == name
    x = line_batch(7, [48, 33, 20])
    with torch.no_grad():
        want, want_len = model(*x)
        got, got_len = loaded.eval()(*x)
    assert torch.equal(got_len, want_len)
    if comp.get("weights_dtype") == "float16":  # the file holds float16 weights: rounding only
        torch.testing.assert_close(got, want, atol=2e-2, rtol=1e-2)
    else:
        assert torch.equal(got, want)


def test_preset_defaults_yield_to_the_command_line():
    args = parse("compress", "m", "--recipe", "lstm-adw", "--out", "o", "--steps", "5")
    assert apply_preset(args) == "lstm-adw"
    defaults = PRESETS["lstm-adw"]["defaults"]
    assert (args.recipe, args.steps, args.sparsity, args.lr) == ("adw+kmeans", 5, defaults["sparsity"], defaults["lr"])
    plain = parse("compress", "m", "--recipe", "adw", "--out", "o")
    assert apply_preset(plain) is None and (plain.steps, plain.sparsity, plain.lr) == (0, "0.5", 3e-4)


def test_lstm_adw_prunes_the_smallest_lstm_weights_and_stores_them_sparse(built):
    base, _, out = built
    stem, model, comp = out["lstm-adw"]
    target = float(PRESETS["lstm-adw"]["defaults"]["sparsity"].split("=")[1])
    dense, _, _ = load_model(str(base))
    loaded, _, _ = load_model(str(stem))
    params = dict(loaded.named_parameters())
    for name in LSTM_NAMES:
        w = params[name].detach()
        assert int((w == 0).sum()) == round(target * w.numel()), name
        assert len(torch.unique(w[w != 0])) <= 2 ** 8  # 8-bit shared values
    for name, p in dense.named_parameters():  # nothing outside the LSTM matrices was pruned
        if name not in LSTM_NAMES and p.dim() >= 2:
            assert int((params[name] == 0).sum()) == int((p == 0).sum()), name
    assert comp["weights"] == "shared-npz" and comp["sparsity"]["measured"] > 0
    assert stem.with_suffix(".npz").stat().st_size < base.with_suffix(".safetensors").stat().st_size / 3


def test_pruned_lstm_at_zero_sparsity_is_the_dense_model(built, tmp_path):
    base, _, _ = built
    dense, _, _ = load_model(str(base))
    pruned, _, _ = load_model(str(base))
    pruner = Pruner(pruned, {"lstm.weight_*": 0.0}, 0)
    pruner.finish()
    assert sorted(pruner.params) == sorted(LSTM_NAMES) and pruner.sparsity()["total"] == 0.0
    x = line_batch(7, [48, 33, 20])
    with torch.no_grad():
        assert torch.equal(pruned.eval()(*x)[0], dense.eval()(*x)[0])
    # the same through the command, from its file
    stem = tmp_path / "adw0"
    compress(parse("compress", str(base), "--recipe", "adw", "--sparsity", "lstm.weight_*=0", "--out", str(stem)),
             log=lambda m: None)
    with torch.no_grad():
        assert torch.equal(load_model(str(stem))[0].eval()(*x)[0], dense(*x)[0])
    # and at 50% exactly the smaller half of each LSTM matrix goes, the rest unchanged
    half, _, _ = load_model(str(base))
    Pruner(half, {"lstm.weight_*": 0.5}, 0).finish()
    ref = dict(dense.named_parameters())
    for name, p in half.named_parameters():
        if name in LSTM_NAMES:
            kept = p.detach() != 0
            assert int(kept.sum()) == p.numel() - round(0.5 * p.numel())
            assert ref[name].detach()[kept].abs().min() >= ref[name].detach()[~kept].abs().max()
            assert torch.equal(p.detach()[kept], ref[name].detach()[kept])
        else:
            assert torch.equal(p.detach(), ref[name].detach()), name


def test_report_has_a_finite_row_for_every_preset(built):
    base, tsv, out = built
    rows = report([str(base)] + [str(out[n][0]) for n in PRESETS], str(tsv), runs=2, log=lambda m: None)
    assert list(rows) == ["base", *PRESETS]
    for name, row in rows.items():
        for key in ("params", "nonzero_params", "files_mb", "size_mb", "gflops", "latency_ms", "cer", "wer", "Cr", "speedup"):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] >= 0, (name, key)
        assert row["lines"] == len(WORDS)
    assert rows["base"]["Cr"] == 1.0 and rows["base"]["recipe"] == "-"
    for name in PRESETS:
        loaded, _, _ = load_model(str(out[name][0]), int8=False)
        assert rows[name]["params"] == sum(p.numel() for p in loaded.parameters())
        assert rows[name]["recipe"] == out[name][2]["recipe"]
    adw = rows["lstm-adw"]
    assert adw["nonzero_params"] < adw["params"] and adw["files_mb"] < rows["base"]["files_mb"] / 3
