"""On-device recognition in a real browser: headless Chromium runs the page written by
``inkpack web`` (onnxruntime-web, WebAssembly, one thread) over N samples.

Characters: synthetic hanzi from the repository's synthesizer (the fixed validation seed; needs
``shared/data/hanzi``). Lines: Hooker validation lines (``shared/data/hooker/val.tsv``; skipped
with a message when absent). Per sample the page's own recognition call is timed in the page
(``InkpackDevice.recognizeInk`` / ``recognizeLine``: preprocessing, model, decoding; the line's
image decoded by the browser); the first call and the steady state (median of the others) are
reported, with the bytes the page downloaded (Resource Timing) and the agreement with the Python
recognizer on the same samples: the same int8 ONNX file in Python's ONNX Runtime, and the PyTorch
model it was exported from.

    python benchmarks/browser.py [--quick] [--json OUT] [--chars N] [--lines N]
"""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import SHARED, machine, parser, table, write_json

import inkpack
from inkpack.deploy.webbundle import DEFAULT_CHAR_MODEL, build_web

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900"]
GOALS = {"char": {"bytes": 1_000_000, "ms": 20.0}, "line": {"bytes": 3_000_000, "ms": 60.0}, "identical": 0.99}


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a) -> None:
        pass


def static_server(root: Path):
    """``python -m http.server`` for ``root`` on a free loopback port, in a thread."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_script_timeout(120)
    return drv


def open_page(drv, url: str) -> dict:
    drv.get(url + "/")
    t0 = time.perf_counter()
    info = drv.execute_async_script("const done = arguments[0]; InkpackDevice.init().then(done, (e) => done({error: String(e)}));")
    if not info or "error" in info:
        raise SystemExit(f"browser: the page has no on-device models ({info})")
    info["ready_s"] = round(time.perf_counter() - t0, 3)
    res = drv.execute_script("return performance.getEntriesByType('resource').map("
                             "(e) => [e.name, e.encodedBodySize, e.transferSize]);")
    info["downloads"] = {name.split("/web/", 1)[-1].split("?")[0]: size for name, size, _ in res}
    manifest = drv.execute_script("return fetch('web/models/manifest.json').then((r) => r.json());")
    for kind, m in manifest["models"].items():  # what the page fetched for the model: its gzip copy or the file
        info[kind]["downloaded"] = info["downloads"].get(f"models/{m.get('gz')}") or info["downloads"].get(
            f"models/{m['file']}", 0)
    return info


RUN_INK = """const [strokes, done] = arguments;
InkpackDevice.recognizeInk(strokes, 5).then((r) => done({text: r.text, ms: r.ms}), (e) => done({error: String(e)}));"""
RUN_LINE = """const [b64, mime, done] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const t0 = performance.now();
InkpackDevice.grayOf(new Blob([bytes], {type: mime})).then((g) => {
  const decodeMs = performance.now() - t0;
  let bin = "";
  for (let i = 0; i < g.gray.length; i += 8192) bin += String.fromCharCode.apply(null, g.gray.subarray(i, i + 8192));
  return InkpackDevice.recognizeGray(g.gray, g.width, g.height).then((r) =>
    done({text: r.text, ms: r.ms, decode_ms: decodeMs, gray: btoa(bin), width: g.width, height: g.height}));
}).catch((e) => done({error: String(e)}));"""


def char_samples(n: int):
    from inkpack.data.hanzi_synth import HanziSynthDataset, load_charset

    root = SHARED / "data" / "hanzi"
    if not (root / "medians.json.gz").is_file():
        print(f"chars: skipped ({root}/medians.json.gz is absent)", file=sys.stderr)
        return []
    chars = load_charset(root / "gb2312_level1.txt")
    ds = HanziSynthDataset.validation(root / "medians.json.gz", chars)
    step = max(1, len(ds) // n)
    return [ds.ink(i)[0] for i in range(0, step * n, step)][:n]


def line_samples(n: int):
    tsv = SHARED / "data" / "hooker" / "val.tsv"
    if not tsv.is_file():
        print(f"lines: skipped ({tsv} is absent)", file=sys.stderr)
        return []
    rows = [r.split("\t") for r in tsv.read_text(encoding="utf-8").splitlines()[1:] if r.strip()]
    step = max(1, len(rows) // n)
    return [(tsv.parent / rows[i][0], rows[i][1]) for i in range(0, len(rows), step)][:n]


def summary(kind: str, ms: list[float], texts: list[str], refs: dict, model: dict, n_err: int) -> dict:
    steady = ms[1:] or ms
    out = {"samples": len(ms), "errors": n_err, "first_ms": round(ms[0], 2) if ms else None,
           "steady_median_ms": round(statistics.median(steady), 2) if ms else None,
           "steady_mean_ms": round(statistics.fmean(steady), 2) if ms else None,
           "steady_p90_ms": round(sorted(steady)[int(0.9 * (len(steady) - 1))], 2) if ms else None,
           "model_bytes": model["bytes"], "model_bytes_downloaded": model["downloaded"], "identical": {}}
    for ref_name, ref in refs.items():
        same = sum(a == b for a, b in zip(texts, ref))
        out["identical"][ref_name] = round(same / max(1, len(ref)), 4)
    g = GOALS[kind]
    out["goals"] = {"bytes": model["downloaded"] <= g["bytes"], "ms": bool(ms) and out["steady_median_ms"] <= g["ms"],
                    "identical": out["identical"].get("python_onnx_int8", 0) >= GOALS["identical"]}
    return out


def run_chars(drv, inks, bundle: Path, info: dict) -> dict | None:
    if not inks:
        return None
    got = [drv.execute_async_script(RUN_INK, [s.tolist() for s in ink.strokes]) for ink in inks]
    errors = [g for g in got if "error" in g]
    onnx = inkpack.load(str(bundle / "web" / "models" / "ink.onnx"))
    torch_model = inkpack.load(DEFAULT_CHAR_MODEL, decoder="greedy")
    strokes = [{"strokes": [s.tolist() for s in ink.strokes]} for ink in inks]
    refs = {"python_onnx_int8": [onnx.recognize(s).text for s in strokes],
            "python_torch_fp32": [torch_model.recognize(s).text for s in strokes],
            "truth": [ink.label for ink in inks]}
    ok = [g for g in got if "error" not in g]
    out = summary("char", [g["ms"] for g in ok], [g.get("text") for g in got], refs, info["char"],
                  len(errors))
    out["differs_from_python_onnx"] = [{"sample": i, "page": g.get("text"), "python": ref}
                                       for i, (g, ref) in enumerate(zip(got, refs["python_onnx_int8"]))
                                       if g.get("text") != ref]
    return out


def run_lines(drv, samples, bundle: Path, info: dict) -> dict | None:
    from inkpack.metrics import cer

    if not samples:
        return None
    paths, truth = [p for p, _ in samples], [t for _, t in samples]
    got = []
    for p in paths:
        mime = "image/png" if p.suffix.lower() == ".png" else "image/jpeg"
        got.append(drv.execute_async_script(RUN_LINE, base64.b64encode(p.read_bytes()).decode(), mime))
    onnx = inkpack.load(str(bundle / "web" / "models" / "line.onnx"))
    torch_model = inkpack.load(None, decoder="greedy")  # the page decodes greedily
    refs = {"python_onnx_int8": [r.text for r in onnx.recognize([str(p) for p in paths])],
            "python_torch_fp32": [r.text for r in torch_model.recognize([str(p) for p in paths])]}
    ok = [g for g in got if "error" not in g]
    out = summary("line", [g["ms"] for g in ok], [g.get("text") for g in got], refs, info["line"],
                  len(got) - len(ok))
    out["decode_median_ms"] = round(statistics.median(g["decode_ms"] for g in ok), 2) if ok else None
    out["cer"] = {"page": round(cer([g.get("text") or "" for g in got], truth), 4),
                  **{k: round(cer(v, truth), 4) for k, v in refs.items()}}
    out["gray_identical_to_pil"] = round(sum(_same_gray(g, p) for g, p in zip(got, paths)) / len(paths), 4)
    out["differs_from_python_onnx"] = [
        {"image": str(p), "page": g.get("text"), "python": ref, "gray_identical": _same_gray(g, p)}
        for g, p, ref in zip(got, paths, refs["python_onnx_int8"]) if g.get("text") != ref]
    return out


def _same_gray(g: dict, path: Path) -> bool:
    """Whether the browser decoded the image to the very gray pixels Python's loader gives."""
    import numpy as np

    from inkpack.data.images import load_gray

    if "gray" not in g:
        return False
    page = np.frombuffer(base64.b64decode(g["gray"]), np.uint8).reshape(g["height"], g["width"])
    ref = load_gray(str(path))
    return page.shape == ref.shape and bool((page == ref).all())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--chars", type=int, help="character samples (default: 300, quick: 20)")
    p.add_argument("--lines", type=int, help="line samples (default: 100, quick: 8)")
    args = p.parse_args()
    n_chars = args.chars or (20 if args.quick else 300)
    n_lines = args.lines or (8 if args.quick else 100)
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        raise SystemExit("browser: Chromium or chromedriver is absent (apt-get install chromium chromium-driver)")
    with tempfile.TemporaryDirectory(prefix="inkpack-web-") as tmp:
        bundle = Path(tmp) / "site"
        manifest = build_web(bundle)
        srv, url = static_server(bundle)
        drv = chromium()
        try:
            info = open_page(drv, url)
            chars = run_chars(drv, char_samples(n_chars), bundle, info)
            lines = run_lines(drv, line_samples(n_lines), bundle, info)
            browser = drv.capabilities.get("browserVersion")
        finally:
            drv.quit()
            srv.shutdown()
    rows = []
    for kind, r in (("char", chars), ("line", lines)):
        if r:
            rows.append((kind, info[kind]["name"], f"{r['model_bytes'] / 1e6:.2f}",
                         f"{r['model_bytes_downloaded'] / 1e6:.2f}", r["samples"], r["first_ms"],
                         r["steady_median_ms"], r["identical"].get("python_onnx_int8"),
                         r["identical"].get("python_torch_fp32")))
    print(table(rows, ("model", "name", "MB", "MB downloaded", "n", "first ms", "steady ms (median)", "same as py-onnx",
                       "same as py-torch")))
    runtime = info["downloads"]
    print(f"page ready in {info['ready_s']} s; downloaded: " +
          ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in runtime.items() if v > 100_000))
    write_json(args.json, {"benchmark": "browser", "quick": args.quick, "machine": machine(),
                           "browser": f"Chromium {browser} (headless, selenium)",
                           "runtime": manifest["runtime"], "backend": "wasm (SIMD), 1 thread",
                           "page_ready_s": info["ready_s"], "downloads_bytes": runtime,
                           "session_create_ms": {k: round(info[k]["createMs"], 1) for k in ("char", "line") if k in info},
                           "goals": GOALS, "char": chars, "line": lines})


if __name__ == "__main__":
    main()
