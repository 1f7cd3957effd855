"""Fine-tuning of the online recognizers (issue 25, item 4): ``--init-from`` warm starts
character and line runs, ``--task char FILE.pot`` trains on that file, a line model's alphabet
grows for new characters with the old characters' outputs unchanged, bad combinations are one
line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ink_helpers import CHARS, hanzi  # noqa: F401  (a fixture)
from inkpack.data.formats.iamondb import read_iamondb_npz, write_iamondb_npz
from inkpack.data.formats.pot import write_pot
from inkpack.data.hanzi_synth import HanziSynthDataset, load_medians, synth
from inkpack.data.ink import Ink
from inkpack.data.ink_preprocess import preprocess
from inkpack.infer.ink_preprocess import preprocess_config
from inkpack.models.io import load_model
from inkpack.train.ink_train import InkTrainConfig, InkTrainer, fit_ink

TINY_CHAR = {"hidden1": 12, "hidden2": 24, "fc": 24}


def char_cfg(hanzi, out, **kw) -> InkTrainConfig:
    base = dict(task="char", out=str(out), medians=str(hanzi / "medians.json.gz"),
                charset=str(hanzi / "chars.txt"), per_class=8, val_per_class=4, batch_size=8,
                bucket_factor=2, lr=1e-2, warmup_steps=2, epochs=3, options=dict(TINY_CHAR),
                preprocessing={"min_dist": 0.07}, progress=False, threads=1)
    return InkTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def source(hanzi, tmp_path_factory):
    """A small character model of the first three toy characters."""
    out = tmp_path_factory.mktemp("src")
    fit_ink(char_cfg(hanzi, out, num_chars=3))
    return out / "best"


def top1(model, pcfg, samples) -> float:
    right = 0
    for feats, target in samples:
        x = torch.from_numpy(feats)[None]
        right += int(model(x, torch.tensor([len(feats)])).argmax()) == target
    return right / len(samples)


def test_char_warm_start_first_validation_is_the_source_models(hanzi, source, tmp_path):
    # no options, no preprocessing given: the run takes the source model's (tiny sizes, min_dist 0.07)
    cfg = char_cfg(hanzi, tmp_path / "ft", num_chars=3, init_from=str(source), options={}, preprocessing={},
                   max_steps=2)
    fit_ink(cfg)
    hist = json.loads((tmp_path / "ft" / "history.json").read_text())
    assert hist[0]["step"] == 0 and hist[1]["step"] == 2
    # the source model scored independently on the same fixed validation set
    model, mcfg, alphabet = load_model(str(source))
    pcfg = preprocess_config(mcfg)
    assert pcfg.min_dist == 0.07
    vds = HanziSynthDataset.validation(load_medians(hanzi / "medians.json.gz"), CHARS[:3], 4, prep_cfg=pcfg)
    assert hist[0]["val_top1"] == pytest.approx(top1(model.eval(), pcfg, [vds[i] for i in range(len(vds))]))
    _, new_cfg, new_alphabet = load_model(str(tmp_path / "ft" / "best"))
    assert new_cfg["options"]["hidden2"] == 24 and new_alphabet.symbols == list(CHARS[:3])


def test_char_warm_start_from_scratch_differs(hanzi, source, tmp_path):
    """Without --init-from the same run starts elsewhere (the warm start is not a no-op)."""
    warm = InkTrainer(char_cfg(hanzi, tmp_path / "w", num_chars=3, init_from=str(source), options={}))
    warm.setup()
    cold = InkTrainer(char_cfg(hanzi, tmp_path / "c", num_chars=3))
    cold.setup()
    src, _, _ = load_model(str(source))
    assert torch.equal(warm.model.fc2.weight, src.fc2.weight)
    assert not torch.equal(cold.model.fc2.weight, src.fc2.weight)


def toy_pot(hanzi, path, text: str, seed: int) -> list[Ink]:
    med = load_medians(hanzi / "medians.json.gz")
    rng = np.random.default_rng(seed)
    inks = [synth(med.get(c, med["一"]), rng, label=c) for c in text]
    for k, ink in enumerate(inks):
        ink.id = f"s{k}"
    write_pot(path, inks)
    return inks


def test_char_training_on_a_pot_file_uses_that_file(hanzi, tmp_path):
    pot = tmp_path / "w1.pot"
    toy_pot(hanzi, pot, "二十" * 10, 3)  # 20 samples of two characters
    tr = InkTrainer(char_cfg(hanzi, tmp_path / "p", train=str(pot), max_steps=1))
    tr.setup()
    assert tr.alphabet.symbols == ["二", "十"]  # the file's characters, not the charset's four
    assert len(tr.train_ds) == 18 and len(tr.val_items) == 2  # every tenth sample validates
    assert [tr._item(tr.train_ds, i, None, train=False)[1] for i in range(4)] == [1, 2, 1, 2]
    # the features are those of the file's samples, as the evaluation reads them
    from inkpack.data.formats.pot import read_pot

    first = read_pot(pot)[0]
    np.testing.assert_array_equal(tr._item(tr.train_ds, 0, None, train=False)[0], preprocess(first, tr.pcfg))
    tr.fit()
    _, mcfg, _ = load_model(str(tmp_path / "p" / "best"))
    assert mcfg["trained_on"].endswith("w1.pot")


def test_char_pot_with_a_val_pot_and_a_new_character_extends_the_model(hanzi, source, tmp_path):
    pot, val = tmp_path / "t.pot", tmp_path / "v.pot"
    toy_pot(hanzi, pot, "一口" * 4, 4)  # 口 is not in the source model
    toy_pot(hanzi, val, "一二口丁", 5)  # 丁: in no alphabet, skipped and counted
    tr = InkTrainer(char_cfg(hanzi, tmp_path / "e", train=str(pot), val=str(val), init_from=str(source),
                             options={}, preprocessing={}))
    tr.setup()
    assert tr.alphabet.symbols == list("一二十口") and len(tr.val_items) == 3 and tr.val_skipped == 1
    src, _, _ = load_model(str(source))
    x = torch.from_numpy(tr.val_items[0][0])[None]
    n = torch.tensor([x.shape[1]])
    with torch.no_grad():
        old, new = src.eval()(x, n), tr.model.eval()(x, n)
    torch.testing.assert_close(new[:, :4], old, rtol=0, atol=0)  # blank + the 3 old characters


# ----------------------------------------------------------------- lines
GLYPHS = {  # unit-height pen shapes, y down
    "o": [[(0.5, 0.2), (0.8, 0.5), (0.5, 0.8), (0.2, 0.5), (0.5, 0.2)]],
    "l": [[(0.5, -0.4), (0.5, 0.8)]],
    "x": [[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)]],
    "v": [[(0.2, 0.2), (0.5, 0.8), (0.8, 0.2)]],
}


def write_lines(path, n: int, seed: int, letters: str) -> None:
    rng = np.random.default_rng(seed)
    inks = []
    for i in range(n):
        text = "".join(rng.choice(list(letters), rng.integers(2, 4)))
        strokes, x0 = [], 0.0
        for ch in text:
            for s in GLYPHS[ch]:
                p = np.array(s, dtype=float)
                dense = np.concatenate([np.linspace(a, b, 5, endpoint=False) for a, b in zip(p[:-1], p[1:])] + [p[-1:]])
                strokes.append((dense + [x0, 0]) * 200 + rng.normal(0, 3, dense.shape) + 1000)
            x0 += 1.0
        inks.append(Ink.from_xy(strokes, label=text, id=f"z{seed:02d}-{i:03d}x-{i:02d}"))
    write_iamondb_npz(path, inks)


@pytest.fixture(scope="module")
def line_source(tmp_path_factory):
    d = tmp_path_factory.mktemp("lines")
    write_lines(d / "train.npz", 16, 1, "olx")
    write_lines(d / "new.npz", 16, 2, "olxv")
    write_lines(d / "val.npz", 6, 3, "olx")
    fit_ink(InkTrainConfig(task="line", out=str(d / "run"), train=str(d / "train.npz"), val=str(d / "val.npz"),
                           batch_size=8, lr=1e-2, warmup_steps=1, epochs=1, progress=False, threads=1,
                           options={"hidden": 12, "layers": 1, "subsample": 2},
                           preprocessing={"min_dist": 0.05, "drop_rate": 0.1}))
    return d


def test_line_warm_start_first_validation_is_the_source_models(line_source, tmp_path):
    from inkpack.ink_commands import evaluate_ink

    d = line_source
    fit_ink(InkTrainConfig(task="line", out=str(tmp_path / "ft"), train=str(d / "train.npz"),
                           val=str(d / "val.npz"), init_from=str(d / "run" / "best"), batch_size=8,
                           max_steps=1, progress=False, threads=1))
    hist = json.loads((tmp_path / "ft" / "history.json").read_text())
    assert hist[0]["step"] == 0
    ref = evaluate_ink(str(d / "val.npz"), str(d / "run" / "best"))  # the CLI's own evaluation
    assert hist[0]["val_cer"] == pytest.approx(ref["cer"])


def test_line_alphabet_extension_keeps_the_old_characters_outputs(line_source, tmp_path):
    d = line_source
    tr = InkTrainer(InkTrainConfig(task="line", out=str(tmp_path / "x"), train=str(d / "new.npz"),
                                   val=str(d / "val.npz"), init_from=str(d / "run" / "best"), progress=False))
    tr.setup()
    src, scfg, salpha = load_model(str(d / "run" / "best"))
    assert salpha.symbols == ["l", "o", "x"] and tr.alphabet.symbols == ["l", "o", "x", "v"]
    ink = read_iamondb_npz(d / "new.npz")[0]
    x = torch.from_numpy(preprocess(ink, preprocess_config(scfg)))[None]
    n = torch.tensor([x.shape[1]])
    with torch.no_grad():
        (old, _), (new, _) = src.eval()(x, n), tr.model.eval()(x, n)
    assert new.shape[-1] == 5 and old.shape[-1] == 4
    torch.testing.assert_close(new[..., :4], old, rtol=0, atol=0)  # blank, l, o, x: the same outputs
    assert not torch.equal(new[..., 4], torch.zeros_like(new[..., 4]))  # v: a fresh row


@pytest.mark.parametrize("args,needle", [
    (["--task", "char", "{d}/train.npz"], "--task char reads CASIA .pot"),
    (["--task", "line", "{d}/x.pot"], ".pot characters are data for --task char"),
    (["--task", "char", "--init-from", "{d}/run/best"], "cannot start a --task char run"),
    (["--task", "line", "{d}/new.npz", "--init-from", "{d}/run/best", "--resize", "fail"], "lacks: 'v'"),
    (["--task", "line", "{d}/new.npz", "--resize", "new"], "--resize: needs --init-from"),
    (["--task", "char", "{d}/x.pot", "--num-chars", "3"], "not for .pot training data"),
])
def test_bad_fine_tuning_combinations_are_one_line(line_source, tmp_path, capsys, args, needle):
    from inkpack.cli import main

    (line_source / "x.pot").write_bytes(b"")
    argv = ["train", *[a.format(d=line_source) for a in args], "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_evaluate_with_reversed_strokes_scores_the_reversed_samples(hanzi, source, tmp_path):
    from inkpack.data.formats.pot import read_pot
    from inkpack.data.ink_perturb import reverse_strokes
    from inkpack.ink_commands import evaluate_ink

    pot = tmp_path / "e.pot"
    toy_pot(hanzi, pot, "一二十" * 4, 6)
    plain = evaluate_ink(str(pot), str(source))
    rev = evaluate_ink(str(pot), str(source), perturb={"swap": 0, "reverse": 1.0, "join": 0})
    assert rev["perturb"]["reverse"] == 1.0 and "perturb" not in plain
    model, mcfg, alphabet = load_model(str(source))
    pcfg = preprocess_config(mcfg)
    samples = [(preprocess(reverse_strokes(ink, 1.0, np.random.default_rng(0)), pcfg), alphabet.encode(ink.label)[0])
               for ink in read_pot(pot)]
    assert rev["accuracy"] == pytest.approx(top1(model.eval(), pcfg, samples))


def test_issue25_configs_load_from_the_repository(monkeypatch):
    from pathlib import Path

    from inkpack.train.ink_options import check_combinations

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    wide = InkTrainConfig.from_yaml("configs/hanzi-lstm-char-wide.yaml")
    assert (wide.options["hidden2"], wide.options["fc"]) == (512, 512) and wide.extra_val == ["writer", "order"]
    robust = InkTrainConfig.from_yaml("configs/hanzi-lstm-char-robust.yaml")
    assert robust.init_from == "models/hanzi-lstm-char" and robust.synth["writer_style"] is True
    for c in (wide, robust):
        check_combinations(c)
