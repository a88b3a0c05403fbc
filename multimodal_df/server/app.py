"""REST API and web page (served by ``python -m multimodal_df.serve``).

``GET /`` the web page; ``GET /health``; ``POST /v1/predict`` (multipart field ``file``; query
``explain=true`` adds the explanation images inline as data URIs) returns the JSON record of
``predict --json``. OpenAPI docs at ``/docs``. ``stream=true`` (with ``chunk_seconds``) analyses the whole
file in chunks and answers ``application/x-ndjson``: a line per chunk as soon as it is scored, then the verdict
line, as ``predict --stream --json`` prints them (see :func:`_stream_response`).

Every answer, errors included, is that JSON record (``{"path", "p_fake", "label", "error", ...}``):
400 empty upload or a request the server cannot read, 401 missing or wrong API key, 403 a cross-site
request, 404/405 no such route, 408 an upload slower than the deadline, 413 too large, 415 not media,
421 a ``Host`` that is not allowed, 422 media that cannot be analysed (a decompression bomb included),
503 busy, 504 analysis over its time limit.

How it is hardened (see :class:`ServerSettings`):

* **Hosts.** Only requests whose ``Host`` names the server (loopback names by default, more with
  ``allowed_hosts``) are answered, so a DNS-rebinding page cannot reach a server on 127.0.0.1; a browser request
  whose ``Origin`` is another site is refused (403) before its body is read.
* **API key.** With ``api_key`` set, ``/v1/...`` needs it, as ``Authorization: Bearer KEY`` or
  ``X-API-Key: KEY``, checked before the body is read. The page, ``/docs`` and ``/health`` stay open: they hold
  no data, and the page asks for the key when ``/health`` says the server wants one.
* **Headers.** ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``
  and a ``Content-Security-Policy`` on every response; on the page it allows only its own inline script (by
  hash), inline styles, data: images and requests to this server.
* **Time.** An upload must arrive within ``upload_timeout_s`` (and never stall ``idle_timeout_s``), so a slow
  client cannot hold a connection or a temporary file; an analysis that passes ``analysis_timeout_s`` is
  answered with 504 (the model finishes it in the background and takes no new work meanwhile, so the queue stays
  bounded).
* **Memory.** Uploads are streamed to a temporary file under a size limit (413 past it, Content-Length or
  not), never kept after the response, and their names never become paths. One model is loaded and used by one
  thread, one request at a time; at most ``max_waiting`` requests wait for it (503 past that), and waiting
  requests hold a file on disk, not memory. ``python -m multimodal_df.serve --workers N`` runs N such processes
  for throughput.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at runtime.
import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import one_line
from ..media.sniff import HEAD_BYTES, sniff_bytes
from ..pipeline.detector import Detector
from .settings import API_KEY_ENV, LOOPBACK_HOSTS, SETTINGS_ENV, ServerSettings

__all__ = ["API_KEY_ENV", "LOOPBACK_HOSTS", "SETTINGS_ENV", "ServerSettings", "app_from_env", "create_app"]

WEB_DIR = Path(__file__).parent / "web"
_CHUNK = 1 << 20
_SUFFIX = {"image": ".img", "video": ".vid", "audio": ".aud", "media": ".media"}
_MULTIPART_SLACK = 64 * 1024
"""Multipart framing around the file: the body may exceed the file limit by this much."""
_PROTECTED = ("/v1/",)
"""Path prefixes that need the API key when one is set: the API. The page, its docs and ``/health`` hold no data."""


def error_record(reason: str, name: str = "") -> dict[str, Any]:
    """The documented JSON record for a request that produced no verdict."""
    return {"path": name, "p_fake": None, "label": None, "error": reason}


async def _send_json(send: Any, status: int, record: dict[str, Any], headers: tuple = ()) -> None:
    body = json.dumps(record).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------- headers
def script_hashes(html: str) -> list[str]:
    """CSP source expressions (``'sha256-...'``) for every inline ``<script>`` of ``html``."""
    out = []
    for m in re.finditer(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>", html, re.S | re.I):
        if "src=" not in m.group("attrs").lower():
            digest = hashlib.sha256(m.group("body").encode()).digest()
            out.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return out


def page_policy(html: str, cdn: str = "") -> str:
    """The Content-Security-Policy of an HTML page served here: its own inline scripts (by hash) and ``cdn``,
    inline styles (the page sets widths and colours in style attributes), data: images (the heat maps), and
    requests to this server only."""
    scripts = " ".join([*script_hashes(html), cdn]).strip()
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline' {cdn}; "
        f"img-src data: {'https://fastapi.tiangolo.com' if cdn else ''}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ).replace("  ", " ")


API_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""For JSON: nothing may load, nothing may frame it."""


class SecurityHeaders:
    """ASGI wrapper: the fixed security headers on every response, and :data:`API_POLICY` as the CSP of any
    response that does not set its own (the HTML routes do)."""

    FIXED = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-resource-policy", b"same-origin"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dict(self.FIXED)]
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", API_POLICY.encode()))
                message = {**message, "headers": [*headers, *self.FIXED]}
            await send(message)

        await self.app(scope, receive, with_headers)


# ------------------------------------------------------------------------------------------- who may ask
def _host_name(value: str) -> str:
    """The name in a ``Host`` header or an origin's authority, without port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class AccessGuard:
    """ASGI wrapper, before anything reads a body: the ``Host`` must be allowed (421 otherwise), a browser's
    cross-site request is refused (403), and with an API key the protected paths need it (401)."""

    def __init__(self, app: Any, settings: ServerSettings) -> None:
        self.app = app
        self.any_host = "*" in settings.allowed_hosts
        self.hosts = {_host_name(h) for h in settings.allowed_hosts}
        self.key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get(b"host", "")
        if not self.any_host and _host_name(host) not in self.hosts:
            shown = one_line(host, 100) or "(none)"
            await _send_json(
                send,
                421,
                error_record(
                    f"host {shown!r} is not served here (allowed: {', '.join(sorted(self.hosts))}; see --allowed-host)"
                ),
            )
            return
        origin = headers.get(b"origin")
        if origin and origin.split("://", 1)[-1].lower() != host.strip().lower():
            # A page of another site (or port) posting here: browsers send its Origin; this page's matches the Host.
            await _send_json(send, 403, error_record("cross-site requests are not accepted"))
            return
        if self.key is not None and scope["path"].startswith(_PROTECTED) and not self._authorised(headers):
            await _send_json(
                send,
                401,
                error_record(
                    "this server needs an API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
                ),
                ((b"www-authenticate", b'Bearer realm="multimodal_df"'),),
            )
            return
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[bytes, str]) -> bool:
        given = headers.get(b"x-api-key", "")
        auth = headers.get(b"authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        # Constant time: the comparison must not tell how much of a guess was right.
        return hmac.compare_digest(given.encode("latin-1", "replace"), self.key)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- the body
class BodyGuard:
    """ASGI wrapper for upload routes: counts request-body bytes as they arrive and answers 413 past ``limit``,
    and 408 when the body takes longer than ``total_s`` or stalls for ``idle_s``.

    Starlette spools a multipart body to its own temporary file before the endpoint runs, so a check in the
    endpoint alone would let a chunked upload without Content-Length fill the disk, and a client sending a byte
    a minute hold a connection and a file forever. Past a limit the app is told the client went away (it stops
    reading), and whatever response it starts is replaced by the error.
    """

    def __init__(
        self, app: Any, limit: int, paths: tuple[str, ...], total_s: float, idle_s: float, max_active: int
    ) -> None:
        self.app, self.limit, self.paths = app, limit, paths
        self.total_s, self.idle_s = total_s, idle_s
        self.max_active, self.active = max_active, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_active:
            # Each request here may spool an upload to disk: their number bounds the disk and memory in use.
            await _send_json(send, 503, error_record("the server is busy; try again shortly"))
            return
        self.active += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.active -= 1

    async def _guarded(self, scope: dict, receive: Any, send: Any) -> None:
        seen = 0
        failure: tuple[int, str] | None = None
        sent = False
        deadline = time.monotonic() + self.total_s
        body_done = False

        async def counted() -> dict:
            nonlocal seen, failure, body_done
            if failure is not None:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()  # after the body only a disconnect can come: no deadline on waiting for it
            wait = min(self.idle_s, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, wait))
            except asyncio.TimeoutError:
                failure = (
                    408,
                    f"the upload did not arrive in time (limits: {self.total_s:g} s in all, {self.idle_s:g} s without data)",
                )
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.limit:
                    failure = (413, f"upload is larger than the {(self.limit - _MULTIPART_SLACK) / 2**20:.0f} MB limit")
                    return {"type": "http.disconnect"}
            return message

        async def reject() -> None:
            nonlocal sent
            if not sent and failure is not None:
                sent = True
                await _send_json(send, failure[0], error_record(failure[1]))

        async def guarded(message: dict) -> None:
            if failure is not None:
                await reject()
            else:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if failure is None:
                raise
        await reject()


# ------------------------------------------------------------------------------------------- the model
class _Gate:
    """One request at a time on the model, on one thread of its own; at most ``max_waiting`` queued behind it.

    A single thread keeps every analysis in one malloc arena (a thread pool spreads them over many, and the
    process keeps the memory of each); an analysis abandoned at its time limit still holds the thread, so
    nothing new starts until it ends.
    """

    def __init__(self, max_waiting: int) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.count = threading.Lock()
        self.waiting = 0
        self.max_waiting = max_waiting

    def enter(self) -> bool:
        with self.count:
            # Every request between upload and answer counts, the one running included (and an analysis
            # abandoned at its time limit, until it ends).
            if self.waiting >= self.max_waiting:
                return False
            self.waiting += 1
            return True

    def leave(self) -> None:
        with self.count:
            self.waiting -= 1


def create_app(
    detector: Detector,
    max_upload_mb: float = 200.0,
    max_waiting: int = 8,
    tmp_dir: str | None = None,
    checkpoint: str = "",
    settings: ServerSettings | None = None,
) -> Any:
    """The FastAPI application around one loaded ``detector``. ``settings`` (when given) replaces the four
    keyword settings before it."""
    from fastapi import FastAPI, File, Query, Request, Security, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.security import APIKeyHeader
    from starlette.exceptions import HTTPException as StarletteHTTPException

    s = settings or ServerSettings(max_upload_mb, max_waiting, tmp_dir, checkpoint)
    limit = int(s.max_upload_mb * 1024 * 1024)
    gate = _Gate(s.max_waiting)
    app = FastAPI(
        title="multimodal_df",
        version=__version__,
        description="Tell whether a video, its voice or a face image was made or altered by AI. Every score is P(fake)."
        + (" This server needs an API key (Authorize: X-API-Key)." if s.api_key else ""),
        docs_url=None,
        redoc_url=None,
    )
    # Outermost first: headers on everything, then who may ask, then the body's size and pace.
    app.add_middleware(
        BodyGuard,
        limit=limit + _MULTIPART_SLACK,
        paths=("/v1/predict",),
        total_s=s.upload_timeout_s,
        idle_s=s.idle_timeout_s,
        # Those waiting for the model hold their uploads already; a few more may be arriving meanwhile.
        max_active=s.max_waiting + 4,
    )
    app.add_middleware(AccessGuard, settings=s)
    app.add_middleware(SecurityHeaders)

    def error(status: int, reason: str, name: str = "") -> JSONResponse:
        return JSONResponse(status_code=status, content=error_record(reason, name))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {
            404: f"no such route: {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return error(exc.status_code, reason.get(exc.status_code, one_line(exc.detail, 300)))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return error(400, one_line(f"invalid request: {problems}", 300))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return error(500, one_line(f"internal error: {type(exc).__name__}", 300))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "checkpoint": Path(s.checkpoint).name if s.checkpoint else None,
            "modalities": {"vision": detector.vision is not None, "audio": detector.audio is not None},
            "threshold": detector.threshold,
            "max_upload_mb": s.max_upload_mb,
            "api_key_required": s.api_key is not None,
        }

    page_html = (
        (WEB_DIR / "index.html")
        .read_text()
        .replace("{{MAX_MB}}", f"{s.max_upload_mb:g}")
        .replace("{{VERSION}}", __version__)
    )
    page_csp = page_policy(page_html)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html, headers={"Content-Security-Policy": page_csp})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        html = get_swagger_ui_html(openapi_url="/openapi.json", title="multimodal_df API")
        text = html.body.decode()
        return HTMLResponse(
            text, headers={"Content-Security-Policy": page_policy(text, cdn="https://cdn.jsdelivr.net")}
        )

    # Declared for the OpenAPI page (its Authorize button); AccessGuard checks the key before the body is read.
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

    @app.post("/v1/predict", dependencies=[Security(key_header)] if s.api_key else [])
    async def predict(
        request: Request,
        file: UploadFile = File(..., description="a video, audio file or face image"),
        explain: bool = Query(False, description="add heat maps, audio evidence and the timeline as PNG data URIs"),
        stream: bool = Query(
            False,
            description="analyse the whole file in chunks: application/x-ndjson, a line per chunk as soon as it "
            "is scored, then the verdict line",
        ),
        chunk_seconds: float = Query(30.0, ge=2.0, le=600.0, description="stream=true: seconds per chunk"),
    ) -> Any:
        # Display only: the client's file name never touches the file system.
        name = one_line(os.path.basename((file.filename or "upload").replace("\\", "/")), 200)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
            return error(413, f"upload is larger than the {s.max_upload_mb:g} MB limit", name)
        head = await file.read(HEAD_BYTES)
        if not head:
            return error(400, "the uploaded file is empty", name)
        kind = sniff_bytes(head)
        if kind is None:
            return error(415, "not a video, audio file or image (unrecognised content)", name)
        if stream and explain:
            return error(400, "explain=true cannot be combined with stream=true", name)
        fd, tmp = tempfile.mkstemp(suffix=_SUFFIX[kind], dir=s.tmp_dir)
        try:
            size = len(head)
            with os.fdopen(fd, "wb") as out:
                out.write(head)
                while chunk := await file.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        return error(413, f"upload is larger than the {s.max_upload_mb:g} MB limit", name)
                    out.write(chunk)
            await file.close()
            if not gate.enter():
                return error(503, "the server is busy; try again shortly", name)
            if stream:
                # The stream owns the gate's place and the file from here until its analysis ends.
                path, tmp = tmp, ""
                return await _stream_response(detector, gate, path, name, chunk_seconds, s.analysis_timeout_s)
            leave = True
            try:
                job = gate.pool.submit(_run, detector, tmp, explain)
                try:
                    record = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), s.analysis_timeout_s)
                except asyncio.TimeoutError:
                    if not job.cancel():
                        # A running analysis cannot be stopped: it keeps its place in the gate, and its file,
                        # until it ends, so the queue stays bounded meanwhile.
                        leave = False
                        job.add_done_callback(lambda _, path=tmp: (gate.leave(), _unlink(path)))
                        tmp = ""
                    return error(504, f"no verdict within {s.analysis_timeout_s:g} s (waiting and analysis)", name)
            finally:
                if leave:
                    gate.leave()
            record["path"] = name
            return JSONResponse(status_code=422 if record["error"] else 200, content=record)
        finally:
            if tmp:
                _unlink(tmp)

    return app


async def _stream_response(
    detector: Detector, gate: _Gate, path: str, name: str, chunk_s: float, timeout_s: float
) -> Any:
    """``POST /v1/predict?stream=true``: the chunk lines and the verdict line of :meth:`Detector.stream` as
    ``application/x-ndjson``, each sent as soon as it is scored.

    The analysis runs on the gate's model thread like any other (it holds the gate's place and the upload until
    it ends). ``timeout_s`` bounds the wait for each line (the first one includes waiting for the model), not the
    whole file, so a long video may stream for longer; past it an error line ends the response. A client that
    goes away stops the analysis after the chunk in progress. A file that yields no chunk and an error (not
    media the models can read) is answered 422 with that one line; otherwise the status is 200 and any later
    error is in its line.
    """
    from fastapi.responses import Response, StreamingResponse

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:
            stop.set()  # the event loop is gone (server shutting down): nobody is listening

    def produce() -> None:
        try:
            if stop.is_set():
                return
            for item in detector.stream(path, chunk_s):
                record = item.to_json()
                record["path"] = name  # display only: the temporary file's name never leaves the server
                put(record)
                if stop.is_set():
                    break
        except Exception as exc:
            put(error_record(one_line(f"internal error: {type(exc).__name__}", 300), name))
        finally:
            put(None)

    job = gate.pool.submit(produce)
    job.add_done_callback(lambda _: (gate.leave(), _unlink(path)))

    def timed_out() -> dict[str, Any]:
        stop.set()
        return error_record(f"no result within {timeout_s:g} s (waiting and analysis of one chunk)", name)

    media = "application/x-ndjson"
    try:
        first = await asyncio.wait_for(lines.get(), timeout_s)
    except asyncio.TimeoutError:
        return Response(json.dumps(timed_out()) + "\n", status_code=504, media_type=media)
    except BaseException:
        stop.set()
        raise
    if first is None or "chunk" not in first:
        # No chunk: an image (scored whole) or a file the models cannot read, answered at once.
        stop.set()
        record = first or error_record("internal error: no result", name)
        return Response(json.dumps(record) + "\n", status_code=422 if record.get("error") else 200, media_type=media)

    async def body() -> Any:
        try:
            yield json.dumps(first) + "\n"
            while True:
                try:
                    record = await asyncio.wait_for(lines.get(), timeout_s)
                except asyncio.TimeoutError:
                    yield json.dumps(timed_out()) + "\n"
                    return
                if record is None:
                    return
                yield json.dumps(record) + "\n"
        finally:
            stop.set()  # the client went away or the stream ended: the model thread stops after its chunk

    return StreamingResponse(body(), media_type=media, headers={"Cache-Control": "no-store"})


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _run(detector: Detector, path: str, explain: bool) -> dict[str, Any]:
    analysis = detector.analyze(path)
    record = analysis.prediction.to_json()
    if explain and analysis.prediction.error is None:
        try:
            ex = detector.explain(analysis)
            record["explanation"] = {"images": ex.data_uris(), "captions": ex.captions}
        except Exception as exc:
            # The verdict stands; only its pictures failed.
            record["notes"] = [
                *record.get("notes", []),
                one_line(f"explanation failed: {type(exc).__name__}: {exc}", 300),
            ]
    return record


# ------------------------------------------------------------------------------------------- several processes
def app_from_env() -> Any:
    """The application of one worker process of ``serve --workers N``: settings from :data:`SETTINGS_ENV`."""
    from ..pipeline.checkpoint import default_checkpoint
    from ..pipeline.onnx_runtime import load

    cfg = json.loads(os.environ[SETTINGS_ENV])
    settings = ServerSettings(**{k: v for k, v in cfg["settings"].items() if k != "api_key"})
    settings.allowed_hosts = tuple(settings.allowed_hosts)
    settings.api_key = os.environ.get(API_KEY_ENV) or None
    detector = load(settings.checkpoint or None, cfg["device"], runtime=cfg.get("runtime", "torch"))
    settings.checkpoint = settings.checkpoint or default_checkpoint() or ""
    return create_app(detector, settings=settings)
