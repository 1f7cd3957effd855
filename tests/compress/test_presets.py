"""`inkpack compress --recipe PRESET` reproduces the shipped compressed model end to end."""

import argparse
import json
from pathlib import Path

import pytest

from inkpack.cli.compress import add_parsers
from inkpack.compress.commands import compress
from inkpack.compress.recipe import PRESETS

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_hooker_darknet_int8_preset_rebuilds_the_shipped_file(tmp_path):
    shipped = MODELS / "hooker-darknet-int8"
    if not shipped.with_suffix(".json").exists():
        pytest.skip("models/hooker-darknet-int8 is not in this checkout")
    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers())
    out = tmp_path / "again"
    args = p.parse_args(["compress", str(MODELS / PRESETS["hooker-darknet-int8"]["source"]),
                         "--recipe", "hooker-darknet-int8", "--out", str(out)])
    _, comp = compress(args, log=lambda m: None)
    assert comp["preset"] == "hooker-darknet-int8" and comp["recipe"] == "int8"
    assert out.with_suffix(".safetensors").read_bytes() == shipped.with_suffix(".safetensors").read_bytes()
    got, want = (json.loads(f.with_suffix(".json").read_text()) for f in (out, shipped))
    for d in (got, want):
        d["compression"].pop("preset", None)
        d["compression"].pop("source")
        d.pop("trained_on")  # written relative to the output folder
    assert got == want
