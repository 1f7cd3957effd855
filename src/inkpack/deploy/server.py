"""HTTP service (FastAPI): line, ink and page recognition with dynamic batching.

Endpoints: ``POST /v1/recognize/line`` (multipart field ``file``, or a raw PNG/JPEG/TIFF body),
``POST /v1/recognize/ink`` (JSON ``{"strokes": [[[x, y, t], ...], ...]}`` or an InkML body; an
InkML body of several samples answers ``{"model", "kind", "samples": [{"id", "text", ...}, ...]}``),
``POST /v1/recognize/page`` (multipart ``image`` + ``xml`` → PAGE-XML with TextEquiv filled; ``image``
alone → segmented and read: PAGE-XML, or JSON lines with ``?format=json``),
``GET /health``, ``GET /v1/models``, the web demo at ``/``, OpenAPI at ``/docs``.

Every error is JSON ``{"error": "..."}``: 413 body or image too large, 415 wrong content type,
422 malformed body, 404 unknown path or no model of the needed kind loaded, 401 missing bearer
token, 403 foreign ``Origin``/``Host``, 408 body not received in time, 503 (with ``Retry-After``)
too many requests in progress (see :mod:`inkpack.deploy.guard`). Requests are decoded in the
thread pool; model calls go through a :class:`DynamicBatcher` per model.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from inkpack.deploy.batching import DynamicBatcher
from inkpack.deploy.guard import LOOPBACK_NAMES, GuardMiddleware, is_loopback, parse_ink_safely, timed_h11
from inkpack.deploy.http_io import (
    ApiError,
    BodyLimitMiddleware,
    BodyTooLarge,
    check_image_bytes,
    content_type,
    read_form,
    upload_bytes,
)
from inkpack.errors import InkpackError, InputTooLargeError

WEB = Path(__file__).resolve().parent / "web"
MB = 1024 * 1024
IMAGE_SCHEMA = {"type": "string", "format": "binary"}


def _load_any(spec):
    """A recognizer object (kept as is), or a path/name for ``inkpack.api.load``."""
    if hasattr(spec, "run_prepared"):
        return spec
    from inkpack.api import load

    return load(spec)


def _models(model, ink_model) -> tuple[object | None, object | None]:
    """(line, ink). ``model=None`` means the bundled line model, optional when an ink model is given;
    an ink model given as ``model`` (and no ``ink_model``) serves ink only."""
    ink = _load_any(ink_model) if ink_model is not None else None
    try:
        line = _load_any(model)
    except InkpackError:
        if model is not None or ink is None:
            raise
        line = None  # ink-only service: no bundled line model here
    if line is not None and line.input_kind != "image":
        if ink is not None:
            raise InkpackError("create_app: `model` must be an image model (give ink models as ink_model)")
        line, ink = None, line
    if ink is not None and ink.input_kind == "image":
        raise InkpackError("create_app: `ink_model` is an image model")
    return line, ink


def _set_decoder(decoder, line, ink) -> None:
    if decoder is None:  # each model keeps its own
        return
    from inkpack.decode.options import chosen

    decoder = chosen(decoder)
    targets = [r for r in (line, ink) if r is not None and r.input_kind in ("image", "ink")]
    if not targets:
        raise InkpackError("create_app: a decoder needs a line model (image or ink lines)")
    for r in targets:
        r.decoder = decoder


def _err(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status)


def create_app(model=None, ink_model=None, max_upload_bytes: int = 10 * MB,
               max_pixels: int = 40_000_000, max_batch: int = 16, max_wait_ms: float = 5.0,
               max_ink_points: int = 100_000, decoder=None, token: str | None = None,
               allow_origins=(), allowed_hosts=None, max_inflight: int = 64,
               read_timeout: float = 30.0, max_page_lines: int = 2000, seg_model=None,
               web_models=None) -> FastAPI:
    """``model``: a line recognizer from ``inkpack.api.load`` or a path (None → the bundled model);
    ``ink_model``: the same for ink (None → the ink endpoint answers 404 with how to load one);
    ``decoder``: a :class:`inkpack.decode.beam.Decoder` (or its options dict, or ``"greedy"``) for
    the line models (image lines and ink lines; a character classifier keeps its top-k), None →
    each model's own (its JSON's ``decoder``, else greedy).
    ``token``: bearer token required on ``/v1/*``; ``allow_origins``: web origins allowed besides the
    service's own; ``allowed_hosts``: accepted ``Host`` names (None = any); ``max_inflight``:
    recognition requests at a time before 503; ``read_timeout``: seconds for the whole body;
    ``max_ink_points``: pen points per ink request (all samples); ``max_page_lines``: TextLines per page;
    ``seg_model``: the page segmenter for a page image sent alone (None → models/hooker-segment);
    ``web_models``: a folder with the page's on-device models (``manifest.json``, from ``inkpack web``),
    served at ``/web/models/`` (None → none: the page recognizes on the server)."""
    line, ink = _models(model, ink_model)
    _set_decoder(decoder, line, ink)
    batchers = {
        k: DynamicBatcher(r.run_prepared, max_batch, max_wait_ms, name=k)
        for k, r in (("line", line), ("ink", ink)) if r is not None
    }

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        for b in batchers.values():
            b.close()

    local_docs = _swagger_assets()
    app = FastAPI(title="inkpack", version=_version(), lifespan=lifespan,
                  docs_url=None if local_docs else "/docs",
                  description="Handwriting recognition: line images, pen ink, PAGE-XML pages.")
    app.state.line, app.state.ink, app.state.batchers = line, ink, batchers
    app.state.started = time.time()
    app.state.segmenter, app.state.seg_model, app.state.seg_lock = None, seg_model, threading.Lock()
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_upload_bytes)
    app.add_middleware(GuardMiddleware, token=token, allow_origins=allow_origins, allowed_hosts=allowed_hosts,
                       max_inflight=max_inflight, read_timeout=read_timeout)  # outermost: before any read
    _add_handlers(app)

    async def run(kind: str, item):
        return await asyncio.wrap_future(batchers[kind].submit(item))

    @app.post("/v1/recognize/line", tags=["recognize"], openapi_extra=_line_doc())
    async def recognize_line(request: Request) -> dict:
        """Recognize one text-line image; per-character confidences and x ranges in pixels."""
        if line is None:
            raise ApiError(404, "no line model loaded (start the server with --model MODEL)")
        data, declared = await upload_bytes(request, "file")
        # with the model's height: a line too wide once scaled is a 413 from the header, before decoding
        check_image_bytes(data, declared, max_pixels, height=_line_height(line))
        prepared = await run_in_threadpool(line.prepare_input, data)
        res = await run("line", prepared)
        return {"model": line.name, **res.to_dict()}

    @app.post("/v1/recognize/ink", tags=["recognize"], openapi_extra=_ink_doc())
    async def recognize_ink(request: Request) -> dict:
        """Recognize pen strokes: top candidates for a character model, text for a line model."""
        if ink is None:
            raise ApiError(404, "no ink model loaded: start the server with --ink-model MODEL "
                                "(line images work at /v1/recognize/line)")
        body = await request.body()
        samples = await run_in_threadpool(parse_ink_safely, body, content_type(request), max_ink_points)
        prepared = await run_in_threadpool(lambda: [ink.prepare_input(s) for s in samples])
        results = await asyncio.gather(*(run("ink", p) for p in prepared))
        if len(samples) == 1:
            return {"model": ink.name, "kind": ink.input_kind, **results[0].to_dict()}
        return {"model": ink.name, "kind": ink.input_kind,
                "samples": [{"id": s.id, **r.to_dict()} for s, r in zip(samples, results)]}

    @app.post("/v1/recognize/page", tags=["recognize"], openapi_extra=_page_doc(),
              response_class=Response, responses={200: {"content": {"application/xml": {}, "application/json": {}}}})
    async def recognize_page(request: Request, format: str = "xml") -> Response:
        """With a PAGE-XML: fill every TextLine's TextEquiv from the page image. A page image alone:
        find its lines (the bundled segmenter) and read them; PAGE-XML 2019, or ``?format=json``
        (lines with polygons, baselines, text, confidences)."""
        from inkpack.deploy.page import recognize_page as fill_streaming

        if line is None:
            raise ApiError(404, "no line model loaded (start the server with --model MODEL)")
        if format not in ("xml", "page", "json"):
            raise ApiError(422, f"format={format!r}: use xml (PAGE-XML, the default) or json")
        if not content_type(request).startswith("multipart/form-data"):
            raise ApiError(415, "page: send multipart/form-data with field 'image' (and optionally 'xml')")
        form = await read_form(request)
        img, declared = await upload_bytes(request, ("image", "file"), form=form)
        given = any(form.get(n) is not None for n in ("xml", "pagexml"))
        if given:
            if format == "json":
                raise ApiError(422, "format=json: for a page image alone; with a PAGE-XML the answer is PAGE-XML")
            xml, _ = await upload_bytes(request, ("xml", "pagexml"), form=form, kind="PAGE-XML")
        check_image_bytes(img, declared, max_pixels)
        gray = await run_in_threadpool(lambda: _gray(img, max_pixels))

        def recognize_crops(crops: list) -> list:  # a few lines at a time: memory bounded by the batch
            futures = [batchers["line"].submit(line.prepare_input(c)) for c in crops]
            return [f.result() for f in futures]

        if not given:
            doc = await run_in_threadpool(lambda: _segmented_page(app, gray, recognize_crops, max_page_lines, format))
            return Response(doc, media_type="application/json" if format == "json" else "application/xml")
        page = await run_in_threadpool(lambda: fill_streaming(gray, xml, recognize_crops, max_lines=max_page_lines))
        return Response(page.xml, media_type="application/xml",
                        headers={"X-Inkpack-Lines": str(len(page.texts)), "X-Inkpack-Skipped": str(len(page.errors))})

    @app.get("/health", tags=["service"])
    async def health() -> dict:
        return {"status": "ok", "uptime_s": round(time.time() - app.state.started, 3),
                "line_model": line.name if line else None, "ink_model": ink.name if ink else None,
                "batching": {k: b.stats() for k, b in batchers.items()}}

    @app.get("/v1/models", tags=["service"])
    async def models() -> dict:
        def info(r) -> dict | None:
            if r is None:
                return None
            d = getattr(r, "decoder", None)
            return {**r.info(), "decoder": d.kind if d is not None else "greedy"}

        return {"line": info(line), "ink": info(ink)}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/sw.js", include_in_schema=False)
    async def service_worker() -> FileResponse:  # at the root: its scope is the whole page
        return FileResponse(WEB / "sw.js", media_type="text/javascript")

    if web_models is not None:
        app.mount("/web/models", StaticFiles(directory=Path(web_models)), name="web-models")
    app.mount("/web", StaticFiles(directory=WEB), name="web")
    if local_docs:
        _local_docs(app, local_docs)
    return app


def _swagger_assets() -> Path | None:
    """Swagger UI files from the optional ``swagger-ui-bundle-v2`` package (no CDN), if installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    p = Path(str(swagger_ui_path))
    return p if (p / "swagger-ui-bundle.js").is_file() and p.name.startswith("swagger-ui-5") else None


def _local_docs(app: FastAPI, assets: Path) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="inkpack API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _line_height(rec) -> int | None:
    """The input height of a line recognizer (``Recognizer.height``), if it has one."""
    h = getattr(rec, "height", None)
    return int(h) if isinstance(h, int) and h > 0 else None


def _gray(data: bytes, max_pixels: int):
    from inkpack.data.images import load_gray

    return load_gray(data, name="image", max_pixels=max_pixels)


def _segmented_page(app: FastAPI, gray, recognize_crops, max_lines: int, fmt: str) -> bytes:
    """A page image alone: segmented (the segmenter loaded once, on first use), lines read, rendered."""
    from types import SimpleNamespace

    from inkpack.segment.commands import render, run_page
    from inkpack.segment.page import Segmenter

    with app.state.seg_lock:
        if app.state.segmenter is None:
            app.state.segmenter = Segmenter(app.state.seg_model)
        seg = app.state.segmenter
    result = run_page(gray, seg, SimpleNamespace(recognize=recognize_crops), name="page.png", max_lines=max_lines)
    return render(result, "json" if fmt == "json" else "page")


def _version() -> str:
    from inkpack import __version__

    return __version__


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_r: Request, e: ApiError):
        return _err(e.status, e.message)

    @app.exception_handler(BodyTooLarge)
    async def too_large(_r: Request, e: BodyTooLarge):
        return _err(413, str(e))

    @app.exception_handler(InkpackError)
    async def bad_input(_r: Request, e: InkpackError):
        return _err(413 if isinstance(e, InputTooLargeError) else 422, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(r: Request, e: StarletteHTTPException):
        msg = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404:
            msg = f"not found: {r.url.path}"
        elif e.status_code == 405:
            msg = f"method {r.method} not allowed on {r.url.path}"
        return _err(e.status_code, msg)

    @app.exception_handler(RequestValidationError)
    async def validation(_r: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        return _err(422, f"invalid request: {first.get('msg', 'malformed')} at {first.get('loc', '?')}")

    @app.exception_handler(Exception)
    async def internal(_r: Request, e: Exception):
        return _err(500, f"internal error ({type(e).__name__}); the server keeps running")


def _line_doc() -> dict:
    mp = {"schema": {"type": "object", "properties": {"file": IMAGE_SCHEMA}, "required": ["file"]}}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": mp, "image/png": {"schema": IMAGE_SCHEMA},
        "image/jpeg": {"schema": IMAGE_SCHEMA}, "image/tiff": {"schema": IMAGE_SCHEMA}}}}


def _ink_doc() -> dict:
    point = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3}
    js = {"type": "object", "required": ["strokes"], "properties": {
        "strokes": {"type": "array", "items": {"type": "array", "items": point}}}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": js}, "application/inkml+xml": {"schema": {"type": "string"}}}}}


def _page_doc() -> dict:
    mp = {"schema": {"type": "object", "required": ["image"],
                     "properties": {"image": IMAGE_SCHEMA, "xml": IMAGE_SCHEMA}}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": mp}}}


def serve(host: str = "127.0.0.1", port: int = 8000, model=None, ink_model=None,
          log_level: str = "warning", decoder=None, **limits) -> None:
    """Run the service with uvicorn (one process; batching uses one worker thread per model).
    Listening on a loopback address, only loopback ``Host`` names are accepted (DNS rebinding);
    connections that do not send their request headers within ``read_timeout`` are closed."""
    import uvicorn

    if is_loopback(host) and limits.get("allowed_hosts") is None:
        limits["allowed_hosts"] = LOOPBACK_NAMES | {host}
    app = create_app(model, ink_model, decoder=decoder, **limits)
    print(f"inkpack: serving on http://{host}:{port}/ (API docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                http=timed_h11(float(limits.get("read_timeout", 30.0))), timeout_keep_alive=5)
