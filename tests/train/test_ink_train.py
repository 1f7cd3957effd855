"""The online trainers: they learn, resume exactly, and their models evaluate on .pot/.npz files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ink_helpers import CHARS, hanzi  # noqa: F401  (a fixture)
from inkpack.data.formats.iamondb import write_iamondb_npz
from inkpack.data.formats.pot import write_pot
from inkpack.data.hanzi_synth import HanziSynthDataset, load_medians, synth
from inkpack.data.ink import Ink
from inkpack.data.ink_preprocess import preprocess
from inkpack.ink_commands import evaluate_ink, recognize_ink
from inkpack.models.io import load_model
from inkpack.train.ink_train import InkTrainConfig, InkTrainer, fit_ink

TINY_CHAR = {"hidden1": 16, "hidden2": 32, "fc": 32}


def char_cfg(hanzi, out, **kw) -> InkTrainConfig:
    base = dict(task="char", out=str(out), medians=str(hanzi / "medians.json.gz"),
                charset=str(hanzi / "chars.txt"), per_class=8, val_per_class=6, batch_size=8,
                bucket_factor=2, lr=1e-2, warmup_steps=2, epochs=8, options=dict(TINY_CHAR),
                progress=False, threads=1)
    return InkTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def char_run(hanzi, tmp_path_factory):
    out = tmp_path_factory.mktemp("char_run")
    result = fit_ink(char_cfg(hanzi, out))
    return out, result


def test_char_run_learns_and_logs(char_run):
    out, result = char_run
    hist = json.loads((out / "history.json").read_text())
    assert result["stop"] == "epochs" and len(hist) == 8  # one record per epoch
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert max(h["val_top1"] for h in hist) >= 0.5  # chance is 0.25
    assert all(h["val_top1"] <= h["val_top5"] == 1.0 for h in hist)  # 4 classes: top-5 is all
    assert (out / "history.csv").read_text().startswith("epoch,")
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    model, cfg, alphabet = load_model(str(out / "best"))
    assert cfg["arch"] == "lstm-char" and alphabet.symbols == list(CHARS)
    assert cfg["metrics"]["val_top1"] == max(h["val_top1"] for h in hist)
    assert cfg["preprocessing"]["scale"] == "std" and cfg["input_kind"] == "char"


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_char_resume_equals_uninterrupted(hanzi, tmp_path):
    def run(out, steps):
        # a class curriculum: epoch 0 = 2 classes x 8 samples (2 steps), then 4 x 8 (4 steps)
        tr = InkTrainer(char_cfg(hanzi, out, max_steps=steps, epochs=3, class_schedule=[[2, 8], [4, 8]],
                                 options={**TINY_CHAR, "dropout": 0.3}))  # dropout uses torch RNG
        tr.setup()
        tr.fit()
        return tr

    full = run(tmp_path / "full", 5)
    cut = run(tmp_path / "cut", 3)  # stops inside the first bucketing chunk of epoch 1
    assert (cut.epoch, cut.step_in_epoch) == (1, 1)
    resumed = run(tmp_path / "cut", 5)
    assert resumed.global_step == full.global_step == 5
    assert full.train_ds.chars == CHARS and len(full.train_ds) == 32  # epoch 1: 4 classes x 8
    _same_state(full.model.state_dict(), resumed.model.state_dict())
    assert resumed.opt.param_groups[0]["lr"] == full.opt.param_groups[0]["lr"]


def test_curriculum_leaves_classes_still_to_come_untouched(hanzi, tmp_path):
    tr = InkTrainer(char_cfg(hanzi, tmp_path / "c", max_steps=2, class_schedule=[[2, 8], [4, 8]]))
    tr.setup()
    w0 = tr.model.fc2.weight.detach().clone()
    tr.fit()  # the 2 steps of epoch 0: classes 1 and 2 only
    w1 = tr.model.fc2.weight.detach()
    assert torch.equal(w1[3:], w0[3:]) and not torch.equal(w1[1:3], w0[1:3])


# ----------------------------------------------------------------- lines (CTC)
GLYPHS = {  # unit-height pen shapes, y down; each a list of strokes
    "o": [[(0.5, 0.2), (0.8, 0.5), (0.5, 0.8), (0.2, 0.5), (0.5, 0.2)]],
    "l": [[(0.5, -0.4), (0.5, 0.8)]],
    "x": [[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)]],
}


def line_ink(text: str, rng: np.random.Generator, lid: str) -> Ink:
    strokes, x0 = [], 0.0
    for ch in text:
        if ch == " ":
            x0 += 0.6
            continue
        for s in GLYPHS[ch]:
            p = np.array(s, dtype=float)
            dense = np.concatenate([np.linspace(a, b, 6, endpoint=False) for a, b in zip(p[:-1], p[1:])] + [p[-1:]])
            dense = (dense + [x0, 0]) * 200 + rng.normal(0, 3, dense.shape) + 1000
            strokes.append(dense)
        x0 += 1.0
    return Ink.from_xy(strokes, label=text, id=lid)


def write_lines(path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(list("olx"), rng.integers(2, 5))) for _ in range(n)]
    write_iamondb_npz(path, [line_ink(t, rng, f"z{seed:02d}-{i:03d}x-{i:02d}") for i, t in enumerate(texts)])


@pytest.fixture(scope="module")
def line_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lines")
    write_lines(d / "train.npz", 48, 1)
    write_lines(d / "val.npz", 12, 2)
    cfg = InkTrainConfig(task="line", out=str(d / "run"), train=str(d / "train.npz"),
                         val=str(d / "val.npz"), batch_size=8, lr=1e-2, warmup_steps=2, epochs=6,
                         options={"hidden": 24, "layers": 1, "subsample": 2}, progress=False,
                         preprocessing={"min_dist": 0.05, "drop_rate": 0.1, "rotate_deg": 2.0},
                         threads=1)
    return d, fit_ink(cfg)


def test_line_ctc_run_learns(line_run):
    d, result = line_run
    hist = json.loads((d / "run" / "history.json").read_text())
    assert result["steps"] == 6 * 6 and len(hist) == 6
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert all(0.0 <= h["val_cer"] and 0.0 <= h["val_wer"] for h in hist)
    _, cfg, alphabet = load_model(str(d / "run" / "best"))
    assert alphabet.symbols == ["l", "o", "x"] and cfg["preprocessing"]["scale"] == "y_std"


def test_evaluate_npz_lines_matches_a_direct_decode(line_run, tmp_path):
    from inkpack.decode.greedy import greedy_decode
    from inkpack.metrics import cer

    d, _ = line_run
    res = evaluate_ink(str(d / "val.npz"), str(d / "run" / "best"), str(tmp_path / "r.json"))
    assert {"cer", "wer", "lines", "ms_per_line"} <= set(res)
    assert json.loads((tmp_path / "r.json").read_text())["lines"] == res["lines"] == 12
    model, cfg, alphabet = load_model(str(d / "run" / "best"))
    from inkpack.data.formats.iamondb import read_iamondb_npz
    from inkpack.infer.ink_preprocess import preprocess_config

    hyps, refs = [], []
    for ink in read_iamondb_npz(d / "val.npz"):
        f = torch.from_numpy(preprocess(ink, preprocess_config(cfg), None))[None]
        logits, n = model(f, torch.tensor([f.shape[1]]))
        hyps.append(alphabet.decode(greedy_decode(logits.log_softmax(-1), n)[0]))
        refs.append(ink.label)
    assert res["cer"] == pytest.approx(cer(hyps, refs))


# ----------------------------------------------------------------- .pot evaluation
def test_evaluate_and_recognize_pot(char_run, hanzi, tmp_path, capsys):
    out, _ = char_run
    med = load_medians(hanzi / "medians.json.gz")
    rng = np.random.default_rng(5)
    inks = [synth(med[c], rng, label=c) for c in CHARS * 3]
    inks.append(synth(med["一"], rng, label="丁"))  # a label the model does not know: an error
    for k, ink in enumerate(inks):
        ink.id = f"s{k}"
    pot = tmp_path / "toy.pot"
    write_pot(pot, inks)
    with open(pot, "ab") as f:
        f.write(b"\x10\x00")  # a truncated trailing sample: skipped and counted
    res = evaluate_ink(str(pot), str(out / "best"), str(tmp_path / "e.json"))
    assert {"accuracy", "top5", "samples", "ms_per_sample"} <= set(res)
    assert res["samples"] == 14 and res["skipped"] == 1 and res["unknown_labels"] == 1
    assert 0.0 <= res["accuracy"] <= res["top5"] <= 13 / 14  # 4 classes: all known ones in top-5
    assert res["top5"] == pytest.approx(12 / 14)
    # the accuracy is the model's own argmax on the same features, over all 14 samples
    model, cfg, alphabet = load_model(str(out / "best"))
    from inkpack.data.formats.pot import read_pot
    from inkpack.infer.ink_preprocess import preprocess_config

    right = 0
    for ink in read_pot(pot, strict=False)[:12]:
        f = torch.from_numpy(preprocess(ink, preprocess_config(cfg), None))[None]
        right += int(model(f, torch.tensor([f.shape[1]])).argmax()) == alphabet.encode(ink.label)[0]
    assert res["accuracy"] == pytest.approx(right / 14)
    capsys.readouterr()
    assert recognize_ink([str(pot)], str(out / "best")) == 2  # the damaged sample is an error
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 13 and lines[0].startswith("toy.pot:0\t")
    cands = lines[0].split("\t")[1].split("  ")
    assert len(cands) == 4 and {c.split()[0] for c in cands} == set(CHARS)


def test_folded_input_norm_equals_standardised_inputs_and_sortagrad_order(line_run):
    d, _ = line_run
    cfg = InkTrainConfig(task="line", out=str(d / "fold"), train=str(d / "train.npz"), val=None,
                         batch_size=8, options={"hidden": 8, "layers": 1, "subsample": 2},
                         fold_input_norm=False, sortagrad=True, progress=False)
    plain = InkTrainer(cfg)
    plain.setup()
    cfg.fold_input_norm, cfg.out = True, str(d / "fold2")
    folded = InkTrainer(cfg)
    folded.setup()
    feats = np.concatenate([folded._item(folded.train_ds, i, None)[0] for i in range(48)])
    mean, std = feats.mean(0), feats.std(0) + 1e-3
    x = torch.from_numpy(np.tile(feats[:10], (1, 2)))  # two stacked frames per LSTM step
    z = torch.from_numpy(np.tile((feats[:10] - mean) / std, (1, 2))).float()
    for sfx in ("_l0", "_l0_reverse"):
        w0, b0 = getattr(plain.model.lstm, "weight_ih" + sfx), getattr(plain.model.lstm, "bias_ih" + sfx)
        w1, b1 = getattr(folded.model.lstm, "weight_ih" + sfx), getattr(folded.model.lstm, "bias_ih" + sfx)
        torch.testing.assert_close(x.float() @ w1.T + b1, z @ w0.T + b0, rtol=1e-4, atol=1e-4)
    sizes = [plain.train_sizes[i] for batch in plain._order(0) for i in batch]
    assert sizes == sorted(sizes) and plain._order(1) != plain._order(0)  # epoch 1: shuffled buckets


def test_ink_lines_take_a_beam_lm_decoder(line_run, tmp_path):
    """evaluate / the Recognizer / the service decode ink lines with the decoder they are given."""
    from fastapi.testclient import TestClient

    from inkpack.data.formats.iamondb import read_iamondb_npz
    from inkpack.decode.beam import Decoder
    from inkpack.decode.lm import CharNgramLM
    from inkpack.deploy.server import create_app
    from inkpack.infer.ink_preprocess import preprocess_config
    from inkpack.infer.recognizer import Recognizer
    from inkpack.metrics import cer

    d, _ = line_run
    inks = list(read_iamondb_npz(d / "val.npz"))
    lm_path = tmp_path / "lm.arpa"
    CharNgramLM.train([i.label for i in inks] * 5, order=3).save(str(lm_path))
    dec = Decoder("beam+lm", beam=8, lm=str(lm_path), alpha=1.0)
    res = evaluate_ink(str(d / "val.npz"), str(d / "run" / "best"), decoder=dec)
    assert res["decoder"] == "beam+lm"
    # the same decoder applied by hand to the model's own log-probs
    model, cfg, alphabet = load_model(str(d / "run" / "best"))
    hyps = []
    for ink in inks:
        f = torch.from_numpy(preprocess(ink, preprocess_config(cfg), None))[None]
        logits, n = model(f, torch.tensor([f.shape[1]]))
        hyps.append(dec.decode(logits[: int(n[0]), 0].log_softmax(-1), alphabet))
    assert res["cer"] == pytest.approx(cer(hyps, [i.label for i in inks]))
    rec = Recognizer(model, cfg, alphabet, dec)
    assert rec.input_kind == "ink"
    assert [r.text for r in rec.recognize(inks)] == hyps
    # the service: /v1/models names the decoder, /v1/recognize/ink answers with its text
    app = create_app(rec, ink_model=None)
    with TestClient(app) as client:
        assert client.get("/v1/models").json()["ink"]["decoder"] == "beam+lm"
        strokes = [s.tolist() for s in inks[0].strokes]
        got = client.post("/v1/recognize/ink", json={"strokes": strokes}).json()
    assert got["text"] == hyps[0]


def test_decoder_refused_for_character_models(char_run):
    from inkpack.decode.beam import Decoder
    from inkpack.errors import InkpackError
    from inkpack.infer.recognizer import Recognizer

    out, _ = char_run
    model, cfg, alphabet = load_model(str(out / "best"))
    with pytest.raises(InkpackError, match="decoders apply to line models"):
        Recognizer(model, cfg, alphabet, Decoder("beam"))
