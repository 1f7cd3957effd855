"""A model's own decoder: a model JSON's ``decoder`` field (beam search + a character LM file
beside it) is what every path decodes with unless told otherwise (``"greedy"`` or another
decoder); it travels with the model when it is re-saved or exported, and a bad field names the
file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inkpack.api import load
from inkpack.decode.beam import Decoder
from inkpack.decode.lm import CharNgramLM
from inkpack.decode.options import chosen, decoder_from_args
from inkpack.errors import ConfigError, ModelFileError
from inkpack.infer.recognizer import open_recognizer
from inkpack.models.io import load_model, read_config, save_model
from inkpack.testing import SYMBOLS, line_png, make_line_model

# a strongly weighted LM of one phrase pulls the beam away from the untrained model's greedy text
OWN = {"kind": "beam+lm", "beam": 4, "alpha": 3.0, "beta": 1.0}
CORPUS = ["the cat sat on the mat", "a cat and a hat", "the hat sat"] * 20 + [
    "the quick brown fox jumps over the lazy dog."]


def _model_with_lm(root: Path, **over) -> Path:
    stem = make_line_model(root, "tiny")
    assert set("".join(CORPUS)) == set(SYMBOLS)  # the LM knows every character: no <unk> warning
    CharNgramLM.train(CORPUS, order=3).save(root / "tiny.lm.arpa")
    cfg = json.loads(stem.with_suffix(".json").read_text())
    cfg["decoder"] = {**OWN, "lm": "tiny.lm.arpa", **over}
    stem.with_suffix(".json").write_text(json.dumps(cfg))
    return stem


def _images(n: int = 6) -> list[np.ndarray]:
    from io import BytesIO

    from PIL import Image

    words = ["hello world", "cat", "the mat", "abc def", "zzz", "on a hat"]
    return [np.asarray(Image.open(BytesIO(line_png(w, height=32)))) for w in words[:n]]


def _explicit(stem: Path, imgs, decoder) -> list[str]:
    rec = open_recognizer(stem, decoder=decoder)
    return [r.text for r in rec.recognize(imgs)]


def test_model_decoder_is_the_default_everywhere(tmp_path):
    stem = _model_with_lm(tmp_path)
    imgs = _images()
    own = open_recognizer(stem)
    assert own.decoder is not None and own.decoder.kind == "beam+lm"
    assert (own.decoder.beam, own.decoder.alpha, own.decoder.beta) == (4, 3.0, 1.0)
    texts = [r.text for r in own.recognize(imgs)]
    # the same decoder given explicitly (its LM read from the file by path) reads the same
    lm = str(tmp_path / "tiny.lm.arpa")
    assert texts == _explicit(stem, imgs, Decoder("beam+lm", beam=4, lm=lm, alpha=3.0, beta=1.0))
    greedy = _explicit(stem, imgs, "greedy")
    assert texts != greedy  # the LM really changed what was read
    assert _explicit(stem, imgs, Decoder("greedy")) == greedy
    assert _explicit(stem, imgs, {"kind": "greedy"}) == greedy
    # the Python API: the model's own by default, greedy on request; one line alone == batched
    assert [load(str(stem)).recognize(x).text for x in imgs] == texts
    assert [r.text for r in load(str(stem), decoder="greedy").recognize(imgs)] == greedy


def test_model_decoder_travels_with_the_model(tmp_path):
    stem = _model_with_lm(tmp_path)
    imgs = _images(3)
    texts = _explicit(stem, imgs, None)
    model, cfg, _ = load_model(str(stem))
    assert Path(cfg["decoder"]["lm"]).is_absolute()  # read as a path usable from anywhere
    other = tmp_path / "elsewhere"
    save_model(model, cfg, other / "copy")
    written = json.loads((other / "copy.json").read_text())
    assert written["decoder"]["lm"] == "tiny.lm.arpa"  # named bare, the file copied beside
    assert (other / "tiny.lm.arpa").read_bytes() == (tmp_path / "tiny.lm.arpa").read_bytes()
    assert _explicit(other / "copy", imgs, None) == texts
    # a different file of the same name in the target folder is not overwritten
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "tiny.lm.arpa").write_text("not this one")
    with pytest.raises(Exception, match="tiny.lm.arpa: exists"):
        save_model(model, cfg, clash / "copy")
    assert (clash / "tiny.lm.arpa").read_text() == "not this one"


def test_onnx_export_keeps_the_decoder_and_the_web_bundle_drops_it(tmp_path):
    pytest.importorskip("onnxruntime")
    from inkpack.deploy.export import export_onnx

    stem = _model_with_lm(tmp_path)
    imgs = _images(3)
    out = export_onnx(str(stem), tmp_path / "onnx" / "tiny.onnx")
    side = json.loads((tmp_path / "onnx" / "tiny.onnx.json").read_text())
    assert side["decoder"]["lm"] == "tiny.lm.arpa" and (tmp_path / "onnx" / "tiny.lm.arpa").is_file()
    rec = open_recognizer(out)
    assert rec.decoder is not None and rec.decoder.kind == "beam+lm"
    assert [r.text for r in rec.recognize(imgs)] == _explicit(stem, imgs, None)
    bare = export_onnx(str(stem), tmp_path / "web" / "line.onnx", decoder=False)
    assert "decoder" not in json.loads((tmp_path / "web" / "line.onnx.json").read_text())
    assert not (tmp_path / "web" / "tiny.lm.arpa").exists()
    assert open_recognizer(bare).decoder is None


def test_bad_decoder_fields_name_the_file_and_field(tmp_path):
    stem = _model_with_lm(tmp_path)
    (tmp_path / "tiny.lm.arpa").unlink()
    with pytest.raises(ModelFileError, match=r"tiny\.json: field 'decoder\.lm'.*not found"):
        open_recognizer(stem)
    stem = _model_with_lm(tmp_path / "b", beem=4)
    with pytest.raises(ModelFileError, match=r"tiny\.json: field 'decoder'.*beem"):
        open_recognizer(stem)
    cfg = json.loads(stem.with_suffix(".json").read_text())
    cfg["decoder"] = "beam"
    stem.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="decoder"):
        read_config(stem)


def test_a_model_without_a_decoder_reads_greedily(tmp_path):
    stem = make_line_model(tmp_path)
    assert open_recognizer(stem).decoder is None
    assert chosen(None) is None and chosen("greedy") is None
    assert chosen({"kind": "beam", "beam": 3}).beam == 3


class _Args:
    def __init__(self, **kw):
        self.decoder, self.lm, self.lexicon, self.beam, self.alpha, self.beta = None, None, None, 16, 0.5, 0.0
        self.__dict__.update(kw)


def test_command_line_decoder_choice(tmp_path):
    assert decoder_from_args(_Args()) is None  # no --decoder: the model's own
    assert decoder_from_args(_Args(decoder="greedy")) == "greedy"
    assert decoder_from_args(_Args(decoder="beam", beam=3)).beam == 3
    with pytest.raises(ConfigError, match="--lm"):
        decoder_from_args(_Args(decoder="greedy", lm="x.arpa"))


def test_cli_evaluate_reports_the_decoder_it_used(tmp_path, capsys):
    from tests.cli.cli_helpers import run

    stem = _model_with_lm(tmp_path)
    png = tmp_path / "a.png"
    png.write_bytes(line_png("the cat", height=32))
    (tmp_path / "d.tsv").write_text(f"image\ttext\n{png}\tthe cat\n")
    figs = {}
    for extra in ([], ["--decoder", "greedy"]):
        out = tmp_path / f"e{len(extra)}.json"
        rc, _, err = run(["evaluate", str(tmp_path / "d.tsv"), "--model", str(stem), "--json", str(out),
                          "--progress", "off", *extra], capsys)
        assert rc == 0, err
        figs[len(extra)] = json.loads(out.read_text())
    assert figs[0]["decoder"] == "beam+lm" and figs[2]["decoder"] == "greedy"



@pytest.mark.parametrize("recipe", ["int8", "kmeans"])
def test_compressed_models_keep_the_decoder(tmp_path, capsys, recipe):
    from tests.cli.cli_helpers import run

    stem = _model_with_lm(tmp_path)
    out = tmp_path / "small" / "tiny-small"
    rc, _, err = run(["compress", str(stem), "--recipe", recipe, "--bits", "6", "--out", str(out)], capsys)
    assert rc == 0, err
    cfg = json.loads(out.with_suffix(".json").read_text())
    assert cfg["decoder"] == {**OWN, "lm": "tiny.lm.arpa"}
    assert (out.parent / "tiny.lm.arpa").read_bytes() == (tmp_path / "tiny.lm.arpa").read_bytes()
    assert open_recognizer(out).decoder.kind == "beam+lm"
