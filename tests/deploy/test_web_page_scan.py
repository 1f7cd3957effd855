"""The web page's "Page scan" panel in a real headless Chromium: a synthetic page scan is uploaded
through the file input; the page must list exactly the lines the JSON API finds for the same image,
in reading order with their texts, and draw the page with each baseline on the canvas.

A second server runs with ``token=...``: the panel must send the bearer token once it is entered,
and a file that is not an image must give a message, not an uncaught exception.
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import httpx
import pytest
from deploy_helpers import make_line_model
from test_web import serve_in_thread, start_chromium  # skips this module too without Chromium

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

_SCANS = Path(__file__).resolve().parents[1] / "segment" / "scan_pages.py"  # the page tests' synthetic scans
_spec = importlib.util.spec_from_file_location("scan_pages", _SCANS)
scan_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scan_pages)
TOKEN = "s3cret-page"


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    from inkpack.api import load

    return load(str(make_line_model(tmp_path_factory.mktemp("models"))))


@pytest.fixture(scope="module", params=["open", "token"])
def server(request, line):
    from inkpack.deploy.server import create_app

    token = TOKEN if request.param == "token" else None
    srv, th, url = serve_in_thread(create_app(line, token=token))
    yield url, token
    srv.should_exit = True
    th.join(10)


@pytest.fixture(scope="module")
def browser():
    drv = start_chromium(log_console=True)
    yield drv
    drv.quit()


def _open(browser, url: str, token: str | None) -> None:
    browser.get(url + "/")
    browser.execute_script("sessionStorage.clear()")  # a token kept from a test before
    browser.refresh()
    wait = WebDriverWait(browser, 15, poll_frequency=0.05)
    if token is None:
        wait.until(lambda d: d.find_element(By.ID, "models").text.startswith("line images: tiny"))
        return
    wait.until(lambda d: "needs an access token" in d.find_element(By.ID, "models").text)
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "token-use").click()
    wait.until(lambda d: d.find_element(By.ID, "models").text.startswith("line images: tiny"))


def _pixels(browser, points: list[tuple[float, float]], r: int = 1) -> list[list[list[int]]]:
    """RGBA of the (2r+1)² canvas pixels around each point, given in canvas pixels."""
    return browser.execute_script(
        """const c = document.getElementById('page-canvas').getContext('2d'), r = arguments[1];
        return arguments[0].map(([x, y]) => {
          const d = c.getImageData(Math.round(x) - r, Math.round(y) - r, 2 * r + 1, 2 * r + 1).data, out = [];
          for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i + 1], d[i + 2], d[i + 3]]);
          return out; });""", points, r)


def _tinted(px: list[int]) -> bool:
    return max(px[:3]) - min(px[:3]) > 40 and px[3] == 255  # the scan is grey: colour is the overlay


def _severe(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def test_page_scan_lists_the_apis_lines_and_draws_them(server, browser, tmp_path):
    url, token = server
    path = tmp_path / "page.png"
    ys = scan_pages.draw_page(path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(url + "/v1/recognize/page?format=json", headers=headers, timeout=60,
                   files={"image": ("page.png", path.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["lines"]) == len(ys)  # the segmenter finds the drawn lines (else the test proves little)

    _open(browser, url, token)
    browser.get_log("browser")  # drop what the token prompt logged
    browser.find_element(By.ID, "page-file").send_keys(str(path))
    WebDriverWait(browser, 60, poll_frequency=0.05).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#page-lines li"))
    items = browser.find_elements(By.CSS_SELECTOR, "#page-lines li")
    assert browser.find_element(By.ID, "page-status").text == ""
    assert len(items) == len(doc["lines"])
    assert [li.get_attribute("data-text") for li in items] == [ln["text"] for ln in doc["lines"]]
    for li, ln in zip(items, doc["lines"]):
        assert abs(float(li.find_element(By.CSS_SELECTOR, ".line-conf").get_attribute("data-confidence"))
                   - ln["confidence"]) < 1e-4

    canvas = browser.find_element(By.ID, "page-canvas")
    scale = float(canvas.get_attribute("data-scale"))
    assert 0 < scale <= 1 and int(canvas.get_attribute("width")) == round(doc["width"] * scale)
    assert int(canvas.get_attribute("width")) <= browser.execute_script(
        "return document.getElementById('page-canvas-wrap').clientWidth")  # scaled to fit
    # on each baseline (middle of its first segment) the overlay's colour; blank paper stays the scan's grey
    mids = [((b[0][0] + b[1][0]) / 2 * scale, (b[0][1] + b[1][1]) / 2 * scale)
            for b in (ln["baseline"] for ln in doc["lines"])]
    paper = ((doc["width"] - 8) * scale, (doc["height"] - 8) * scale)
    *on_lines, blank = _pixels(browser, mids + [paper])
    for win in on_lines:
        assert any(_tinted(px) for px in win), win
    assert all(abs(px[0] - 225) <= 3 and px[0] == px[1] == px[2] for px in blank), blank

    # clicking the second line highlights its polygon (and only it)
    def centre(ln):
        xs, ys_ = [p[0] for p in ln["polygon"]], [p[1] for p in ln["polygon"]]
        return ((min(xs) + max(xs)) / 2 * scale, (min(ys_) + max(ys_)) / 2 * scale)

    points = [centre(ln) for ln in doc["lines"][:2]]
    before = _pixels(browser, points, r=0)
    items[1].click()
    after = _pixels(browser, points, r=0)
    assert "selected" in items[1].get_attribute("class") and "selected" not in items[0].get_attribute("class")
    assert after[0] == before[0] and after[1] != before[1]
    assert _severe(browser) == []


def test_page_scan_error_is_a_message(server, browser, tmp_path):
    url, token = server
    bad = tmp_path / "notapage.png"
    bad.write_bytes(b"this is not an image at all")
    _open(browser, url, token)
    browser.get_log("browser")
    browser.find_element(By.ID, "page-file").send_keys(str(bad))
    WebDriverWait(browser, 30, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "page-status").text
        and not d.find_element(By.ID, "page-status").text.startswith("finding"))
    status = browser.find_element(By.ID, "page-status").text
    r = httpx.post(url + "/v1/recognize/page?format=json", timeout=30,
                   headers={"Authorization": f"Bearer {token}"} if token else {},
                   files={"image": ("notapage.png", bad.read_bytes(), "image/png")})
    assert r.status_code in (413, 415, 422) and status == r.json()["error"]  # the server's own message
    assert browser.find_elements(By.CSS_SELECTOR, "#page-lines li") == []
    assert not browser.find_element(By.ID, "page-view").is_displayed()
    assert _severe(browser) == []


def test_dropping_a_scan_reads_it(server, browser, tmp_path):
    url, token = server
    if token:
        pytest.skip("the drop zone is the same with a token (the upload test covers the token)")
    path = tmp_path / "drop.png"
    ys = scan_pages.draw_page(path, texts=scan_pages.TEXTS[:2])
    _open(browser, url, token)
    # nothing uploaded yet: hidden parts stay hidden (CSS `display` once overrode the `hidden` attribute)
    assert not any(browser.find_element(By.ID, i).is_displayed() for i in ("line-preview-wrap", "page-view"))
    browser.execute_script(  # a real DragEvent carrying the file, as the browser sends on a drop
        """const bytes = Uint8Array.from(atob(arguments[0]), (ch) => ch.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'drop.png', { type: 'image/png' }));
        document.getElementById('page-drop').dispatchEvent(
          new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));""",
        base64.b64encode(path.read_bytes()).decode())
    WebDriverWait(browser, 60, poll_frequency=0.05).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#page-lines li"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#page-lines li")) == len(ys) == 2
    assert browser.current_url.rstrip("/") == url  # the page stayed; the file was not opened instead
