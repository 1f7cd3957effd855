"""The one model-file format: ``NAME.safetensors`` (weights) + ``NAME.json`` (config).

Every reader of a recognizer goes through :func:`load_model` (recognize, the Python API, the
service, export, warm start, ``report``, compression); every writer through :func:`save_model`.
(The page segmenter, a network outside the registry, is read by :mod:`inkpack.segment.model`.)
A compressed model (a ``compression`` record, written by ``inkpack compress``) is the same
format: its structure is rebuilt on the base model (:mod:`inkpack.compress.structure`) before
its weights (``NAME.safetensors``, or the k-means file ``NAME.npz``) are read, and dynamic int8
is applied after them.

The JSON holds everything needed to rebuild and feed the model: architecture name and
options, the alphabet, the preprocessing (image height), optionally the model's own decoder
(``decoder``: the options of :class:`inkpack.decode.beam.Decoder`, its ``lm`` a character ARPA
file named relative to the JSON; read into an absolute path, copied beside any model written
from it) and, for reference, the figures measured when it was saved.

Reading checks the JSON against a schema (``MODEL_SCHEMA``: the type of every known field) and
raises a one-line ``ModelFileError`` naming the file and field. Writing makes the JSON
portable: strict JSON (no ``NaN``/``Infinity``), file paths relative to the data root
(``INKPACK_DATA`` or ``../shared/data``) or the repository, never absolute paths of the
machine, and ``trained_on`` as ``"FILE (N lines)"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError, ModelFileError
from inkpack.jsonio import read_text
from inkpack.models import build_model

REPO = Path(__file__).resolve().parents[3]
REPO_MODELS = REPO / "models"
DEFAULT_OFFLINE = "hooker-darknet"
# field -> allowed JSON types (``None`` in the tuple: null allowed); absent fields are fine
# unless listed in ``required``
MODEL_SCHEMA: dict[str, tuple] = {
    "arch": (str,), "alphabet": (dict,), "options": (dict,), "preprocessing": (dict,),
    "input_kind": (str,), "metrics": (dict, None), "compression": (dict,), "weights_dtype": (str,),
    "trained_on": (str, dict, None), "onnx": (dict,), "classes": (str,), "decoder": (dict,),
}
ALPHABET_SCHEMA: dict[str, tuple] = {"symbols": (str, list), "with_unk": (bool,)}
INPUT_KINDS = ("image", "ink", "char")
_JSON_NAMES = {str: "a string", dict: "an object", list: "a list", bool: "true or false",
               int: "an integer", float: "a number", None: "null"}


def data_root() -> Path:
    return Path(os.environ.get("INKPACK_DATA", REPO.parent / "shared" / "data"))


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
        hint = (f"; the bundled models are in the repository's models/ folder: set INKPACK_MODELS to it "
                f"or pass --model" if not models_dir().is_dir() else "")
        raise ModelFileError(f"{path}: model not found (expected {p.with_suffix('.json')}){hint}")
    return p


def portable_path(path: str | os.PathLike) -> str:
    """``path`` relative to the data root or the repository when under one of them, else as
    given when relative, else its file name: nothing machine-specific goes into a model file."""
    p = Path(path)
    full = p.resolve() if p.exists() or p.is_absolute() else None
    if full is not None:
        for root in (data_root(), REPO):
            try:
                return full.relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
    return p.as_posix() if not p.is_absolute() else p.name


def _count_lines(p: Path) -> int | None:
    """Data rows of a TSV manifest or text file (header excluded for TSV); None for others."""
    if not p.is_file() or p.suffix.lower() not in (".tsv", ".txt"):
        return None
    try:
        with open(p, encoding="utf-8-sig") as f:
            rows = [ln for ln in f if ln.strip() and not ln.startswith("#")]
    except (OSError, UnicodeDecodeError):
        return None
    header = p.suffix.lower() == ".tsv" and rows and rows[0].split("\t")[0].strip().lower() == "image"
    return len(rows) - int(bool(header))


def describe_data(path: str | os.PathLike | None, lines: int | None = None) -> str | None:
    """``trained_on`` for a data path: ``"hooker/train.tsv (5524 lines)"``."""
    if path is None or str(path) == "":
        return None
    n = lines if lines is not None else _count_lines(Path(path))
    name = portable_path(path)
    return f"{name} ({n} lines)" if n is not None else name


def portable_config(config: dict) -> dict:
    """``config`` with ``trained_on`` described (file + line count) and every other string that
    is an absolute path of this machine made relative (``compression.source`` and the like)."""
    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, str) and os.path.isabs(v) and "\n" not in v and len(v) < 4096:
            return portable_path(v)
        return v

    out = fix(dict(config))
    t = config.get("trained_on")
    if isinstance(t, str) and t and " (" not in t and Path(t).exists():
        out["trained_on"] = describe_data(t)
    return out


def resolve_decoder_files(cfg: dict, json_path: Path) -> dict:
    """``cfg`` with its ``decoder.lm`` (a file named relative to the model JSON) made absolute,
    so that the config can be used and re-saved from anywhere; a field of the wrong type or a
    missing file is a ``ModelFileError`` naming the JSON and the field."""
    dec = cfg.get("decoder")
    if not dec or dec.get("lm") is None:
        return cfg
    lm = dec["lm"]
    if not isinstance(lm, str) or not lm:
        raise ModelFileError(f"{json_path}: field 'decoder.lm' must be a file name, got {lm!r}")
    full = (Path(json_path).parent / lm).resolve()
    if not full.is_file():
        raise ModelFileError(f"{json_path}: field 'decoder.lm': language model {full.name} not found "
                             f"beside the model (expected {full})")
    return {**cfg, "decoder": {**dec, "lm": str(full)}}


def place_decoder_files(config: dict, out_dir: Path) -> dict:
    """``config`` to be written into ``out_dir``: a ``decoder.lm`` elsewhere is copied there (same
    name; an existing file of that name with other contents is an error) and named bare."""
    import filecmp
    import shutil

    dec = config.get("decoder")
    if not dec or not dec.get("lm"):
        return config
    src = Path(dec["lm"])
    dst = Path(out_dir) / src.name
    if not src.is_file():
        raise InkpackError(f"{src}: the model's language model (decoder.lm) is missing")
    if src.resolve() != dst.resolve():
        if dst.exists() and not filecmp.cmp(src, dst, shallow=False):
            raise InkpackError(f"{dst}: exists and is not the model's language model {src}; "
                               "write the model into another folder")
        if not dst.exists():
            shutil.copyfile(src, dst)
    return {**config, "decoder": {**dec, "lm": src.name}}


def save_model(model: nn.Module, config: dict, stem: str | Path, half: bool = False) -> Path:
    from inkpack.jsonio import dumps, publish

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    config = portable_config(place_decoder_files(config, stem.parent))
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp = stem.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp))
    publish(tmp, stem.with_suffix(".safetensors"))
    tmpj = stem.with_suffix(".json.tmp")
    tmpj.write_text(dumps(config, indent=2) + "\n", encoding="utf-8")
    publish(tmpj, stem.with_suffix(".json"))
    return stem


def _type_names(types: tuple) -> str:
    return " or ".join(_JSON_NAMES.get(t, str(t)) for t in types)


def _check_fields(obj: dict, schema: dict[str, tuple], where: str) -> None:
    for key, types in schema.items():
        if key not in obj:
            continue
        v = obj[key]
        ok = (v is None and None in types) or any(
            t is not None and isinstance(v, t) and not (t in (int, float) and isinstance(v, bool)) for t in types)
        if not ok:
            raise ModelFileError(f"{where}field {key!r} must be {_type_names(types)}, "
                                 f"got {type(v).__name__} {str(v)[:40]!r}")


def validate_model_json(cfg, p: Path | str, required: tuple[str, ...] = ("arch", "alphabet")) -> dict:
    """``cfg`` checked against ``MODEL_SCHEMA``; a ``ModelFileError`` names the file and field."""
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{p}: expected a JSON object, got {type(cfg).__name__}")
    if cfg.get("task") == "segment":  # a page segmenter (inkpack.segment) has no alphabet
        required = tuple(k for k in required if k != "alphabet")
    for key in required:
        if key not in cfg:
            raise ModelFileError(f"{p}: missing field {key!r}")
    _check_fields(cfg, MODEL_SCHEMA, f"{p}: ")
    if "alphabet" in cfg:
        _check_fields(cfg["alphabet"], ALPHABET_SCHEMA, f"{p}: alphabet: ")
        syms = cfg["alphabet"].get("symbols")
        if syms is None:
            raise ModelFileError(f"{p}: alphabet: missing field 'symbols'")
        if isinstance(syms, list) and not all(isinstance(c, str) for c in syms):
            raise ModelFileError(f"{p}: alphabet: field 'symbols' must be a string or a list of strings")
    if "input_kind" in cfg and cfg["input_kind"] not in INPUT_KINDS:
        raise ModelFileError(f"{p}: field 'input_kind' must be one of {', '.join(INPUT_KINDS)}, "
                             f"got {cfg['input_kind']!r}")
    height = (cfg.get("preprocessing") or {}).get("height")
    if height is not None and (isinstance(height, bool) or not isinstance(height, int) or height < 1):
        raise ModelFileError(f"{p}: field 'preprocessing.height' must be a positive integer, got {height!r}")
    return cfg


def read_json_fields(p: Path, required: tuple[str, ...]) -> dict:
    """A JSON object with the ``required`` keys and well-typed known fields, or a one-line
    ``ModelFileError`` naming the file and field."""
    text = read_text(p, ModelFileError, "a model JSON file")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{p}: invalid JSON ({e.msg} at line {e.lineno})") from None
    return validate_model_json(cfg, p, required)


def read_config(stem: str | Path) -> dict:
    p = Path(stem).with_suffix(".json")
    return resolve_decoder_files(read_json_fields(p, ("arch", "alphabet")), p)


def sidecar_path(onnx_path: str | Path) -> Path:
    """The config beside an exported ONNX file: ``model.onnx`` -> ``model.onnx.json``."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def is_onnx(path) -> bool:
    return path is not None and str(path).lower().endswith(".onnx")


def read_sidecar(onnx_path: str | Path) -> dict:
    """The sidecar config of an ONNX model (its ``alphabet`` and ``onnx`` facts), checked."""
    p = Path(onnx_path)
    if not p.is_file():
        raise ModelFileError(f"{p}: ONNX model not found")
    side = sidecar_path(p)
    if not side.is_file():
        raise ModelFileError(f"{p}: missing {side.name} (export with `inkpack export` to write it)")
    return resolve_decoder_files(read_json_fields(side, ("alphabet", "onnx")), side)


def input_kind(source) -> str:
    """What a model reads (``image``, ``ink`` or ``char``), the one place this is decided.

    ``source``: a model config or an ONNX sidecar (dict), or a model name/path (None: the bundled
    one; ``.onnx``: its sidecar). A sidecar's ``onnx.input_kind`` (what was exported) wins, then
    a config's ``input_kind``, else its architecture's (older files lack the field), else
    ``image``."""
    from inkpack.models import REGISTRY

    if not isinstance(source, dict):
        source = (read_sidecar(source) if is_onnx(source)
                  else read_config(resolve(None if source is None else str(source))))
    if "onnx" in source:
        return str(source["onnx"].get("input_kind") or "image")
    if source.get("input_kind"):
        return str(source["input_kind"])
    spec = REGISTRY.get(source.get("arch", ""))
    return spec.input_kind if spec is not None else "image"


def read_weights(path: Path, what: str = "weights") -> dict:
    """A safetensors file as float32 tensors (float16 storage is widened), or one line naming it."""
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for bad files
        raise ModelFileError(f"{path}: cannot read {what} ({e})") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_weights(model: nn.Module, path: Path, arch: str, what: str = "weights") -> None:
    """``path``'s tensors into ``model``; a mismatch names the file and the architecture."""
    state = read_weights(path, what)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelFileError(f"{path}: {what} do not fit architecture {arch!r} ({first})") from None


def load_compressed(model: nn.Module, comp: dict, stem: str | Path, int8: bool = True,
                    arch: str = "?") -> nn.Module:
    """A fresh base ``model`` with the recorded compression structure rebuilt, its weights
    loaded (safetensors or the k-means ``.npz``), in eval mode, dynamic int8 when flagged."""
    from inkpack.compress.structure import apply_int8, load_shared_npz, rebuild_structure

    stem = Path(stem)
    rebuild_structure(model, comp)
    if comp.get("weights") == "shared-npz":
        load_shared_npz(model, stem.with_suffix(".npz"))
    else:
        load_weights(model, stem.with_suffix(".safetensors"), arch, what="compressed weights")
    model.eval()
    return apply_int8(model, comp) if int8 else model


def load_model(path: str | None = None, *, int8: bool = True) -> tuple[nn.Module, dict, Alphabet]:
    """The model at ``path`` (None: the bundled one) in eval mode, its config and alphabet.
    ``int8=False`` skips the dynamic int8 step of a compressed model (its fp32 graph)."""
    stem = resolve(path)
    cfg = read_config(stem)
    if cfg.get("task") == "segment":  # same file format, no alphabet: inkpack.segment builds it
        raise ModelFileError(f"{stem.with_suffix('.json')}: a page segmentation model, not a recognizer "
                             "(use it with `inkpack segment` or inkpack.segment)")
    alphabet = Alphabet.from_dict(cfg["alphabet"])
    model = build_checked(cfg, alphabet, stem.with_suffix(".json"))
    if "compression" in cfg:  # rebuilt low-rank/Tucker structure, k-means file, int8 at load
        return load_compressed(model, cfg["compression"], stem, int8=int8, arch=cfg["arch"]), cfg, alphabet
    load_weights(model, stem.with_suffix(".safetensors"), cfg["arch"])
    model.eval()
    return model, cfg, alphabet


def build_checked(cfg: dict, alphabet: Alphabet, where: Path | str) -> nn.Module:
    """``build_model`` for a model JSON; an unknown architecture or option names the field."""
    try:
        return build_model(cfg["arch"], alphabet.num_classes, **cfg.get("options", {}))
    except InkpackError as e:
        raise ModelFileError(f"{where}: field 'arch': {e}") from None
    except (TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{where}: field 'options' does not fit architecture {cfg['arch']!r} ({first})") from None
