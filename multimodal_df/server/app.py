"""REST API and web page (served by ``python -m multimodal_df.serve``).

``GET /`` the web page; ``GET /health``; ``POST /v1/predict`` (multipart field ``file``; query
``explain=true`` adds the explanation images inline as data URIs) returns the JSON record of
``predict --json``. OpenAPI docs at ``/docs``.

Uploads are streamed to a temporary file under a size limit (413 past it), sniffed by content
(415 when not media), never kept after the response, and their names never become paths.
One model is loaded and shared; requests use it one at a time, and at most ``max_waiting``
wait for it (503 past that), so memory stays bounded under load.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at runtime.
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from .. import __version__
from ..media.sniff import HEAD_BYTES, sniff_bytes
from ..pipeline.detector import Detector

WEB_DIR = Path(__file__).parent / "web"
_CHUNK = 1 << 20
_SUFFIX = {"image": ".img", "video": ".vid", "audio": ".aud", "media": ".media"}


class BodyLimit:
    """ASGI wrapper: counts request-body bytes as they arrive and answers 413 past ``limit``.

    Starlette spools a multipart body to its own temporary file before the endpoint runs, so a
    check in the endpoint alone would let a chunked upload without Content-Length fill the disk.
    Past the limit the app is told the client went away (it stops reading), and whatever response
    it starts is replaced by the 413.
    """

    def __init__(self, app: Any, limit: int, paths: tuple[str, ...]) -> None:
        self.app, self.limit, self.paths = app, limit, paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        seen, over, sent = 0, False, False

        async def counted() -> dict:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def send_413() -> None:
            nonlocal sent
            if sent:
                return
            sent = True
            body = json.dumps(
                {
                    "path": "",
                    "p_fake": None,
                    "label": None,
                    "error": f"upload is larger than the {self.limit / 2**20:.0f} MB limit",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})

        async def guarded(message: dict) -> None:
            if over:
                await send_413()
            else:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over:
            await send_413()


class _Gate:
    """One request at a time on the model; at most ``max_waiting`` queued behind it."""

    def __init__(self, max_waiting: int) -> None:
        self.model = threading.Lock()
        self.count = threading.Lock()
        self.waiting = 0
        self.max_waiting = max_waiting

    def enter(self) -> bool:
        with self.count:
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
) -> Any:
    """The FastAPI application around one loaded ``detector``."""
    from fastapi import FastAPI, File, Query, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse

    limit = int(max_upload_mb * 1024 * 1024)
    gate = _Gate(max_waiting)
    app = FastAPI(
        title="multimodal_df",
        version=__version__,
        description="Tell whether a video, its voice or a face image was made or altered by AI. Every score is P(fake).",
    )
    # Multipart framing adds a little to the file itself; the endpoint enforces the exact file limit.
    app.add_middleware(BodyLimit, limit=limit + 64 * 1024, paths=("/v1/predict",))

    def error(status: int, reason: str, name: str = "") -> JSONResponse:
        return JSONResponse(status_code=status, content={"path": name, "p_fake": None, "label": None, "error": reason})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "checkpoint": Path(checkpoint).name if checkpoint else None,
            "modalities": {"vision": detector.vision is not None, "audio": detector.audio is not None},
            "threshold": detector.threshold,
            "max_upload_mb": max_upload_mb,
        }

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (
            (WEB_DIR / "index.html")
            .read_text()
            .replace("{{MAX_MB}}", f"{max_upload_mb:g}")
            .replace("{{VERSION}}", __version__)
        )

    @app.post("/v1/predict")
    async def predict(
        request: Request,
        file: UploadFile = File(..., description="a video, audio file or face image"),
        explain: bool = Query(False, description="add heat maps, audio evidence and the timeline as PNG data URIs"),
    ) -> Any:
        # Display only: the client's file name never touches the file system.
        name = os.path.basename((file.filename or "upload").replace("\\\\", "/"))[:200]
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            return error(413, f"upload is larger than the {max_upload_mb:g} MB limit", name)
        head = await file.read(HEAD_BYTES)
        if not head:
            return error(400, "the uploaded file is empty", name)
        kind = sniff_bytes(head)
        if kind is None:
            return error(415, "not a video, audio file or image (unrecognised content)", name)
        fd, tmp = tempfile.mkstemp(suffix=_SUFFIX[kind], dir=tmp_dir)
        try:
            size = len(head)
            with os.fdopen(fd, "wb") as out:
                out.write(head)
                while chunk := await file.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        return error(413, f"upload is larger than the {max_upload_mb:g} MB limit", name)
                    out.write(chunk)
            if not gate.enter():
                return error(503, "the server is busy; try again shortly", name)
            try:
                record = await run_in_threadpool(_run, detector, gate, tmp, explain)
            finally:
                gate.leave()
            record["path"] = name
            return JSONResponse(status_code=422 if record["error"] else 200, content=record)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    return app


def _run(detector: Detector, gate: _Gate, path: str, explain: bool) -> dict[str, Any]:
    with gate.model:
        analysis = detector.analyze(path)
        record = analysis.prediction.to_json()
        if explain and analysis.prediction.error is None:
            ex = detector.explain(analysis)
            record["explanation"] = {"images": ex.data_uris(), "captions": ex.captions}
    return record
