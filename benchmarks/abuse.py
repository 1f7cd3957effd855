"""Soak and abuse benchmark of the HTTP service: hostile inputs, stalled clients, overload, mixed burst.

Starts ``inkpack serve`` on 127.0.0.1 only (a free port) in a subprocess with the shipped default
line model and the shipped ink model, with a bearer token (``INKPACK_TOKEN``), then replays each
abuse class of issue 20 and a mixed burst of valid and invalid requests (concurrency 32, bounded
in count and time). For every class it records status codes, p50/p99 latency, and the server's
RSS (``/proc/PID/status``: VmRSS now, VmHWM = peak, reset before each class through
``/proc/PID/clear_refs``). Goals: 0 5xx (the 503s with ``Retry-After`` of the overload class are
the limit working), 0 tracebacks in the server's log, peak RSS under 1 GB, RSS after the burst
within 10% of before it. Exit status 1 if a goal is missed.

    python benchmarks/abuse.py [--quick] [--json OUT]
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from common import machine, parser, table, wait_healthy, write_json

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "hooker" / "val.tsv"
INK_MODEL = ROOT / "models" / "iamondb-online-blstm"
PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
JSON_CT = {"content-type": "application/json"}


# ------------------------------------------------------------------ inputs
def png(w: int, h: int, mode: str = "1", value: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), value).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_header_bomb(w: int, h: int) -> bytes:
    """A PNG declaring w x h pixels with next to no data (a decompression-bomb header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def line_images(n: int) -> list[bytes]:
    if VAL.exists():
        rows = VAL.read_text(encoding="utf-8").splitlines()[1 : n + 1]
        return [(VAL.parent / r.split("\t", 1)[0]).read_bytes() for r in rows]
    from inkpack.testing import line_png

    return [line_png(f"line number {i}", height=60) for i in range(n)]


def ink_json(n_points: int = 300, strokes: int = 6) -> bytes:
    t = np.linspace(0, 6 * np.pi, n_points)
    pts = np.column_stack([t * 40, 50 + 30 * np.sin(t), np.arange(n_points) * 10.0])
    parts = np.array_split(pts, strokes)
    return json.dumps({"strokes": [p.round(2).tolist() for p in parts]}).encode()


def page_request(n_lines: int, w: int = 2480, h: int = 3508, full: bool = True) -> dict:
    lines = []
    for i in range(n_lines):
        y0, y1 = (0, h - 1) if full else (10 + 40 * i % (h - 60), 50 + 40 * i % (h - 60))
        lines.append(f'<TextLine id="l{i}"><Coords points="0,{y0} {w - 1},{y0} {w - 1},{y1} 0,{y1}"/></TextLine>')
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<PcGts xmlns="{PAGE_NS}"><Page imageFilename="p.png" '
           f'imageWidth="{w}" imageHeight="{h}"><TextRegion id="r"><Coords points="0,0 {w - 1},0 {w - 1},{h - 1} '
           f'0,{h - 1}"/>{"".join(lines)}</TextRegion></Page></PcGts>')
    return {"files": {"image": ("p.png", png(w, h, "L", 255), "image/png"),
                      "xml": ("p.xml", xml.encode(), "application/xml")}}


def xml_bomb() -> dict:
    ents = '<!ENTITY a0 "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    xml = f'<?xml version="1.0"?><!DOCTYPE PcGts [{ents}]><PcGts xmlns="{PAGE_NS}"><Page>&a9;</Page></PcGts>'
    return {"files": {"image": ("p.png", png(100, 100, "L", 255), "image/png"),
                      "xml": ("p.xml", xml.encode(), "application/xml")}}


@functools.lru_cache(maxsize=None)
def _fixed(kind: str) -> tuple[str, dict, frozenset]:
    """(path, httpx kwargs, expected statuses) of the requests that are the same every time (built once)."""
    line, ink, page = "/v1/recognize/line", "/v1/recognize/ink", "/v1/recognize/page"
    make = {
        "json_deep_nesting": lambda: (ink, {"content": b'{"strokes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                            "headers": JSON_CT}, {413, 422}),
        "json_400_digit_coordinate": lambda: (ink, {"content": b'{"strokes": [[[1' + b"3" * 399 + b', 2], [3, 4]]]}',
                                                    "headers": JSON_CT}, {413, 422}),
        "json_5000_digit_int": lambda: (ink, {"content": b'{"strokes": [[[' + b"9" * 5000 + b', 2], [3, 4]]]}',
                                              "headers": JSON_CT}, {413, 422}),
        "ink_99999_points": lambda: (ink, {"content": ink_json(99_999, 50), "headers": JSON_CT}, {200, 413, 422}),
        "png_20000x1": lambda: (line, {"files": {"file": ("w.png", png(20_000, 1), "image/png")}}, {413, 422}),
        "png_1000000x1": lambda: (line, {"files": {"file": ("w.png", png(1_000_000, 1), "image/png")}}, {413, 422}),
        "png_bomb_header": lambda: (line, {"files": {"file": ("b.png", png_header_bomb(60_000, 60_000),
                                                              "image/png")}}, {413}),
        "bad_png": lambda: (line, {"files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20,
                                                      "image/png")}}, {422}),
        "page_60_fullpage_lines": lambda: (page, page_request(60), {200, 413, 422}),
        "page_20000_lines": lambda: (page, page_request(20_000, full=False), {413, 422}),
        "page_xml_bomb": lambda: (page, xml_bomb(), {200, 413, 422}),
        "wrong_content_type": lambda: (ink, {"content": b"strokes", "headers": {"content-type": "text/plain"}},
                                       {415}),
        "empty_body": lambda: (line, {"content": b"", "headers": {"content-type": "image/png"}}, {422}),
    }
    path, kw, expected = make[kind]()
    return path, kw, frozenset(expected)


def requests_of(kind: str, lines: list[bytes], i: int = 0) -> tuple[str, dict, frozenset]:
    """(path, httpx kwargs, expected statuses) of request ``i`` of ``kind``."""
    if kind == "valid_line":
        data = lines[i % len(lines)]
        ct = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        return "/v1/recognize/line", {"files": {"file": ("l", data, ct)}}, frozenset({200})
    if kind == "valid_ink":
        return "/v1/recognize/ink", {"content": ink_json(200 + 7 * (i % 50)), "headers": JSON_CT}, frozenset({200})
    return _fixed(kind)


HOSTILE = ["json_deep_nesting", "json_400_digit_coordinate", "json_5000_digit_int", "ink_99999_points",
           "png_20000x1", "png_1000000x1", "png_bomb_header", "bad_png", "page_60_fullpage_lines",
           "page_20000_lines", "page_xml_bomb", "wrong_content_type", "empty_body"]
MIX = ["valid_line"] * 6 + ["valid_ink"] * 2 + ["json_deep_nesting", "json_5000_digit_int", "png_20000x1",
                                                 "bad_png", "empty_body", "wrong_content_type"]


# ------------------------------------------------------------------ server and memory
def mem_mb(pid: int) -> dict:
    out = {}
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith(("VmRSS:", "VmHWM:")):
            out[ln.split(":")[0]] = int(ln.split()[1]) / 1024.0
    return {"rss_mb": round(out["VmRSS"], 1), "peak_mb": round(out["VmHWM"], 1)}


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def start_server(port: int, token: str, read_timeout: float, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "inkpack", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--threads", "1", "--read-timeout", str(read_timeout)]
    if INK_MODEL.with_suffix(".json").exists():
        cmd += ["--ink-model", str(INK_MODEL)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "INKPACK_TOKEN": token}
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


# ------------------------------------------------------------------ drivers
def summarize(name: str, results: list[tuple[float, object, bool]], expected: set | None, mem: dict,
              extra: dict | None = None) -> dict:
    codes: dict[str, int] = {}
    for _, c, _ in results:
        codes[str(c)] = codes.get(str(c), 0) + 1
    ms = np.array([r[0] for r in results]) if results else np.zeros(0)
    bad5 = sum(1 for _, c, retry in results if isinstance(c, int) and c >= 500 and not (c == 503 and retry))
    unexpected = sum(1 for _, c, _ in results if expected is not None and c not in expected)
    return {"class": name, "requests": len(results), "status": codes, "unexpected": unexpected, "errors_5xx": bad5,
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None, **mem, **(extra or {})}


async def one(client: httpx.AsyncClient, path: str, kw: dict, headers: dict) -> tuple[float, object, bool]:
    kw = {**kw, "headers": {**headers, **kw.get("headers", {})}}
    t0 = time.perf_counter()
    try:
        r = await client.post(path, **kw)
        code, retry = r.status_code, "retry-after" in r.headers
    except httpx.HTTPError as e:
        code, retry = f"transport:{type(e).__name__}", False
    return (time.perf_counter() - t0) * 1000.0, code, retry


async def run_kinds(url: str, auth: dict, kinds: list[str], lines: list[bytes], total: int, concurrency: int,
                    time_limit: float) -> list[tuple[float, object, bool]]:
    """``total`` requests cycling through ``kinds``, ``concurrency`` at a time, stopping at ``time_limit``."""
    out: list = []
    counter = iter(range(total))
    deadline = time.monotonic() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as client:
        async def worker():
            for i in counter:
                if time.monotonic() > deadline:
                    return
                path, kw, expected = requests_of(kinds[i % len(kinds)], lines, i)
                ms, code, retry = await one(client, path, kw, auth)
                out.append((ms, code, retry, code in expected))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


async def stall(port: int, n: int, partial: bytes, wait: float) -> dict:
    """``n`` connections that send ``partial`` and then nothing: when does the server close them?"""
    async def conn():
        t0 = time.perf_counter()
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            w.write(partial)
            await w.drain()
            data = await asyncio.wait_for(r.read(), wait)  # until EOF: the server closed it
            w.close()
            status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
            return time.perf_counter() - t0, status
        except asyncio.TimeoutError:
            return time.perf_counter() - t0, "still-open"
        except OSError as e:
            return time.perf_counter() - t0, f"oserror:{type(e).__name__}"

    async def probe():
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        async with httpx.AsyncClient(timeout=30) as c:
            code = (await c.get(f"http://127.0.0.1:{port}/health")).status_code
        return code, (time.perf_counter() - t0) * 1000

    res, health = await asyncio.gather(asyncio.gather(*(conn() for _ in range(n))), probe())
    secs = [s for s, _ in res]
    codes: dict[str, int] = {}
    for _, c in res:
        codes[c] = codes.get(c, 0) + 1
    return {"connections": n, "closed_by_server": n - codes.get("still-open", 0), "status": codes,
            "max_close_s": round(max(secs), 2), "health_during_stall": health[0],
            "health_ms_during_stall": round(health[1], 1)}


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=None, help="seconds for the mixed burst")
    ap.add_argument("--read-timeout", type=float, default=None, help="server --read-timeout (s)")
    a = ap.parse_args(argv)
    q = a.quick
    reps = 2 if q else 10
    burst = 300 if q else 3000
    time_limit = a.time_limit or (90.0 if q else 600.0)
    read_timeout = a.read_timeout or (3.0 if q else 10.0)
    stalls = 50 if q else 500
    token = secrets.token_urlsafe(16)
    auth = {"authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory(prefix="inkpack-abuse-") as tmp:
        log = Path(tmp) / "server.log"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(port, token, read_timeout, log)
        rows: list[dict] = []
        try:
            wait_healthy(url, proc, lambda: log.read_text(errors="replace"), timeout=120.0)
            lines = line_images(32)
            pid = proc.pid
            asyncio.run(run_kinds(url, auth, ["valid_line", "valid_ink"], lines, 40, 4, 120))  # warm-up
            start = mem_mb(pid)
            for kind in HOSTILE:
                reset_peak(pid)
                res = asyncio.run(run_kinds(url, auth, [kind], lines, reps, 1, 300))
                rows.append(summarize(kind, [r[:3] for r in res], requests_of(kind, lines)[2], mem_mb(pid)))
            for name, kw, expected in [("no_token", {}, {401}), ("foreign_origin", {"origin": "https://evil.example"},
                                                                  {403}),
                                       ("foreign_host", {"host": "rebind.evil.example"}, {403})]:
                hdr = {**(auth if name != "no_token" else {}), **kw}
                res = asyncio.run(run_kinds(url, hdr, ["valid_line"], lines, reps, 1, 60))
                rows.append(summarize(name, [r[:3] for r in res], expected, mem_mb(pid)))
            reset_peak(pid)
            head = (b"POST /v1/recognize/line HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                    b"Authorization: Bearer " + token.encode() + b"\r\n"
                    b"Content-Length: 100000\r\n\r\n\x89PNG\r\n\x1a\n")
            for name, partial in [("stalled_body", head), ("stalled_headers", b"POST /v1/recognize/line HTTP/1.1\r\nHo")]:
                st = asyncio.run(stall(port, stalls, partial, read_timeout + 20))
                rows.append({"class": name, "requests": stalls, "status": st.pop("status"),
                             "errors_5xx": 0, "unexpected": stalls - st["closed_by_server"], **mem_mb(pid), **st})
            reset_peak(pid)
            res = asyncio.run(run_kinds(url, auth, ["valid_line"], lines, 200 if q else 600, 160, 120))
            rows.append(summarize("overload_160_at_once", [r[:3] for r in res], {200, 503}, mem_mb(pid),
                                  {"503_with_retry_after": sum(1 for r in res if r[1] == 503 and r[2])}))
            time.sleep(2.0)  # the server gives freed memory back a second after it goes idle
            before = mem_mb(pid)
            reset_peak(pid)
            t0 = time.perf_counter()
            res = asyncio.run(run_kinds(url, auth, MIX, lines, burst, a.concurrency, time_limit))
            wall = time.perf_counter() - t0
            time.sleep(2.0)
            after = mem_mb(pid)
            valid = [r for r in res if r[3] and r[1] == 200]
            burst_row = summarize("mixed_burst", [r[:3] for r in res], None, after,
                                  {"unexpected": sum(1 for r in res if not r[3]), "wall_s": round(wall, 1),
                                   "valid_p50_ms": round(float(np.percentile([r[0] for r in valid], 50)), 1)
                                   if valid else None,
                                   "valid_p99_ms": round(float(np.percentile([r[0] for r in valid], 99)), 1)
                                   if valid else None, "rss_before_mb": before["rss_mb"]})
            rows.append(burst_row)
            alive = httpx.get(url + "/health", timeout=10).status_code
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server_log = log.read_text(errors="replace")
    tracebacks = server_log.count("Traceback")
    peak = max(r["peak_mb"] for r in rows)
    drift = (burst_row["rss_mb"] - before["rss_mb"]) / before["rss_mb"]
    goals = {"zero_5xx": sum(r["errors_5xx"] for r in rows) == 0, "zero_tracebacks": tracebacks == 0,
             "peak_rss_under_1gb": peak < 1024, "rss_back_within_10pct": drift <= 0.10,
             "stalled_all_closed": all(r.get("closed_by_server", 0) == r["requests"] for r in rows
                                       if r["class"].startswith("stalled")),
             "alive_after": alive == 200}
    out = {"quick": q, "machine": machine(), "read_timeout_s": read_timeout, "rss_start_mb": start["rss_mb"],
           "rss_before_burst_mb": before["rss_mb"], "rss_after_burst_mb": burst_row["rss_mb"],
           "rss_drift_after_burst": round(drift, 4), "peak_rss_mb": peak, "tracebacks": tracebacks,
           "server_log_tail": server_log[-2000:], "goals": goals, "classes": rows}
    print(table([(r["class"], r["requests"], " ".join(f"{k}:{v}" for k, v in sorted(r["status"].items())),
                  r["unexpected"], r["errors_5xx"], r.get("p50_ms", "-"), r.get("p99_ms", "-"), r["rss_mb"],
                  r["peak_mb"]) for r in rows],
                ("class", "n", "status", "unexp", "5xx", "p50 ms", "p99 ms", "rss MB", "peak MB")))
    print(f"rss: start {start['rss_mb']} MB, before burst {before['rss_mb']} MB, after burst "
          f"{burst_row['rss_mb']} MB ({drift:+.1%}); peak {peak} MB; tracebacks in the server log: {tracebacks}")
    print("goals: " + ", ".join(f"{k}={'ok' if v else 'MISSED'}" for k, v in goals.items()))
    write_json(a.json, out)
    return 0 if all(goals.values()) else 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
