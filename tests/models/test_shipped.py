"""The shipped models load, fit the size limit, and the teacher reads the bundled sample lines."""

import json
from pathlib import Path

import pytest

from inkpack.cli import main
from inkpack.models.io import read_config

MODELS = Path(__file__).resolve().parents[2] / "models"
SAMPLES = MODELS.parent / "samples" / "hooker" / "samples.tsv"


@pytest.mark.parametrize("stem", sorted(p.with_suffix("") for p in MODELS.glob("*.json")), ids=lambda p: p.name)
def test_shipped_model_fits_the_size_limit(stem):
    cfg = read_config(stem)
    files = [p for p in MODELS.glob(stem.name + ".*") if p.suffix != ".json"]
    assert files and all(p.stat().st_size <= 20 * 1024 * 1024 for p in files), files
    assert cfg["arch"]


def test_teacher_is_a_float16_vgg_with_the_students_alphabet_and_reads_the_samples(tmp_path):
    t, s = read_config(MODELS / "hooker-vgg"), read_config(MODELS / "hooker-darknet")
    assert t["arch"] == "vgg-dblstm" and t["weights_dtype"] == "float16"
    assert t["alphabet"] == s["alphabet"]  # its DBLSTM + IP head can be copied into the student
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(SAMPLES), "--model", str(MODELS / "hooker-vgg"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["lines"] == 8 and res["cer"] < 0.4  # 24.3% over the 689 val lines these 8 come from
