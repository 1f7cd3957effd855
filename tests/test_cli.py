"""CLI smoke tests on tiny data the tests make; user errors are one line, exit 2, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tsv, render_text
from inkpack.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inkpack", *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tsv = make_tsv(root, ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be"])
    out = root / "run"
    code = main(["train", str(tsv), "--val", str(tsv), "--out", str(out), "--height", "32",
                 "--epochs", "2", "--batch-size", "3", "--threads", "1"])
    assert code == 0
    return root, tsv, out


def test_train_then_evaluate_writes_the_documented_json(trained, capsys):
    root, tsv, out = trained
    assert (out / "best.json").exists() and (out / "last.pt").exists()
    js = root / "eval.json"
    assert main(["evaluate", str(tsv), "--model", str(out / "best"), "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert {"cer", "wer", "lines", "ms_per_line"} <= set(res)
    assert res["lines"] == 6 and 0.0 <= res["cer"] and res["ms_per_line"] > 0
    assert "CER" in capsys.readouterr().out


def test_recognize_prints_one_line_per_image(trained, capsys):
    root, _, out = trained
    imgs = [str(root / "img" / f"line{i}.png") for i in range(3)]
    assert main(["recognize", "--model", str(out / "best"), *imgs]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(l.split("\t")[0] in imgs for l in lines)


def test_train_with_yaml_config(tmp_path, capsys):
    tsv = make_tsv(tmp_path, ["one", "two", "three"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train: {tsv}\nout: {tmp_path / 'o'}\nheight: 32\nepochs: 1\nbatch_size: 2\n"
                   "options: {feat_dim: 16, lstm_hidden: 8}\n")
    assert main(["train", "--config", str(cfg), "--max-steps", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: x\nbogus_key: 1\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown config keys ['bogus_key']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["evaluate", "/nonexistent/data.tsv"], "data.tsv: file not found"),
        (["recognize", "--model", "/nonexistent/model", "x.png"], "model not found"),
        (["train", "/nonexistent/train.tsv", "--out", "/tmp/inkpack-never"], "train.tsv: file not found"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, needle):
    p = run_cli(*args)
    assert p.returncode == 2
    assert needle in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_bad_images_for_recognize(trained, tmp_path):
    _, _, out = trained
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    good = tmp_path / "good.png"
    render_text("hello").save(good)
    p = run_cli("recognize", "--model", str(out / "best"), str(good), str(bad))
    assert p.returncode == 2  # one input failed
    assert "bad.png" in p.stderr and "Traceback" not in p.stderr
    assert str(good) in p.stdout


def test_evaluate_skips_bad_rows_and_counts_them(trained, tmp_path):
    _, tsv, out = trained
    t2 = tmp_path / "mixed.tsv"
    base = tsv.parent
    t2.write_text(tsv.read_text().replace("img/", f"{base}/img/") + "missingcol.png\n" + f"{base}/img/nope.png\tx\n")
    js = tmp_path / "r.json"
    p = run_cli("evaluate", str(t2), "--model", str(out / "best"), "--json", str(js))
    assert p.returncode == 0, p.stderr
    assert json.loads(js.read_text())["skipped"] == 2
    assert "missing text column" in p.stderr and "nope.png: file not found" in p.stderr


def test_models_lists_architectures(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "vgg-dblstm" in out and "darknet-dblstm" in out and "GFLOPs" in out
