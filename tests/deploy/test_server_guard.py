"""The service under hostile input: JSON attacks, token, Origin/Host, in-flight limit, read deadlines."""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time

import pytest
import uvicorn
from deploy_helpers import line_png
from fastapi.testclient import TestClient
from PIL import Image

from inkpack.deploy.guard import LOOPBACK_NAMES, timed_h11
from inkpack.deploy.server import create_app
from inkpack.errors import InputError, InputTooLargeError


class _Result:
    text, confidences = "stub", [1.0]

    def to_dict(self) -> dict:
        return {"text": "stub", "confidence": 1.0}


class StubLine:
    """A line 'model' that answers instantly, or waits for ``gate`` (to hold requests in flight)."""

    name, input_kind, decoder = "stub", "image", None

    def __init__(self, block: bool = False) -> None:
        self.gate, self.entered, self.block = threading.Event(), threading.Event(), block

    def prepare_input(self, data):
        if not isinstance(data, bytes):
            return data  # a page's line crop
        w = Image.open(io.BytesIO(data)).size[0]
        if w > 500:
            raise InputTooLargeError(f"line image: {w} px wide after scaling, limit 500")
        if w < 15:
            raise InputError("line image: blank")
        return data

    def run_prepared(self, items) -> list:
        self.entered.set()
        if self.block:
            self.gate.wait(10)
        return [_Result() for _ in items]

    def info(self) -> dict:
        return {"name": self.name}


class StubInk(StubLine):
    name, input_kind = "stub-ink", "ink"

    def prepare_input(self, sample):
        return sample


def _client(**kw) -> TestClient:
    return TestClient(create_app(StubLine(), StubInk(), **kw), raise_server_exceptions=False)


def _status(r, status: int, fragment: str = "") -> None:
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"], r.text


def test_json_number_and_nesting_attacks_are_422():
    with _client() as c:
        post = lambda body: c.post("/v1/recognize/ink", content=body, headers={"content-type": "application/json"})  # noqa: E731
        ok = post(b'{"strokes": [[[1, 2, 0], [3, 4, 10]]]}')
        assert ok.status_code == 200 and ok.json()["text"] == "stub"
        _status(post(b'{"strokes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 422)
        _status(post(b"[" * 100_000 + b"]" * 100_000), 422)
        _status(post(b'{"strokes": [[[1' + b"7" * 400 + b', 2]]]}'), 422, "digits")
        _status(post(b'{"strokes": [[[1' + b"7" * 4999 + b', 2]]]}'), 422, "digits")
        _status(post(b'{"strokes": [[[1' + b"0" * 300 + b'.5, 2]]]}'), 422)  # 1e300-ish float, digits
        _status(post(b'{"strokes": [[[1e400, 2]]]}'), 422, "finite")  # float overflow → inf
        _status(post(b'{"strokes": [[[NaN, 2]]]}'), 422)
        # nesting below the recursion limit but not points
        _status(post(b'{"strokes": [' + b"[" * 500 + b"1" + b"]" * 500 + b"]}"), 422)


def test_input_too_large_is_413_and_other_inkpack_errors_422():
    with _client() as c:
        post = lambda png: c.post("/v1/recognize/line", content=png, headers={"content-type": "image/png"})  # noqa: E731
        _status(post(line_png("x" * 80, height=60)), 413, "px wide")  # by type: no "too large" in it
        _status(post(line_png("", height=20)), 422, "blank")
        assert post(line_png("hi", height=20)).status_code == 200


def test_bearer_token():
    png = line_png("hi", height=20)
    with _client(token="s3cret") as c:
        post = lambda **h: c.post("/v1/recognize/line", content=png, headers={"content-type": "image/png", **h})  # noqa: E731
        r = post()
        _status(r, 401, "bearer token")
        assert r.headers["www-authenticate"].startswith("Bearer")
        _status(post(authorization="Bearer wrong"), 401)
        _status(post(authorization="Basic s3cret"), 401)
        assert post(authorization="Bearer s3cret").status_code == 200
        assert c.get("/health").status_code == 200  # liveness stays public


def test_origin_and_cors():
    png = line_png("hi", height=20)
    with _client(allow_origins=["https://app.example.org"]) as c:
        post = lambda **h: c.post("/v1/recognize/line", content=png, headers={"content-type": "image/png", **h})  # noqa: E731
        # no Origin (curl, scripts) and the service's own pages pass, without CORS headers
        assert post().status_code == 200
        own = post(origin="http://testserver")
        assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
        # any other web page is refused before its body is read
        _status(post(origin="https://evil.example.com"), 403, "--allow-origin")
        _status(post(origin="null"), 403)
        _status(post(**{"sec-fetch-site": "cross-site"}), 403)
        # the allowed origin gets explicit CORS headers, on answers and preflights
        r = post(origin="https://app.example.org")
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.org"
        pre = c.options("/v1/recognize/line", headers={"origin": "https://app.example.org",
                                                        "access-control-request-method": "POST"})
        assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]
        bad = c.options("/v1/recognize/line", headers={"origin": "https://evil.example.com",
                                                        "access-control-request-method": "POST"})
        assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers


def test_host_names_other_than_loopback_are_refused():
    with TestClient(create_app(StubLine(), allowed_hosts=LOOPBACK_NAMES), base_url="http://127.0.0.1:8000",
                    raise_server_exceptions=False) as c:
        assert c.get("/health").status_code == 200
        _status(c.get("/health", headers={"host": "rebound.evil.example.com:8000"}), 403, "host")
        assert c.get("/health", headers={"host": "localhost:8000"}).status_code == 200


def test_page_keeps_the_doctype_and_streams_every_line():
    ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
    lines = "".join(f'<TextLine id="l{i}"><Coords points="2,{4 + 12 * i} 90,{4 + 12 * i} 90,{14 + 12 * i} '
                    f'2,{14 + 12 * i}"/></TextLine>' for i in range(20))
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE PcGts SYSTEM "pagecontent.dtd">\n'
           f'<PcGts xmlns="{ns}"><Page imageFilename="p.png" imageWidth="100" imageHeight="250">'
           f'<TextRegion id="r"><Coords points="0,0 99,0 99,249 0,249"/>{lines}</TextRegion></Page></PcGts>')
    img = io.BytesIO()
    Image.new("L", (100, 250), 200).save(img, format="PNG")
    with _client() as c:
        r = c.post("/v1/recognize/page", files={"image": ("p.png", img.getvalue(), "image/png"),
                                                "xml": ("p.xml", xml.encode(), "application/xml")})
    assert r.status_code == 200, r.text
    assert b'<!DOCTYPE PcGts SYSTEM "pagecontent.dtd">' in r.content
    assert r.headers["x-inkpack-lines"] == "20" and r.content.count(b"<Unicode>stub</Unicode>") == 20


# ------------------------------------------------------------ a real server (sockets, timeouts)
class LiveServer:
    def __init__(self, app, read_timeout: float) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        cfg = uvicorn.Config(app, log_level="critical", http=timed_h11(read_timeout), timeout_keep_alive=5)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        t0 = time.time()
        while not self.server.started and time.time() - t0 < 10:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def raw(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def post_png(self, png: bytes) -> tuple[int, dict, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        c.request("POST", "/v1/recognize/line", body=png, headers={"content-type": "image/png"})
        r = c.getresponse()
        out = (r.status, dict(r.getheaders()), r.read())
        c.close()
        return out


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _read_response(s: socket.socket) -> bytes:
    """One whole response with a Content-Length, leaving the connection open."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(65536)
    return buf


def test_stalled_body_gets_408_and_the_connection_closed():
    app = create_app(StubLine(), read_timeout=0.6)
    with LiveServer(app, read_timeout=0.6) as srv:
        s = srv.raw()
        t0 = time.time()
        s.sendall(b"POST /v1/recognize/line HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 100000\r\n\r\n" + b"\x89PNG\r\n\x1a\n")
        reply = _read_all(s)  # returns once the server closes the connection
        took = time.time() - t0
        s.close()
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert 0.5 < took < 5.0
        # the service still answers
        status, _, _ = srv.post_png(line_png("hi", height=20))
        assert status == 200


def test_stalled_headers_are_closed():
    with LiveServer(create_app(StubLine(), read_timeout=0.6), read_timeout=0.6) as srv:
        s = srv.raw()
        t0 = time.time()
        s.sendall(b"POST /v1/recognize/line HTTP/1.1\r\nHost: 127")
        assert _read_all(s) == b""
        assert time.time() - t0 < 5.0
        s.close()
        # a connection that answered once, then stalls in its next request's headers
        s = srv.raw()
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = _read_response(s)
        assert first.startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /health HTTP/1.1\r\nHo")
        t0 = time.time()
        assert _read_all(s) == b""
        assert time.time() - t0 < 5.0  # keep-alive (5 s) would be slower; the header deadline is 0.6 s
        s.close()


def test_too_many_in_flight_get_503_with_retry_after():
    stub = StubLine(block=True)
    png = line_png("hi", height=20)
    with LiveServer(create_app(stub, max_inflight=2, max_batch=1), read_timeout=5) as srv:
        results: list = []
        held = [threading.Thread(target=lambda: results.append(srv.post_png(png))) for _ in range(2)]
        for t in held:
            t.start()
        assert stub.entered.wait(5)
        time.sleep(0.3)  # both requests are in flight (one in the model, one queued for it)
        status, headers, body = srv.post_png(png)
        assert status == 503 and headers.get("retry-after") == "1", body
        assert b"busy" in body
        stub.gate.set()
        for t in held:
            t.join(10)
        assert sorted(r[0] for r in results) == [200, 200]
        assert srv.post_png(png)[0] == 200  # capacity comes back


def test_early_refusals_are_read_by_clients_still_uploading():
    """401/403/503 answered before the app runs: the body is drained first, so a client sending
    a large upload reads the answer instead of a connection reset."""
    body = b"\x89PNG\r\n\x1a\n" + bytes(3_000_000)
    with LiveServer(create_app(StubLine(), token="t", max_upload_bytes=20_000_000), read_timeout=5) as srv:
        for headers, status in [({}, 401), ({"authorization": "Bearer t", "origin": "https://evil.example"}, 403)]:
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
            c.request("POST", "/v1/recognize/line", body=body, headers={"content-type": "image/png", **headers})
            r = c.getresponse()
            assert r.status == status and b"error" in r.read()
            c.close()


@pytest.mark.parametrize("argv,field", [
    (["serve", "--port", "80000"], "--port"), (["serve", "--threads", "0"], "--threads"),
    (["serve", "--max-inflight", "0"], "--max-inflight"), (["serve", "--read-timeout", "nan"], "--read-timeout"),
    (["serve", "--max-upload-mb", "-1"], "--max-upload-mb"), (["serve", "--allow-origin", "evil.com"], "--allow-origin"),
])
def test_serve_options_are_validated_in_one_line(argv, field, capsys):
    from inkpack.cli import main

    try:
        rc = main(argv)
    except SystemExit as e:  # a bad value of an option's type: argparse's one-line usage error
        rc = int(e.code)
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err
