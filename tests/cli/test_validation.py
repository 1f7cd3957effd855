"""Every expected failure is one line, every option validated (issue 20 item 3).

Option values, configs, model JSON and output paths: one line naming the flag, field or file,
exit 2, checked before any long work starts; other exceptions keep their traceback.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import make_tsv
from inkpack.cli import main
from inkpack.errors import ConfigError, ModelFileError
from inkpack.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = int(e.code)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    return make_tsv(tmp_path_factory.mktemp("val"), ["the cat", "a dog"])


@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "{tsv}", "--batch-size", "-4"], "--batch-size: must be at least 1, got -4"),
    (["evaluate", "{tsv}", "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["evaluate", "{tsv}", "--threads", "0"], "--threads: must be at least 1, got 0"),
    (["recognize", "x.png", "--device", "gpu"], "--device: must be auto, cpu, cuda or cuda:N"),
    (["train", "{tsv}", "--lr", "nan"], "--lr: expected a finite number, got 'nan'"),
    (["train", "{tsv}", "--lr", "-1"], "--lr: must be greater than 0"),
    (["train", "{tsv}", "--height", "0"], "--height: must be at least 8, got 0"),
    (["train", "{tsv}", "--height", "1"], "--height: must be at least 8, got 1"),
    (["train", "{tsv}", "--epochs", "three"], "--epochs: expected an integer, got 'three'"),
    (["train", "{tsv}", "--ema", "1.5"], "--ema: must be in [0, 1)"),
    (["train", "{tsv}", "--nproc", "0"], "--nproc: must be at least 1"),
])
def test_bad_option_values_are_one_line(argv, needle, tsv, capsys):
    rc, out, err = run([a.format(tsv=tsv) for a in argv], capsys)
    assert rc == 2 and needle in one_line(err)


def test_evaluate_batch_size_negative_no_longer_reports_a_cer(tsv, capsys):
    rc, out, err = run(["evaluate", str(tsv), "--batch-size", "-4"], capsys)
    assert rc == 2 and "CER" not in out


def test_unwritable_outputs_fail_before_the_work(tsv, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    t0 = time.perf_counter()
    rc, _, err = run(["export", "--out", str(blocker / "m.onnx")], capsys)
    assert rc == 2 and "--out" in one_line(err) and "a file is in the way" in err
    assert time.perf_counter() - t0 < 5  # checked before loading and tracing the model
    rc, _, err = run(["evaluate", str(tsv), "--json", str(blocker / "r.json")], capsys)
    assert rc == 2 and one_line(err).startswith(f"error: --json {blocker / 'r.json'}")
    rc, _, err = run(["evaluate", str(tsv), "--output", str(tmp_path)], capsys)
    assert rc == 2 and "is a folder, expected a file path" in one_line(err)
    rc, _, err = run(["train", str(tsv), "--out", str(blocker)], capsys)  # a file where a run folder goes
    assert rc == 2 and "is a file, expected a folder" in one_line(err)
    rc, _, err = run(["compress", "hooker-darknet", "--recipe", "int8", "--out", str(blocker / "c")], capsys)
    assert rc == 2 and "a file is in the way" in one_line(err)
    rc, _, err = run(["evaluate", str(tsv), "--json", "/proc/inkpack-no/r.json"], capsys)
    assert rc == 2 and "not writable" in one_line(err)


@pytest.mark.parametrize("body,needle", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "not a text file"),
    (b"epochs: three\n", "epochs: expected an integer, got 'three'"),
    (b"lr: .nan\n", "lr: expected a finite number"),
    (b"- train\n- val\n", "expected a mapping of config keys, got a YAML list"),
    (b"height: [48\n", "invalid YAML"),
    (b"batching: packed\n", "batching: must be one of pad-max, pad-min, pack"),
    (b"arch: resnet\n", "arch: unknown architecture 'resnet'"),
    (b"augment: maybe\n", "augment: expected true or false"),
])
def test_bad_yaml_configs_are_one_line_naming_file_and_field(body, needle, tsv, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(body if b"train" in body else b"train: " + str(tsv).encode() + b"\n" + body)
    rc, _, err = run(["train", "--config", str(cfg)], capsys)
    line = one_line(err)
    assert rc == 2 and str(cfg) in line and needle in line, line


def test_train_config_validate_uses_the_field_types():
    assert TrainConfig(train="t.tsv", lr="1e-3").validate().lr == 0.001  # YAML 1.1 reads 1e-3 as text
    for kw, needle in [({"epochs": 2.5}, "epochs: expected an integer"), ({"val": 3}, "val: expected a string"),
                       ({"init_layers": "lstm."}, "init_layers: expected a list of strings"),
                       ({"options": [1]}, "options: expected a mapping"), ({"workers": -1}, "workers: must be 0"),
                       ({"batch_size": True}, "batch_size: expected an integer"),
                       ({"device": "tpu"}, "device: must be auto, cpu, cuda")]:
        with pytest.raises(ConfigError, match=needle):
            TrainConfig(train="t.tsv", **kw).validate()


def test_config_paths_are_relative_to_the_config_file(tsv, tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    rel = Path("..") / Path(tsv).parent.name
    data_rel = shutil.copytree(Path(tsv).parent, tmp_path / Path(tsv).parent.name)
    (folder / "c.yaml").write_text(f"train: {rel / 'data.tsv'}\nout: ../runs/x\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = TrainConfig.from_yaml(str(folder / "c.yaml"))
    assert Path(cfg.train).resolve() == (data_rel / "data.tsv").resolve()
    assert Path(cfg.out).resolve() == (tmp_path / "runs" / "x").resolve()
    # a config written for the working directory (the old rule) still finds its data
    monkeypatch.chdir(tmp_path)
    (folder / "old.yaml").write_text(f"train: {Path(tsv).parent.name}/data.tsv\n")
    assert Path(TrainConfig.from_yaml(str(folder / "old.yaml")).train).resolve() == (data_rel / "data.tsv").resolve()


def test_shipped_configs_resolve_to_the_same_paths_from_the_repository(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = TrainConfig.from_yaml("configs/hooker-darknet.yaml")
    assert cfg.train == "../shared/data/hooker/train.tsv" and cfg.out == "runs/hooker-darknet"
    assert TrainConfig.from_yaml("configs/hooker-vgg.yaml").init_from == "models/hooker-darknet"


def _model_copy(tmp_path: Path, **changes) -> Path:
    cfg = json.loads((ROOT / "models" / "hooker-darknet.json").read_text())
    cfg.update(changes)
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    shutil.copy(ROOT / "models" / "hooker-darknet.safetensors", tmp_path / "m.safetensors")
    shutil.copy(ROOT / "models" / "hooker-darknet.lm.arpa", tmp_path / "hooker-darknet.lm.arpa")  # its decoder's LM
    return tmp_path / "m"


@pytest.mark.parametrize("changes,needle", [
    ({"options": "big"}, "field 'options' must be an object, got str"),
    ({"alphabet": {"symbols": 7}}, "alphabet: field 'symbols' must be a string or a list"),
    ({"arch": 3}, "field 'arch' must be a string"),
    ({"preprocessing": {"height": "48"}}, "field 'preprocessing.height' must be a positive integer"),
    ({"input_kind": "video"}, "field 'input_kind' must be one of image, ink, char"),
    ({"options": {"height": 48, "colour": True}}, "field 'options' does not fit architecture"),
    ({"arch": "resnet"}, "field 'arch': unknown architecture 'resnet'"),
    ({"decoder": {"kind": "beam+lm", "lm": "gone.arpa"}}, "field 'decoder.lm': language model gone.arpa not found"),
    ({"decoder": []}, "field 'decoder' must be an object"),
])
def test_model_json_with_a_wrong_type_names_the_field(changes, needle, tmp_path, capsys):
    stem = _model_copy(tmp_path, **changes)
    from inkpack.models.io import load_model

    with pytest.raises(ModelFileError, match=needle.replace("(", "\\(").replace("[", "\\[")):
        load_model(str(stem))
    rc, _, err = run(["recognize", "--model", str(stem), str(ROOT / "samples/hooker/JDH_2_16_38_001_r1l13.jpg")],
                     capsys)
    assert rc == 2 and "m.json" in one_line(err)


def test_model_json_records_portable_paths(tmp_path, monkeypatch):
    import torch

    from inkpack.models.io import describe_data, save_model

    data_root = tmp_path / "data"
    make_tsv(data_root / "hooker", ["a b", "c d", "e f"], name="train.tsv")
    monkeypatch.setenv("INKPACK_DATA", str(data_root))
    assert describe_data(data_root / "hooker" / "train.tsv") == "hooker/train.tsv (3 lines)"
    cfg = {"arch": "x", "alphabet": {"symbols": "ab"}, "trained_on": str(data_root / "hooker" / "train.tsv"),
           "compression": {"source": "/home/someone/models/base"}}
    save_model(torch.nn.Linear(2, 2), cfg, tmp_path / "out" / "m")
    text = (tmp_path / "out" / "m.json").read_text()
    saved = json.loads(text)
    assert saved["trained_on"] == "hooker/train.tsv (3 lines)" and saved["compression"]["source"] == "base"
    assert str(tmp_path) not in text and "/home/" not in text


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tsv, capsys, monkeypatch):
    rc, _, err = run(["--debug", "evaluate", "/nonexistent/d.tsv"], capsys)
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1] == "error: /nonexistent/d.tsv: file not found"
    import inkpack.cli.run as cr

    def boom(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(cr, "evaluate_lines", boom)
    with pytest.raises(ValueError, match="a bug"):  # not an InkpackError: not swallowed into one line
        main(["evaluate", str(tsv)])


def test_saved_model_files_are_world_readable_like_the_rest(tmp_path):
    """safetensors creates its files 0600; a model file a user receives is 0644 like the JSON."""
    import stat

    import torch

    from inkpack.models.io import save_model

    stem = save_model(torch.nn.Linear(2, 2), {"arch": "x", "alphabet": {"symbols": ["a"]}}, tmp_path / "m")
    for suffix in (".safetensors", ".json"):
        assert stat.S_IMODE(stem.with_suffix(suffix).stat().st_mode) == 0o644, suffix
