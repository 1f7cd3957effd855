"""The web page as static files, with on-device models: ``inkpack web --out DIR``.

``DIR`` is served as is by any static file server (``python -m http.server -d DIR``) or by
``inkpack serve --web-models DIR``; the page then recognizes in the browser with the vendored
onnxruntime-web (WebAssembly, one thread) and the int8 ONNX models written here::

    DIR/index.html, DIR/sw.js            the page and its service worker (offline reloads)
    DIR/web/*.js, DIR/web/style.css      the page's scripts (recognize.js: the pure functions)
    DIR/web/vendor/onnxruntime-web/      the runtime (see its VENDOR.json: version, sha256, licence)
    DIR/web/models/manifest.json         the on-device models: {"models": {"char"|"ink"|"line": ...}}
    DIR/web/models/*.onnx (+ .onnx.json) int8 ONNX and its sidecar (alphabet, preprocessing)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

from inkpack.errors import ConfigError, InkpackError

WEB = Path(__file__).resolve().parent / "web"
PAGE_FILES = ("style.css", "app.js", "pagescan.js", "recognize.js", "ondevice.js")
VENDOR = Path("vendor") / "onnxruntime-web"
VENDOR_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE", "VENDOR.json",
                "README.md")
DEFAULT_CHAR_MODEL = "hanzi-lstm-char"
DEFAULT_LINE_MODEL = None  # the bundled line model (inkpack.models.io.DEFAULT_OFFLINE)
MODELS_DIR = Path("web") / "models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def runtime_info() -> dict:
    meta = json.loads((WEB / VENDOR / "VENDOR.json").read_text(encoding="utf-8"))
    return {"package": meta["package"], "version": meta["version"], "backend": "wasm", "threads": 1}


def write_gz(src: Path, dst: Path) -> dict:
    """``dst`` = gzip of ``src`` (level 9, no name or time: the same bytes every build). The page
    downloads these and inflates them with ``DecompressionStream``: any static server sends fewer bytes."""
    data = src.read_bytes()
    dst.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    return {"gz": dst.name, "gz_bytes": dst.stat().st_size, "gz_sha256": sha256_of(dst)}


def _check_slot(slot: str, spec, config: dict) -> str:
    """The input kind of the model ``config`` (a model's or an ONNX sidecar's), if the page can
    run it in ``slot`` (``line``: an image model; ``ink``: an ink or character model reading
    point features); otherwise one line naming ``spec``."""
    from inkpack.models.io import input_kind

    kind = input_kind(config)
    if (slot == "line") != (kind == "image"):
        raise InkpackError(f"{spec}: {'an' if kind[:1] in 'aeiou' else 'a'} {kind} model cannot be the "
                           f"on-device {slot} model")
    feat = (config.get("preprocessing") or {}).get("features", "points")
    if kind != "image" and feat != "points":
        raise ConfigError(f"{spec}: preprocessing.features {feat!r}: the web page computes point features "
                          "only; use the Python recognizer or the server for this model")
    return kind


def export_web_models(out: str | Path, char_model=DEFAULT_CHAR_MODEL, line_model=DEFAULT_LINE_MODEL,
                      with_line: bool = True) -> dict:
    """int8 ONNX of the ink model (``char_model``: a character or online line model; None = none)
    and of the line model (when ``with_line``) into ``out`` plus ``manifest.json``; returns it."""
    from inkpack.deploy.export import export_onnx, sidecar_path
    from inkpack.models.io import DEFAULT_OFFLINE, is_onnx, read_config, read_sidecar, resolve

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    models = {}
    todo = ([("ink", char_model)] if char_model is not None else []) + ([("line", line_model)] if with_line else [])
    for slot, spec in todo:  # refuse a model the page cannot run before any (slow) export
        if not is_onnx(spec):
            _check_slot(slot, spec, read_config(resolve(None if spec is None else str(spec))))
    for slot, spec in todo:
        path = export_onnx(spec, out / f"{slot}.onnx", int8=True, decoder=False)  # the page decodes greedily
        kind = _check_slot(slot, spec, read_sidecar(path))  # what was written, read the one way
        name = Path(str(spec)).stem if spec is not None else DEFAULT_OFFLINE
        models["char" if kind == "char" else slot] = {
            "name": name, "file": path.name, "config": sidecar_path(path).name, "kind": kind,
            "bytes": path.stat().st_size, "sha256": sha256_of(path), "int8": True,
            **write_gz(path, path.with_name(path.name + ".gz"))}
    wasm = WEB / VENDOR / "ort-wasm-simd-threaded.wasm"
    runtime = {**runtime_info(), "wasm": wasm.name, "wasm_bytes": wasm.stat().st_size,
               **{"wasm_" + k: v for k, v in write_gz(wasm, out / (wasm.name + ".gz")).items()}}
    manifest = {"version": 1, "runtime": runtime, "models": models}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def copy_page(out: str | Path) -> Path:
    """The page, its scripts, the service worker and the vendored runtime into ``out``."""
    out = Path(out)
    try:
        (out / "web" / VENDOR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WEB / "index.html", out / "index.html")
        shutil.copyfile(WEB / "sw.js", out / "sw.js")
        for f in PAGE_FILES:
            shutil.copyfile(WEB / f, out / "web" / f)
        for f in VENDOR_FILES:
            shutil.copyfile(WEB / VENDOR / f, out / "web" / VENDOR / f)
    except FileNotFoundError as e:
        raise InkpackError(f"{e.filename}: a web page file is missing from the installed package") from None
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the web page ({e.strerror or e})") from None
    return out


def build_web(out: str | Path, char_model=DEFAULT_CHAR_MODEL, line_model=DEFAULT_LINE_MODEL,
              with_line: bool = True) -> dict:
    """``inkpack web --out DIR``: the page, the runtime and the int8 models; returns the manifest."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out must be a folder")
    copy_page(out)
    return export_web_models(out / MODELS_DIR, char_model, line_model, with_line)


def models_dir(path: str | Path) -> Path:
    """The folder holding ``manifest.json``: ``path`` itself or its ``web/models``."""
    p = Path(path)
    for cand in (p, p / MODELS_DIR):
        if (cand / "manifest.json").is_file():
            return cand
    raise ConfigError(f"{p}: no on-device models here (write them with `inkpack web --out {p}`)")
