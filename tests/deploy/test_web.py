"""The web page in a real headless Chromium: write with pointer events, read the candidates.

The ink model is a tiny lstm-char really trained (in the fixture, ~2 s) to tell 一 / 丨 / 〇
apart, so drawing a horizontal bar must put 一 first, a vertical bar 丨, and the list the page
shows must be the one the server answered.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from deploy_helpers import line_png, make_line_model, train_char_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900"]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
    pytest.skip("Chromium or chromedriver is absent (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_line_model(tmp_path_factory.mktemp("models"))


class Recording:
    """The real recognizer, keeping what it answered (to compare with what the page shows)."""

    def __init__(self, rec) -> None:
        self.rec, self.answers = rec, []
        self.input_kind, self.name = rec.input_kind, rec.name

    def info(self) -> dict:
        return self.rec.info()

    def prepare_input(self, x):
        return self.rec.prepare_input(x)

    def run_prepared(self, items):
        out = self.rec.run_prepared(items)
        self.answers.extend(out)
        return out


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    from inkpack.api import load
    from inkpack.deploy.server import create_app

    ink = Recording(load(str(train_char_model(tmp_path_factory.mktemp("char")))))
    line = load(str(tiny_model))
    srv, th, url = serve_in_thread(create_app(line, ink))
    yield url, ink, line
    srv.should_exit = True
    th.join(10)


def serve_in_thread(app):
    """uvicorn on a free loopback port in a daemon thread: (server, thread, base URL)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    return srv, th, f"http://127.0.0.1:{port}"


def start_chromium(log_console: bool = False):
    """Headless Debian Chromium through chromedriver (the browser console kept when asked)."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    if log_console:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_page_load_timeout(20)
    return drv


@pytest.fixture(scope="module")
def browser():
    drv = start_chromium()
    yield drv
    drv.quit()


def _draw(drv, points: list[tuple[int, int]], kind: str = "mouse") -> None:
    """One stroke through ``points`` (offsets from the canvas centre) as W3C pointer actions."""
    pad = drv.find_element(By.ID, "pad")
    if kind == "mouse":
        chain = ActionChains(drv, duration=10).move_to_element_with_offset(pad, *points[0]).click_and_hold()
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            chain = chain.move_by_offset(x1 - x0, y1 - y0)
        chain.release().perform()
        return
    builder = ActionBuilder(drv, mouse=PointerInput(kind, kind), duration=10)
    builder.pointer_action.move_to(pad, *points[0]).pointer_down()
    for x, y in points[1:]:
        builder.pointer_action.move_to(pad, x, y)
    builder.pointer_action.pointer_up()
    builder.perform()


def _candidates(drv, n_answers: int, ink) -> list[str]:
    def ready(d) -> bool:
        return (len(ink.answers) >= n_answers and bool(d.find_elements(By.CSS_SELECTOR, "#candidates li"))
                and d.find_element(By.ID, "ink-status").text == "")

    WebDriverWait(drv, 15, poll_frequency=0.05).until(ready)
    return [li.get_attribute("data-text") for li in drv.find_elements(By.CSS_SELECTOR, "#candidates li")]


def test_drawing_shows_the_models_candidates(server, browser):
    url, ink, _ = server
    browser.get(url + "/")
    WebDriverWait(browser, 15, poll_frequency=0.05).until(
        lambda d: "tiny-char (characters)" in d.find_element(By.ID, "models").text)
    horizontal = [(-120 + 15 * i, 0) for i in range(17)]
    _draw(browser, horizontal)
    shown = _candidates(browser, 1, ink)
    assert shown[0] == "一"
    assert shown == [c for c, _ in ink.answers[-1].candidates]  # rendered from the real response
    assert browser.find_element(By.ID, "stroke-count").text == "1 stroke"

    browser.find_element(By.ID, "clear").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#candidates li") == []
    vertical = [(0, -100 + 12 * i) for i in range(17)]
    _draw(browser, vertical, kind="pen")
    shown = _candidates(browser, 2, ink)
    assert shown[0] == "丨" and shown == [c for c, _ in ink.answers[-1].candidates]

    # a second stroke, then undo: the page asks again and shows the one-stroke answer
    _draw(browser, horizontal)
    _candidates(browser, 3, ink)
    browser.find_element(By.ID, "undo").click()
    shown = _candidates(browser, 4, ink)
    assert browser.find_element(By.ID, "stroke-count").text == "1 stroke"
    assert shown[0] == "丨"


def test_line_upload_colours_each_character(server, browser, tmp_path):
    url, _, line = server
    path = tmp_path / "line.png"
    path.write_bytes(line_png("hello world"))
    expected = line.recognize(str(path))
    browser.get(url + "/")
    browser.find_element(By.ID, "line-file").send_keys(str(path))
    WebDriverWait(browser, 15, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "line-status").text == ""
        and d.find_elements(By.CSS_SELECTOR, "#line-result span"))
    spans = browser.find_elements(By.CSS_SELECTOR, "#line-result span")
    assert "".join(s.get_attribute("textContent") for s in spans) == expected.text
    for s, c in zip(spans, expected.confidences):
        want = "conf-high" if c >= 0.9 else "conf-mid" if c >= 0.6 else "conf-low"
        assert s.get_attribute("class") == want
        assert abs(float(s.get_attribute("data-confidence")) - c) < 1e-4


def test_docs_render_without_network(server, browser):
    from inkpack.deploy.server import _swagger_assets

    if _swagger_assets() is None:
        pytest.skip("swagger-ui-bundle-v2 is not installed, so /docs loads Swagger UI from a CDN")
    browser.get(server[0] + "/docs")
    WebDriverWait(browser, 20, poll_frequency=0.05).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/recognize/line", "/v1/recognize/ink", "/v1/recognize/page", "/health", "/v1/models"} <= paths
