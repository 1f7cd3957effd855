"""``inkpack web --out DIR``: the static site (page, vendored runtime, int8 models, manifest)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import onnx
import pytest
from deploy_helpers import make_ink_model, make_line_model

from inkpack.cli import main
from inkpack.deploy.webbundle import WEB, build_web, models_dir
from inkpack.errors import ConfigError


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("m")
    out = tmp_path_factory.mktemp("site") / "site"
    manifest = build_web(out, char_model=str(make_ink_model(root)), line_model=str(make_line_model(root)))
    return out, manifest


def test_site_has_page_runtime_and_int8_models(site):
    out, manifest = site
    for f in ("index.html", "sw.js", "web/app.js", "web/recognize.js", "web/ondevice.js", "web/pagescan.js",
              "web/style.css", "web/vendor/onnxruntime-web/LICENSE"):
        assert (out / f).is_file(), f
    html = (out / "index.html").read_text()
    assert 'src="web/ondevice.js"' in html and 'src="/' not in html  # relative: any static server, any path
    assert manifest["runtime"]["package"] == "onnxruntime-web"
    assert set(manifest["models"]) == {"char", "line"}
    for m in manifest["models"].values():
        f = out / "web" / "models" / m["file"]
        assert m["bytes"] == f.stat().st_size and m["sha256"] == _sha(f)
        gz = out / "web" / "models" / m["gz"]  # what the page downloads
        assert gzip.decompress(gz.read_bytes()) == f.read_bytes() and m["gz_bytes"] == gz.stat().st_size
        ops = {n.op_type for n in onnx.load(str(f)).graph.node}
        assert "DynamicQuantizeLSTM" in ops  # int8 LSTMs
        side = json.loads((out / "web" / "models" / m["config"]).read_text())
        assert side["onnx"]["int8"] is True and side["alphabet"]["symbols"]
    rt = manifest["runtime"]
    wasm = (WEB / "vendor" / "onnxruntime-web" / rt["wasm"]).read_bytes()
    assert gzip.decompress((out / "web" / "models" / rt["wasm_gz"]).read_bytes()) == wasm
    assert json.loads((out / "web" / "models" / "manifest.json").read_text()) == manifest
    assert models_dir(out) == out / "web" / "models"


def test_vendored_runtime_matches_its_record():
    vendor = WEB / "vendor" / "onnxruntime-web"
    meta = json.loads((vendor / "VENDOR.json").read_text())
    assert meta["package"] == "onnxruntime-web" and meta["version"]
    assert "MIT" in meta["license"] and "MIT License" in (vendor / "LICENSE").read_text()
    for name, rec in meta["files"].items():
        assert (vendor / name).stat().st_size == rec["bytes"] and _sha(vendor / name) == rec["sha256"], name
    assert meta["version"] in (vendor / "ort.wasm.min.js").read_text()[:200]


def test_cli_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["web", "--out", str(f), "--no-line", "--no-ink"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f) in err[0] and "folder" in err[0]
    with pytest.raises(ConfigError, match="no on-device models"):
        models_dir(tmp_path)
    assert main(["serve", "--web-models", str(tmp_path)]) == 2
    assert "no on-device models" in capsys.readouterr().err


def test_a_model_in_the_wrong_slot_is_refused_before_any_export(tmp_path):
    from inkpack.deploy.webbundle import export_web_models
    from inkpack.errors import InkpackError

    line = str(make_line_model(tmp_path / "m"))
    with pytest.raises(InkpackError) as e:
        export_web_models(tmp_path / "site", char_model=line, with_line=False)
    assert str(e.value) == f"{line}: an image model cannot be the on-device ink model"
    assert not list((tmp_path / "site").glob("*.onnx"))
