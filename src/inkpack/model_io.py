"""Shipped-model format: ``NAME.safetensors`` (weights) + ``NAME.json`` (config).

The JSON holds everything needed to rebuild and feed the model: architecture name and
options, the alphabet, the preprocessing (image height) and, for reference, the
figures measured when it was saved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError
from inkpack.models import build_model

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
DEFAULT_OFFLINE = "hooker-darknet"


def models_dir() -> Path:
    return Path(os.environ.get("INKPACK_MODELS", REPO_MODELS))


def resolve(path: str | None, default: str = DEFAULT_OFFLINE) -> Path:
    """Accept a stem, a .json or a .safetensors path, or a bundled model name."""
    if path is None:
        path = default
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    if not p.with_suffix(".json").exists() and (models_dir() / p.name).with_suffix(".json").exists():
        p = models_dir() / p.name
    if not p.with_suffix(".json").exists():
        raise InkpackError(f"{path}: model not found (expected {p.with_suffix('.json')})")
    return p


def save_model(model: nn.Module, config: dict, stem: str | Path, half: bool = False) -> Path:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp = stem.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, stem.with_suffix(".safetensors"))
    tmpj = stem.with_suffix(".json.tmp")
    tmpj.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmpj, stem.with_suffix(".json"))
    return stem


def read_json_fields(p: Path, required: tuple[str, ...]) -> dict:
    """A JSON object with the ``required`` keys, or a one-line error naming the file and field."""
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InkpackError(f"{p}: invalid JSON ({e.msg} at line {e.lineno})") from None
    for key in required:
        if key not in cfg:
            raise InkpackError(f"{p}: missing field {key!r}")
    return cfg


def read_config(stem: str | Path) -> dict:
    return read_json_fields(Path(stem).with_suffix(".json"), ("arch", "alphabet"))


def load_model(path: str | None = None) -> tuple[nn.Module, dict, Alphabet]:
    stem = resolve(path)
    cfg = read_config(stem)
    alphabet = Alphabet.from_dict(cfg["alphabet"])
    model = build_model(cfg["arch"], alphabet.num_classes, **cfg.get("options", {}))
    if "compression" in cfg:  # rebuilt low-rank/Tucker structure, k-means file, int8 at load
        from inkpack.compress.commands import load_compressed

        return load_compressed(model, cfg["compression"], stem), cfg, alphabet
    wpath = stem.with_suffix(".safetensors")
    try:
        state = load_file(str(wpath))
    except Exception as e:  # safetensors raises several types for bad files
        raise InkpackError(f"{wpath}: cannot read weights ({e})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise InkpackError(f"{wpath}: weights do not fit architecture {cfg['arch']!r} ({first})") from None
    model.eval()
    return model, cfg, alphabet
