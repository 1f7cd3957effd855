"""The command line does what the README says (issue 18 item 3), on data the tests make.

Uses the shipped default model (models/hooker-darknet) and rendered lines in tmp_path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from conftest import make_tsv, render_text
from inkpack.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["the cat", "a dog", "hello there", "ink pack"]


def _env() -> dict:
    return {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}


def _strict_json(text: str):
    def bad(c):
        raise ValueError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    root = tmp_path_factory.mktemp("lines")
    tsv = make_tsv(root, TEXTS)
    return tsv, [str(root / "img" / f"line{i}.png") for i in range(len(TEXTS))]


def test_help_and_version_do_not_import_torch():
    code = ("import sys\nfrom inkpack.cli import main\n"
            "for argv in (['--help'], ['evaluate', '--help'], ['train', '--help'], ['recognize', '--help'],\n"
            "             ['export', '--help'], ['models', '--help'], ['compress', '--help'], ['report', '--help'],\n"
            "             ['serve', '--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env())
    assert "TORCH False" in p.stderr, p.stderr
    from inkpack import __version__

    assert f"inkpack {__version__}" in p.stdout
    assert "usage: inkpack evaluate" in p.stdout and "--device" in p.stdout
    assert "usage: inkpack compress" in p.stdout and "--criterion" in p.stdout and "cnn-mah" in p.stdout


def test_every_flag_of_the_cli_commands_has_help_and_states_its_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    missing, no_default = [], []
    for name in ("train", "evaluate", "recognize", "demo", "models"):
        sp = sub[name]
        help_text = sp.format_help()
        for act in sp._actions:
            if not act.option_strings or act.dest == "help":
                continue
            if not act.help:
                missing.append(f"{name} {act.option_strings[0]}")
            elif act.default not in (None, False) and "default" not in help_text.split(act.option_strings[0])[-1][:400]:
                no_default.append(f"{name} {act.option_strings[0]}")
    assert not missing, missing
    assert not no_default, no_default
    assert "(default: 1)" in sub["evaluate"].format_help()  # --batch-size


def test_export_writes_the_default_model_and_recognize_and_evaluate_take_the_onnx(lines, tmp_path, capsys):
    tsv, imgs = lines
    out = tmp_path / "m.onnx"
    assert main(["export", "--out", str(out)]) == 0  # no MODEL: the bundled one (was "None: model not found")
    side = _strict_json((tmp_path / "m.onnx.json").read_text())
    assert side["arch"] == "darknet-dblstm" and side["onnx"]["input_kind"] == "image"
    capsys.readouterr()
    assert main(["recognize", *imgs]) == 0
    torch_out = capsys.readouterr().out
    assert main(["recognize", "--model", str(out), *imgs]) == 0
    assert capsys.readouterr().out == torch_out  # same texts through ONNX Runtime
    js = tmp_path / "e.json"
    assert main(["evaluate", str(tsv), "--model", str(out), "--json", str(js)]) == 0
    res = _strict_json(js.read_text())
    assert res["lines"] == len(TEXTS) and res["backend"] == "onnxruntime"


def test_evaluate_writes_per_line_results_and_a_progress_bar(lines, tmp_path, capsys):
    tsv, imgs = lines
    hyps, js = tmp_path / "out" / "hyps.tsv", tmp_path / "out" / "e.json"
    assert main(["evaluate", str(tsv), "--output", str(hyps), "--json", str(js), "--progress", "on"]) == 0
    err = capsys.readouterr().err
    assert "evaluating data.tsv" in err and f"{len(TEXTS)}/{len(TEXTS)}" in err  # the tqdm bar
    rows = [r.split("\t") for r in hyps.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["image", "reference", "hypothesis", "cer"] and len(rows) == 1 + len(TEXTS)
    dist = chars = 0
    for (image, ref, hyp, cer), want_img, want_ref in zip(rows[1:], imgs, TEXTS):
        assert Path(image).name == Path(want_img).name and ref == want_ref
        d = Levenshtein.distance(hyp, ref)
        assert float(cer) == pytest.approx(d / len(ref), abs=1e-4)
        dist, chars = dist + d, chars + len(ref)
    res = _strict_json(js.read_text())
    assert res["cer"] == pytest.approx(dist / chars) and res["lines"] == len(TEXTS)
    # one preprocessing: evaluate's hypotheses are recognize's and the API's texts
    capsys.readouterr()
    assert main(["recognize", *imgs]) == 0
    got = [ln.split("\t", 1)[1] for ln in capsys.readouterr().out.splitlines()]
    assert got == [r[2] for r in rows[1:]]
    import inkpack

    assert [r.text for r in inkpack.load().recognize(imgs)] == got


def test_recognize_json_has_text_confidences_and_positions(lines, capsys):
    _, imgs = lines
    assert main(["recognize", "--json", imgs[0], imgs[2], "/nonexistent/x.png"]) == 2  # one input failed
    cap = capsys.readouterr()
    items = _strict_json(cap.out)
    assert [it["input"] for it in items[:2]] == [imgs[0], imgs[2]] and "error" in items[2]
    width = render_text(TEXTS[0]).size[0]
    for it in items[:2]:
        assert len(it["confidences"]) == len(it["text"]) == len(it["positions"])
        assert all(0.0 < c <= 1.0 for c in it["confidences"])
        assert all(0 <= x0 < x1 for x0, x1 in it["positions"])
    assert max(x1 for _, x1 in items[0]["positions"]) <= width
    assert "x.png" in cap.err and len(cap.err.strip().splitlines()) == 1


def test_lm_without_decoder_means_beam_lm(tmp_path):
    from inkpack.cli.common import decoder as _decoder
    from inkpack.decode.lm import CharNgramLM
    from inkpack.errors import ConfigError

    lm = tmp_path / "lm.arpa"
    CharNgramLM.train(["the cat and the dog"] * 5, order=3).save(str(lm))
    parser = build_parser()
    dec = _decoder(parser.parse_args(["recognize", "x.png", "--lm", str(lm)]))
    assert dec is not None and dec.kind == "beam+lm"
    assert _decoder(parser.parse_args(["recognize", "x.png"])) is None  # greedy
    with pytest.raises(ConfigError, match="only used by --decoder beam\\+lm"):
        _decoder(parser.parse_args(["evaluate", "d.tsv", "--decoder", "greedy", "--lm", str(lm)]))
    with pytest.raises(ConfigError, match="needs --lm"):
        _decoder(parser.parse_args(["serve", "--decoder", "beam+lm"]))


def test_a_closed_pipe_ends_quietly(lines):
    _, imgs = lines
    proc = subprocess.Popen([sys.executable, "-m", "inkpack", "recognize", *imgs], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def test_json_is_strict_without_infinity_or_nan(tmp_path):
    from inkpack.jsonio import dumps, write_json

    assert dumps({"a": float("inf"), "b": [float("nan"), 1.5], "c": np.float32(2.0)}) == \
        '{"a": null, "b": [null, 1.5], "c": 2.0}'
    write_json(tmp_path / "r.json", {"cer": float("inf")})
    assert _strict_json((tmp_path / "r.json").read_text()) == {"cer": None}
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_models_lists_the_shipped_models_with_their_measures(capsys):
    from inkpack.cli.models import shipped_models

    rows = {r["name"]: r for r in shipped_models(ROOT / "models")}
    want = json.loads((ROOT / "models" / "hooker-darknet.json").read_text())["metrics"]["val_cer"]
    assert rows["hooker-darknet"]["measure"] == f"val CER {100 * want:.1f}%"
    assert rows["hooker-darknet"]["task"] == "line image" and rows["iamondb-online-blstm"]["task"] == "ink line"
    size = sum(p.stat().st_size for p in (ROOT / "models").glob("hooker-darknet.*")) / 1e6
    assert rows["hooker-darknet"]["mb"] == pytest.approx(size)


def test_models_command_prints_no_nan(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower().split() and " nan" not in out
    assert "hooker-darknet" in out and "online-blstm" in out and "700 points" in out


def test_files_are_dispatched_by_content(tmp_path, capsys):
    from inkpack.api import file_kind
    from inkpack.data.formats.iamondb import write_iamondb_xml
    from inkpack.data.ink import Ink

    png_named_xml = tmp_path / "line.xml"
    render_text("hello").save(png_named_xml, format="PNG")
    assert file_kind(png_named_xml) == "image"
    rng = np.random.default_rng(0)
    strokes = [np.c_[np.cumsum(rng.uniform(1, 5, 30)) + 40 * k, rng.uniform(0, 30, 30)] for k in range(4)]
    ink = Ink.from_xy(strokes, id="strokes")
    onl = tmp_path / "strokes.txt"  # IAM-OnDB stroke XML under a misleading name
    write_iamondb_xml(onl, ink)
    assert file_kind(onl) == "iamondb"
    page = tmp_path / "page.xml"
    page.write_text('<?xml version="1.0"?>\n<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/'
                    'pagecontent/2019-07-15"><Page/></PcGts>\n')
    assert file_kind(page) == "pagexml"
    # recognize: the image goes to the line model, the ink to the online *line* model by default
    rc = main(["recognize", str(png_named_xml), str(onl), str(page)])
    cap = capsys.readouterr()
    assert rc == 2 and "page.xml" in cap.err  # read as a page (its image is missing), the others read
    out = cap.out.splitlines()
    import inkpack
    from inkpack.data.formats.iamondb import read_iamondb_xml

    want_ink = inkpack.load("iamondb-online-blstm").recognize(read_iamondb_xml(onl)).text
    assert out[0] == f"{png_named_xml}\t{inkpack.load().recognize(str(png_named_xml)).text}"
    assert out[1] == f"strokes\t{want_ink}"


def test_device_flags_reach_the_config_and_cuda_falls_back(lines, capsys):
    import torch

    from inkpack.cli import train_config

    tsv, imgs = lines
    a = build_parser().parse_args(["train", str(tsv), "--device", "cpu", "--ema", "0.99", "--out",
                                   str(Path(tsv).parent / "run")])
    cfg = train_config(a)
    assert cfg.device == "cpu" and cfg.ema == 0.99
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the fallback is not exercised")
    capsys.readouterr()
    assert main(["recognize", "--device", "cuda", imgs[0]]) == 0
    cap = capsys.readouterr()
    assert "CUDA is not available" in cap.err and cap.out.strip()


def test_recognize_fills_a_pagexml_page(tmp_path, capsys):
    from lxml import etree

    import inkpack

    texts = ["dear sir", "the cat"]
    rows = [np.asarray(render_text(t)) for t in texts]
    w = max(r.shape[1] for r in rows) + 10
    page = np.full((40 * len(rows) + 20, w), 230, np.uint8)
    boxes = []
    for k, r in enumerate(rows):
        y0 = 10 + 40 * k
        page[y0 : y0 + 40, 5 : 5 + r.shape[1]] = r
        boxes.append((5, y0, 5 + r.shape[1] - 1, y0 + 39))
    from PIL import Image

    Image.fromarray(page).save(tmp_path / "p.png")
    ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
    lines_xml = "".join(
        f'<TextLine id="l{k}"><Coords points="{x0},{y0} {x1},{y0} {x1},{y1} {x0},{y1}"/></TextLine>'
        for k, (x0, y0, x1, y1) in enumerate(boxes))
    (tmp_path / "p.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<PcGts xmlns="{ns}"><Page imageFilename="p.png" '
        f'imageWidth="{w}" imageHeight="{page.shape[0]}"><TextRegion id="r"><Coords points="0,0 1,0 1,1 0,1"/>'
        f"{lines_xml}</TextRegion></Page></PcGts>\n", encoding="utf-8")
    out = tmp_path / "out" / "filled.xml"
    assert main(["recognize", str(tmp_path / "p.xml"), "--out", str(out)]) == 0
    printed = [ln.split("\t", 1) for ln in capsys.readouterr().out.splitlines()]
    rec = inkpack.load()
    want = [rec.recognize(page[y0 : y1 + 1, x0 : x1 + 1]).text for x0, y0, x1, y1 in boxes]
    assert printed == [[f"{tmp_path / 'p.xml'}:l{k}", t] for k, t in enumerate(want)]
    root = etree.parse(str(out)).getroot()
    got = [el.text or "" for el in root.iter(f"{{{ns}}}Unicode")]
    assert got == want
