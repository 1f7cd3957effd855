"""`inkpack compress` / `inkpack report`: loadable compressed models that compute what was saved."""

import json

import pytest
import torch

from inkpack.compress.commands import (
    compress,
    parse_recipe,
    report,
)
from inkpack.compress.lowrank import LowRankLinear, LowRankLSTM
from inkpack.compress.tucker import TuckerConv2d
from inkpack.errors import InkpackError
from inkpack.models.io import load_model

from compress_helpers import base, parse  # noqa: F401 (base: a fixture)


def images():
    g = torch.Generator().manual_seed(5)
    return torch.rand(2, 1, 16, 48, generator=g), torch.tensor([16, 16]), torch.tensor([48, 30])


def test_recipe_parsing():
    assert parse_recipe("int8+tucker") == ["tucker", "int8"]  # fixed application order
    with pytest.raises(InkpackError, match="unknown part"):
        parse_recipe("tucker+zip")


def test_tucker_int8_round_trip(base, tmp_path):
    out = tmp_path / "tk"
    model, _comp = compress(parse("compress", str(base), "--recipe", "tucker+int8", "--out", str(out),
                                 "--energy", "0.5"), log=lambda m: None)
    cfg = json.loads(out.with_suffix(".json").read_text())
    assert cfg["compression"]["int8"] and any(v["kind"] == "tucker" for v in cfg["compression"]["structure"].values())
    fp32, _, _ = load_model(str(out), int8=False)
    assert any(isinstance(m, TuckerConv2d) for m in fp32.modules())
    x = images()
    with torch.no_grad():
        ref = model(*x)[0]
        assert torch.equal(fp32(*x)[0], ref)
        q, _, _ = load_model(str(out))  # models.io.load_model quantizes at load
        assert any("quantized" in type(m).__module__ for m in q.modules())
        got = q(*x)[0]
    assert not torch.equal(got, ref) and torch.allclose(got, ref, atol=0.1 * float(ref.abs().max()))


def test_svd_adw_kmeans_retrains_and_round_trips(base, tmp_path, tiny_tsv):
    out = tmp_path / "sk"
    model, comp = compress(parse("compress", str(base), "--recipe", "kmeans+svd+adw", "--out", str(out),
                                 "--data", str(tiny_tsv), "--steps", "3", "--bits", "4", "--sparsity", "0.6",
                                 "--batch-size", "4"), log=lambda m: None)
    assert out.with_suffix(".npz").exists() and not out.with_suffix(".safetensors").exists()
    loaded, _cfg, _ = load_model(str(out))
    assert any(isinstance(m, (LowRankLSTM, LowRankLinear)) for m in loaded.modules())
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(*x)[0], model(*x)[0])
    lstm_w = [p for n, p in loaded.named_parameters() if n.startswith("lstm") and p.dim() == 2]
    for p in lstm_w:
        assert torch.unique(p[p != 0]).numel() <= 16
    assert comp["nonzero_params"] < 0.5 * comp["params"]


@pytest.mark.parametrize("mode", ["latent", "centroids"])
def test_kmeans_per_layer_bits_both_training_modes(base, tmp_path, tiny_tsv, mode):
    out = tmp_path / mode
    model, comp = compress(parse("compress", str(base), "--recipe", "kmeans", "--out", str(out),
                                 "--data", str(tiny_tsv), "--steps", "3", "--bits", "fc.weight=2,lstm.*=3,*=5",
                                 "--kmeans-train", mode, "--batch-size", "4"), log=lambda m: None)
    assert comp["bits"] == {"fc.weight": 2, "lstm.*": 3, "*": 5} and comp["kmeans_train"] == mode
    loaded, _cfg, _ = load_model(str(out))
    weights = dict(loaded.named_parameters())
    assert torch.unique(weights["fc.weight"]).numel() <= 4
    assert torch.unique(weights["lstm.weight_hh_l0"]).numel() <= 8
    assert 8 < torch.unique(weights["proj.weight"]).numel() <= 32
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(*x)[0], model(*x)[0])


def test_svd_ranks_per_layer_and_half_raw_file_computes_what_was_returned(base, tmp_path, tiny_tsv):
    out = tmp_path / "r"
    model, comp = compress(parse("compress", str(base), "--recipe", "svd+kmeans", "--out", str(out),
                                 "--svd-ranks", "lstm=4:-,fc=3", "--half-raw", "--data", str(tiny_tsv),
                                 "--steps", "2", "--bits", "4", "--batch-size", "4"), log=lambda m: None)
    assert model.fc.rank == 3 and model.lstm.ranks() == [(4, None)] * 4
    assert any("svd fc: rank=3" in n for n in comp["notes"])
    loaded, _cfg, _ = load_model(str(out))
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(*x)[0], model(*x)[0])
    bias = loaded.fc[1].bias.detach()
    assert torch.equal(bias, bias.half().float())  # stored as float16
    with pytest.raises(InkpackError, match="not an LSTM"):
        compress(parse("compress", str(base), "--recipe", "svd", "--out", str(tmp_path / "x"),
                       "--svd-ranks", "cnn=3"), log=lambda m: None)


def test_distill_recipe_and_report(base, tmp_path, tiny_tsv):
    out = tmp_path / "st"
    parse_args = parse("compress", str(base), "--recipe", "distill", "--out", str(out), "--data", str(tiny_tsv),
                       "--steps", "2", "--finetune-steps", "1", "--batch-size", "4", "--criterion", "cnn-l2")
    student, comp = compress(parse_args, log=lambda m: None)
    t, _, _ = load_model(str(base))
    assert torch.equal(student.lstm.weight_ih_l0, t.lstm.weight_ih_l0) is False  # fine-tuned after the copy
    assert comp["recipe"] == "distill" and len(comp["distill_losses"]) == 1
    half, _ = compress(parse("compress", str(base), "--recipe", "distill", "--out", str(tmp_path / "half"),
                             "--data", str(tiny_tsv), "--steps", "1", "--batch-size", "4", "--student-width", "0.5"),
                       log=lambda m: None)
    again, hcfg, _ = load_model(str(tmp_path / "half"))  # the width is saved with the student
    assert hcfg["options"]["width"] == 0.5 and again.cnn.body[0].out_channels == t.cnn.body[0].out_channels // 2
    assert torch.equal(again.lstm.weight_hh_l0, half.lstm.weight_hh_l0)
    compress(parse("compress", str(base), "--recipe", "int8", "--out", str(tmp_path / "q")), log=lambda m: None)
    rows = report([str(base), str(tmp_path / "q"), str(out)], str(tiny_tsv), limit=4, runs=2, log=lambda m: None)
    b, q = rows["base"], rows["q"]
    assert b["Cr"] == 1.0 and b["speedup"] == 1.0 and b["lines"] == 4
    from inkpack.compress.report import (
        size_on_disk_mb,  # same serialisation, fp32 vs int8 LSTM/Linear
    )

    assert q["size_mb"] < size_on_disk_mb(t) and q["gflops"] == pytest.approx(b["gflops"])
    assert 0 <= q["cer"] and q["params"] == b["params"]
    args = parse("report", str(base), str(tmp_path / "q"), "--data", str(tiny_tsv), "--limit", "2", "--runs", "1",
                 "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"))
    assert args.fn(args) == 0
    assert (tmp_path / "r.png").stat().st_size > 1000 and set(json.loads((tmp_path / "r.json").read_text())) == {"base", "q"}


def test_retraining_recipe_without_data_is_a_clear_error(base, tmp_path):
    with pytest.raises(InkpackError, match="--data"):
        compress(parse("compress", str(base), "--recipe", "adw", "--out", str(tmp_path / "x"), "--steps", "2"),
                 log=lambda m: None)


def test_half_weights_file(base, tmp_path):
    """--half stores float16 (about half the bytes) and loads back to the fp16-rounded model."""
    from safetensors.torch import load_file

    full, half = tmp_path / "f", tmp_path / "h"
    compress(parse("compress", str(base), "--recipe", "tucker", "--energy", "0.5", "--out", str(full)), log=lambda m: None)
    compress(parse("compress", str(base), "--recipe", "tucker", "--energy", "0.5", "--half", "--out", str(half)),
             log=lambda m: None)
    stored = load_file(str(half.with_suffix(".safetensors")))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    ratio = half.with_suffix(".safetensors").stat().st_size / full.with_suffix(".safetensors").stat().st_size
    assert 0.45 < ratio < 0.6
    f32, _, _ = load_model(str(full))
    f16, _, _ = load_model(str(half))
    for (k, a), (_, b) in zip(f32.state_dict().items(), f16.state_dict().items()):
        assert b.dtype == a.dtype and torch.equal(b, a.half().float()), k
    with pytest.raises(InkpackError, match="--half"):
        compress(parse("compress", str(base), "--recipe", "kmeans", "--half", "--out", str(tmp_path / "k")),
                 log=lambda m: None)


def test_half_alone_stores_a_plain_float16_model(base, tmp_path):
    """--half without a recipe: the same model, float16 on disk, no compression record."""
    from safetensors.torch import load_file

    out = tmp_path / "teacher16"
    compress(parse("compress", str(base), "--half", "--out", str(out)), log=lambda m: None)
    stored = load_file(str(out.with_suffix(".safetensors")))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    cfg = json.loads(out.with_suffix(".json").read_text())
    assert "compression" not in cfg and cfg["weights_dtype"] == "float16"
    a, _, _ = load_model(str(base))
    b, _, _ = load_model(str(out))
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert y.dtype == x.dtype and torch.equal(y, x.half().float()), k
    with pytest.raises(InkpackError, match="--recipe"):
        compress(parse("compress", str(base), "--out", str(tmp_path / "x")), log=lambda m: None)


def test_retraining_rate_holds_then_decays_to_zero():
    from inkpack.compress.commands import lr_factor

    assert [lr_factor(s, 10, hold=4) for s in (0, 3)] == [1.0, 1.0]
    assert lr_factor(4, 10, hold=4) == 1.0 and lr_factor(7, 10, hold=4) == pytest.approx(0.5)  # mid-cosine
    assert lr_factor(10, 10, hold=4) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(5, 10) == pytest.approx(0.5)  # no hold: a plain cosine
