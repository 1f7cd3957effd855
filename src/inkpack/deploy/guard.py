"""Defences of the HTTP service against hostile clients and web pages.

:class:`GuardMiddleware` (pure ASGI, outermost) checks, before any body is read:

* ``Host`` (when the server listens on a loopback address only): a web page that rebinds its
  own DNS name to 127.0.0.1 reaches the service with its own name in ``Host`` and is refused;
* ``Origin``: a browser sends it with every cross-site POST; only the service's own origin and
  the ``allow_origins`` (``--allow-origin``; ``*`` for any) pass, so a page the user happens to
  visit cannot post to the local service. Allowed cross-origin requests get explicit CORS
  headers and ``OPTIONS`` preflights are answered here;
* an optional bearer token (``--token`` / ``INKPACK_TOKEN``) for ``/v1/*`` (401 without it);
* at most ``max_inflight`` recognition requests at a time: the next one gets 503 with
  ``Retry-After`` at once instead of waiting in an unbounded queue;
* a read deadline: the whole body must arrive within ``read_timeout`` seconds (408 and the
  connection closed), so stalled uploads do not hold the server.

:func:`timed_h11` gives uvicorn a protocol class that closes connections whose request
headers do not arrive within the same deadline, and :func:`parse_ink_safely` turns the
number and nesting attacks on JSON ink bodies into 422s.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import re
import threading
import time
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
MAX_DIGITS = 64  # longest run of digits accepted in a JSON ink body (a float64 needs 17)
DRAIN_CAP = 16 * 1024 * 1024  # bytes read and dropped before an early refusal (then the connection closes)
_TRIM: dict = {"pending": False, "fn": None}


def _trim_soon(delay: float = 1.0) -> None:
    """Give freed heap memory back to the OS a second after the service goes idle (glibc keeps
    the arenas of the thread pool otherwise, and RSS would stay at its peak after a burst)."""
    if _TRIM["pending"]:
        return
    if _TRIM["fn"] is None:
        try:
            import ctypes

            _TRIM["fn"] = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM["fn"] = False
    if not _TRIM["fn"]:
        return
    _TRIM["pending"] = True

    def run() -> None:
        _TRIM["pending"] = False
        threading.Thread(target=_TRIM["fn"], args=(0,), daemon=True).start()

    asyncio.get_running_loop().call_later(delay, run)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


class RequestReadTimeout(Exception):
    pass


def _hostname(netloc: str) -> str:
    netloc = netloc.strip().lower()
    if netloc.startswith("["):  # [::1]:8000
        return netloc[: netloc.find("]") + 1]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


async def send_json(send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    def __init__(self, app, token: str | None = None, allow_origins=(), allowed_hosts=None,
                 max_inflight: int = 64, read_timeout: float = 30.0, retry_after: int = 1) -> None:
        self.app, self.token = app, (token or None)
        self.allow_origins = {o.rstrip("/").lower() for o in allow_origins or ()}
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.max_inflight, self.read_timeout, self.retry_after = int(max_inflight), float(read_timeout), retry_after
        self.inflight = 0
        self.refused = {"host": 0, "origin": 0, "token": 0, "busy": 0, "timeout": 0}

    def stats(self) -> dict:
        return {"inflight": self.inflight, "max_inflight": self.max_inflight, "refused": dict(self.refused)}

    def _origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.allow_origins or origin in self.allow_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.lower()

    async def _refuse(self, receive, send, status: int, message: str, headers=()) -> None:
        """Answer before the app runs; read (and drop) the body first, up to a cap and the read
        deadline: a server that closes while the client still uploads makes the client see a
        connection reset instead of the answer."""
        deadline, seen = time.monotonic() + self.read_timeout, 0
        try:
            while seen <= DRAIN_CAP:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
                seen += len(msg.get("body", b""))
                if msg["type"] != "http.request" or not msg.get("more_body", False):
                    break
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the answer goes out regardless
            pass
        await send_json(send, status, message, list(headers))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refuse = functools.partial(self._refuse, receive, send)
        h = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host, origin, path = h.get("host", ""), h.get("origin"), scope.get("path", "")
        if self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            self.refused["host"] += 1
            return await refuse(403, f"host {host!r} not allowed: use http://127.0.0.1 or "
                                              "http://localhost (the service refuses other names)")
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None:
            if not self._origin_ok(origin, host):
                self.refused["origin"] += 1
                return await refuse(403, f"origin {origin!r} not allowed: start the server with "
                                                  f"--allow-origin {origin} to let that site call it")
            if urlsplit(origin.lower()).netloc != host.lower():  # cross-origin but allowed
                cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        elif h.get("sec-fetch-site") == "cross-site":
            self.refused["origin"] += 1
            return await refuse(403, "cross-site request without Origin refused")
        if scope.get("method") == "OPTIONS" and "access-control-request-method" in h and cors:
            return await self._preflight(send, cors)
        if self.token and path.startswith("/v1/") and not self._token_ok(h.get("authorization", "")):
            self.refused["token"] += 1
            return await refuse(401, "missing or wrong bearer token: send 'Authorization: Bearer TOKEN'",
                                   [(b"www-authenticate", b'Bearer realm="inkpack"'), *cors])
        limited = path.startswith("/v1/recognize")
        if limited and self.inflight >= self.max_inflight:
            self.refused["busy"] += 1
            return await refuse(503, f"busy: {self.inflight} requests in progress (limit "
                                              f"{self.max_inflight}); retry in {self.retry_after} s",
                                   [(b"retry-after", str(self.retry_after).encode()), *cors])
        if limited:
            self.inflight += 1
        try:
            await self._with_deadline(scope, receive, send, cors)
        finally:
            if limited:
                self.inflight -= 1
                if self.inflight == 0:
                    _trim_soon()

    def _token_ok(self, auth: str) -> bool:
        scheme, _, given = auth.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    async def _preflight(self, send, cors) -> None:
        headers = [*cors, (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                   (b"access-control-allow-headers", b"authorization, content-type"),
                   (b"access-control-max-age", b"600"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _with_deadline(self, scope, receive, send, cors) -> None:
        deadline = time.monotonic() + self.read_timeout
        state = {"body_done": False, "timed_out": False, "started": False}

        async def timed_receive():
            if state["body_done"]:
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                state["timed_out"] = True
                raise RequestReadTimeout(f"request body not received within {self.read_timeout:g} s") from None
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                state["body_done"] = True
            return msg

        async def guarded_send(msg):
            if state["timed_out"]:
                return  # the app's answer to the broken read is replaced by the 408 below
            if msg["type"] == "http.response.start":
                state["started"] = True
                if cors:
                    msg = {**msg, "headers": [*msg.get("headers", []), *cors]}
            await send(msg)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not state["timed_out"]:
                raise
        if state["timed_out"] and not state["started"]:
            self.refused["timeout"] += 1
            await send_json(send, 408, f"request body not received within {self.read_timeout:g} s", cors)


def timed_h11(header_timeout: float):
    """uvicorn's h11 protocol, closing connections that do not complete their request headers
    within ``header_timeout`` seconds of connecting or of their previous response."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        _hdr_timer = None

        def _waiting(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._hdr_timer is None:
                self._hdr_timer = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._hdr_timer is not None:
                self._hdr_timer.cancel()
                self._hdr_timer = None

        def _expire(self) -> None:
            self._hdr_timer = None
            if self._waiting() and self.transport is not None and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._waiting():
                self._arm()
            super().data_received(data)
            if not self._waiting():
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return TimedH11Protocol


_LONG_NUMBER = re.compile(rb"[0-9]{%d,}" % (MAX_DIGITS + 1))


def parse_ink_safely(body: bytes, ct: str, max_points: int):
    """``http_io.parse_ink_samples`` (a list of ``Ink``) with the attacks on Python's JSON reader turned into 422s:
    overlong numbers (``int`` of thousands of digits: ValueError, or OverflowError as a float),
    and deep nesting (RecursionError)."""
    from inkpack.deploy.http_io import ApiError, parse_ink_samples

    if ct == "application/json" and _LONG_NUMBER.search(body):
        raise ApiError(422, f"JSON body holds a number of more than {MAX_DIGITS} digits")
    try:
        return parse_ink_samples(body, ct, max_points)
    except RecursionError:
        raise ApiError(422, "malformed ink body: nested too deeply") from None
    except OverflowError:
        raise ApiError(422, "ink point values must be finite numbers within float range") from None
    except ValueError as e:  # int() digit limit and the like
        first = str(e).splitlines()[0][:120] if str(e) else "ValueError"
        raise ApiError(422, f"malformed ink body ({first})") from None
