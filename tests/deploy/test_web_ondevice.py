"""The web page recognizing on the device (onnxruntime-web in headless Chromium): the int8 models
written by ``inkpack web`` run in the page, with no request to the recognition API, from a plain
static file server, and after the server is stopped (a reload served by the service worker)."""

from __future__ import annotations

import base64
import functools
import http.server
import threading
from pathlib import Path

import pytest
from deploy_helpers import line_png, make_line_model, train_char_model
from test_web import Recording, _draw, serve_in_thread, start_chromium  # skips without Chromium

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HORIZONTAL = [(-120 + 15 * i, 0) for i in range(17)]
VERTICAL = [(0, -100 + 12 * i) for i in range(17)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return train_char_model(root / "char"), make_line_model(root)


@pytest.fixture(scope="module")
def bundle(models, tmp_path_factory) -> Path:
    from inkpack.deploy.webbundle import build_web

    out = tmp_path_factory.mktemp("site")
    manifest = build_web(out, char_model=str(models[0]), line_model=str(models[1]))
    assert set(manifest["models"]) == {"char", "line"}
    return out


@pytest.fixture
def browser():
    drv = start_chromium()  # a fresh profile per test: no service worker or cache left over
    yield drv
    drv.quit()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a) -> None:
        pass


def _wait(drv, cond, timeout: float = 30):
    WebDriverWait(drv, timeout, poll_frequency=0.05).until(cond)


def _on_device(drv) -> None:
    _wait(drv, lambda d: d.find_element(By.ID, "models").text.startswith("on this device:"))


def _candidates(drv) -> list[str]:
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "#candidates li")
          and d.find_element(By.ID, "ink-status").text == "")
    return [li.get_attribute("data-text") for li in drv.find_elements(By.CSS_SELECTOR, "#candidates li")]


def _write_and_read(drv) -> None:
    _draw(drv, HORIZONTAL)
    assert _candidates(drv)[0] == "一"
    drv.find_element(By.ID, "clear").click()
    _draw(drv, VERTICAL, kind="pen")
    assert _candidates(drv)[0] == "丨"
    assert float(drv.find_element(By.ID, "candidates").get_attribute("data-ms")) > 0  # timed in the page


def test_served_page_recognizes_on_the_device_not_the_server(models, bundle, browser, tmp_path):
    from inkpack.api import load
    from inkpack.deploy.server import create_app

    ink, line = Recording(load(str(models[0]))), load(str(models[1]))
    srv, th, url = serve_in_thread(create_app(line, ink, web_models=bundle / "web" / "models"))
    try:
        browser.get(url + "/")
        _on_device(browser)
        assert browser.find_element(By.ID, "mode-row").is_displayed()  # the switch to the server
        _write_and_read(browser)
        assert ink.answers == []  # no round-trip: the page ran the model itself
        png = tmp_path / "line.png"
        png.write_bytes(line_png("hello world"))
        browser.find_element(By.ID, "line-file").send_keys(str(png))
        _wait(browser, lambda d: d.find_element(By.ID, "line-result").get_attribute("data-ms"))
        shown = "".join(s.get_attribute("textContent")
                        for s in browser.find_elements(By.CSS_SELECTOR, "#line-result span"))
        assert shown == load(str(bundle / "web" / "models" / "line.onnx")).recognize(str(png)).text

        # asked for the server (the URL parameter): the same stroke goes to the API
        browser.get(url + "/?server=1")
        _wait(browser, lambda d: "tiny" in d.find_element(By.ID, "models").text
              and not d.find_element(By.ID, "models").text.startswith("on this device"))
        assert browser.find_element(By.ID, "use-server").is_selected()
        _draw(browser, HORIZONTAL)
        assert _candidates(browser)[0] == "一" and len(ink.answers) == 1
    finally:
        srv.should_exit = True
        th.join(10)


def test_static_site_works_offline_after_the_first_load(bundle, browser):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(bundle)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        browser.get(url + "/")
        _on_device(browser)
        _write_and_read(browser)
        # the service worker (active once it has stored the page, the runtime and the models)
        cached = browser.execute_async_script(
            "const done = arguments[0]; navigator.serviceWorker.ready.then(() => caches.open('inkpack-web-v1'))"
            ".then((c) => c.keys()).then((k) => done(k.map((r) => new URL(r.url).pathname)));")
        assert {"/", "/web/models/manifest.json", "/web/models/ort-wasm-simd-threaded.wasm.gz"} <= set(cached)
        # the page downloaded the gzip copies of the runtime and the models, never the plain files
        got = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name);")
        assert any(u.split("?")[0].endswith("/web/models/line.onnx.gz") for u in got)
        assert not any(u.split("?")[0].endswith((".wasm", ".onnx")) for u in got)
    finally:
        srv.shutdown()
        srv.server_close()
    # the network cut: nothing listens any more, yet a reload shows the page and it still recognizes
    browser.get(url + "/")
    _on_device(browser)
    _write_and_read(browser)


def test_page_results_equal_python_on_the_same_input(models, bundle, browser, tmp_path):
    """The whole on-device path (features, int8 model in onnxruntime-web, decoding) against Python's
    recognizer on the same int8 file: characters (top-5 and probabilities), an online line model
    (CTC text), a line image (text, confidences, positions)."""
    import numpy as np
    from deploy_helpers import make_ink_model

    from inkpack.api import load
    from inkpack.deploy.webbundle import build_web

    online = tmp_path / "online-site"
    build_web(online, char_model=str(make_ink_model(tmp_path / "m", arch="online-blstm", seed=3)), with_line=False)
    rng = np.random.default_rng(5)
    inks = [[(rng.uniform(0, 300, 2) + np.cumsum(rng.normal(0, 8, (int(rng.integers(2, 40)), 2)), 0)).round(1).tolist()
             for _ in range(int(rng.integers(1, 4)))] for _ in range(6)]
    run_ink = ("const [s, done] = arguments; InkpackDevice.recognizeInk(s, 5).then(done, (e) => done({error: String(e)}));")
    for site, onnx in ((bundle, "ink.onnx"), (online, "ink.onnx")):
        py = load(str(site / "web" / "models" / onnx))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            browser.get(f"http://127.0.0.1:{srv.server_address[1]}/")
            _on_device(browser)
            for strokes in inks:
                got, want = browser.execute_async_script(run_ink, strokes), py.recognize({"strokes": strokes})
                assert got["text"] == want.text
                assert [c["text"] for c in got["candidates"]] == [c for c, _ in want.candidates]
                np.testing.assert_allclose([c["probability"] for c in got["candidates"]],
                                           [p for _, p in want.candidates], rtol=0, atol=2e-3)
            if site == bundle:
                png = tmp_path / "line.png"
                png.write_bytes(line_png("on the device"))
                got = browser.execute_async_script(
                    "const [b64, done] = arguments; const b = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));"
                    "InkpackDevice.recognizeLine(new Blob([b], {type: 'image/png'})).then(done, (e) => done({error: String(e)}));",
                    base64.b64encode(png.read_bytes()).decode())
                want = load(str(site / "web" / "models" / "line.onnx")).recognize(str(png))
                assert got["text"] == want.text and [list(p) for p in want.positions] == got["positions"]
                np.testing.assert_allclose(got["confidences"], want.confidences, rtol=0, atol=2e-3)
        finally:
            srv.shutdown()
            srv.server_close()
