"""Load test of the HTTP service: latency percentiles, throughput, and that nothing answers 5xx.

Starts ``inkpack serve`` in a subprocess on 127.0.0.1 (a free port), then sends line-recognition
requests (Hooker val line JPEGs, multipart) from 32 concurrent clients until ``--requests`` are
done or ``--time-limit`` seconds pass. One request in 50 is deliberately malformed (a PNG
signature with garbage) and must get a 422: those are counted apart, as ``expected_4xx``; any
other non-200 is an error. Reports ``{"requests", "errors_5xx", "p50_ms", "p99_ms", "rps"}`` and
more (the server's dynamic-batching statistics, other errors). Exit status 1 if any 5xx.

    python benchmarks/load.py [--quick] [--json OUT] [--model STEM|X.onnx] [--backend torch|onnx|onnx-int8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from common import wait_healthy, write_json

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "hooker" / "val.tsv"
BAD = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8


def default_model(tmp: Path) -> tuple[str, str]:
    for stem in (ROOT / "models" / "hooker-darknet", ROOT / "runs" / "hooker-darknet" / "best"):
        if stem.with_suffix(".json").exists():
            return str(stem), "trained"
    from inkpack.testing import make_line_model  # a tiny untrained model when nothing is trained yet

    return str(make_line_model(tmp, "load-tiny")), "tiny untrained (no trained model found)"


def line_images(n: int) -> list[bytes]:
    rows = VAL.read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for row in rows[:n]:
        out.append((VAL.parent / row.split("\t", 1)[0]).read_bytes())
    if not out:
        raise SystemExit(f"{VAL}: no lines")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, max_batch: int, max_wait_ms: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "inkpack", "serve", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--threads", "1", "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def drive(url: str, images: list[bytes], total: int, concurrency: int, time_limit: float) -> dict:
    lat, status = [], {}
    counter = iter(range(total))
    deadline = time.monotonic() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
        async def worker():
            for i in counter:
                if time.monotonic() > deadline:
                    return
                bad = i % 50 == 49
                body = BAD if bad else images[i % len(images)]
                files = {"file": ("line.png" if bad else "line.jpg", body, "image/png" if bad else "image/jpeg")}
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/recognize/line", files=files)
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = f"transport:{type(e).__name__}"
                lat.append(((time.perf_counter() - t0) * 1000.0, bad, code))
                status[(bad, code)] = status.get((bad, code), 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        health = (await client.get("/health")).json()
    good = np.array([ms for ms, bad, code in lat if not bad and code == 200])
    n = len(lat)
    return {
        "requests": n,
        "errors_5xx": sum(v for (b, c), v in status.items() if isinstance(c, int) and c >= 500),
        "p50_ms": float(np.percentile(good, 50)) if len(good) else None,
        "p99_ms": float(np.percentile(good, 99)) if len(good) else None,
        "rps": n / wall,
        "ok_200": sum(v for (b, c), v in status.items() if not b and c == 200),
        "expected_4xx": sum(v for (b, c), v in status.items() if b and c == 422),
        "errors_other": sum(v for (b, c), v in status.items() if (b and c != 422) or (not b and c != 200)),
        "status_counts": {f"{'bad' if b else 'good'}:{c}": v for (b, c), v in sorted(status.items(), key=str)},
        "wall_s": wall, "stopped_by_time_limit": n < total,
        "batching": health.get("batching", {}).get("line"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 requests instead of 2,000")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--model", help="model stem or .onnx (default: the trained Hooker model)")
    ap.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch",
                    help="serve the model as is, or exported to ONNX (fp32 / int8) first")
    ap.add_argument("--requests", type=int)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds; the run stops by itself")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    a = ap.parse_args(argv)
    total = a.requests or (300 if a.quick else 2000)
    with tempfile.TemporaryDirectory(prefix="inkpack-load-") as tmp:
        model, which = (a.model, "given") if a.model else default_model(Path(tmp))
        metrics = None
        if not model.endswith(".onnx"):
            cfg = Path(model).with_suffix(".json")
            metrics = json.loads(cfg.read_text(encoding="utf-8")).get("metrics") if cfg.exists() else None
        if a.backend != "torch":
            from inkpack.deploy.export import export_onnx

            model = str(export_onnx(model, Path(tmp) / "served.onnx", int8=a.backend == "onnx-int8"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(model, port, a.max_batch, a.max_wait_ms)
        try:
            wait_healthy(url, proc, lambda: proc.stderr.read().decode(errors="replace"))
            res = asyncio.run(drive(url, line_images(64), total, a.concurrency, a.time_limit))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    res.update({"model": model, "model_kind": which, "model_metrics": metrics, "backend": a.backend, "concurrency": a.concurrency, "planned_requests": total,
                "server": {"threads": 1, "max_batch": a.max_batch, "max_wait_ms": a.max_wait_ms},
                "cpu_count": os.cpu_count()})
    print(f"{'requests':>9} {'5xx':>5} {'other':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'mean batch':>10}")
    b = res["batching"] or {}
    print(f"{res['requests']:>9} {res['errors_5xx']:>5} {res['errors_other']:>6} {res['p50_ms'] or float('nan'):>8.1f} "
          f"{res['p99_ms'] or float('nan'):>8.1f} {res['rps']:>7.1f} {b.get('mean_batch_size', 0):>10.2f}")
    print(f"model: {model} ({which}, {a.backend}); expected 422s for malformed uploads: {res['expected_4xx']}")
    write_json(a.json, res)
    return 1 if res["errors_5xx"] or res["errors_other"] else 0


if __name__ == "__main__":
    sys.exit(main())
