"""The annotation web app (FastAPI, served by uvicorn) for one study.

Routes (every ``/api`` route except ``/api/health`` needs the study token when the server
enforces it, sent as header ``X-Softlab-Token`` or query parameter ``token``):

- ``GET /``                      the annotation page (vanilla JS, served from ``static/``)
- ``GET /api/health``            liveness: ``{"status": "ok", "study_id": ...}``
- ``GET /api/study``             classes, item count, confidence scale, second-choice flag
- ``GET /api/next?annotator=A``  progress of ``A`` (``done`` / ``total``) and the next item to show
- ``GET /api/image/{item}.png``  the item's image enlarged ×10 (280 px) with nearest-neighbour pixels
- ``POST /api/answers``          store one answer (JSON; see :class:`Submission`)

Before any route runs, and before any request body is read, a middleware (:class:`_RequestGate`)
checks the token and answers 413 to a body above ``MAX_BODY_BYTES`` (16 KiB; an answer is about
200 bytes), whether announced by ``Content-Length`` or streamed in chunks.

Identity: ``/api/next`` and ``/api/answers`` also need the annotator's key (header
``X-Softlab-Annotator-Key``) from their personal link (:func:`softlab.annotate.study.annotator_key`,
printed by ``softlab annotate links``): nobody can answer as another annotator or see their
progress.

Invalid requests get a 4xx JSON response ``{"detail": "<what was wrong>"}`` and change nothing:
401/403 missing/wrong token or annotator key, 404 unknown item image, 409 repeated answer
(without re-annotation) or reused submission id, 413 body too large, 422 invalid field.
"""

from __future__ import annotations

import io
import math
import os
import re
import secrets
import socket
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from softlab.annotate.db import AnnotationDB, Answer, DuplicateAnswerError, SubmissionConflictError
from softlab.annotate.study import (
    ANNOTATOR_MAX_LEN,
    ANNOTATOR_PATTERN,
    LOG_LEVELS,
    Study,
    StudyError,
    annotator_order,
    check_annotator_id,
    is_loopback,
    key_matches,
    open_study,
    study_secret,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
TOKEN_HEADER = "X-Softlab-Token"
KEY_HEADER = "X-Softlab-Annotator-Key"
MAX_BODY_BYTES = 16 * 1024
PUBLIC_API = frozenset({"/api/health"})
__all__ = [
    "ANNOTATOR_MAX_LEN",
    "ANNOTATOR_PATTERN",
    "KEY_HEADER",
    "MAX_BODY_BYTES",
    "TOKEN_HEADER",
    "clean_annotator",
    "create_app",
    "host_name",
    "serve",
]
SUBMISSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
MAX_RESPONSE_MS = 24 * 3600 * 1000.0  # one day
IMAGE_SCALE = 10  # 28 px → 280 px

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]


class Submission(BaseModel):
    """One answer as sent by the page.

    - ``annotator``: the annotator id (1–64 letters, digits, spaces or ``_ . @ + -``; trimmed);
    - ``item``: a dataset index that belongs to the study;
    - ``label``: class index in ``[0, n_classes)``; ``second_label``: optional, another class;
    - ``confidence``: optional integer on the study's scale (e.g. 1–5);
    - ``response_ms``: milliseconds from the image being shown to the answer, ≥ 0;
    - ``submission_id``: optional client id making retries idempotent.
    """

    model_config = ConfigDict(extra="forbid")

    annotator: StrictStr
    item: StrictInt
    label: StrictInt
    second_label: StrictInt | None = None
    confidence: StrictInt | None = None
    response_ms: StrictFloat | StrictInt
    submission_id: StrictStr | None = None


def _reject(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def clean_annotator(raw: str | None) -> str:
    """The trimmed annotator id, or a 422 naming what is wrong with it."""
    try:
        return check_annotator_id(raw)
    except StudyError as exc:
        raise _reject(422, str(exc)) from None


class _RequestGate:
    """Pure ASGI middleware run before any route and before any body byte is read:

    - ``/api/*`` except ``/api/health``: the study token (header ``X-Softlab-Token`` or query
      ``token``) when ``token`` is set: 401 missing, 403 wrong;
    - every request: 413 when ``Content-Length`` exceeds ``max_body``, or when a body sent
      without a length (chunked) grows beyond it while the route reads it.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token is not None else None
        self.max_body = max_body

    async def _answer(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        headers = {"Connection": "close"} if status == 413 else None
        await JSONResponse(status_code=status, content={"detail": detail}, headers=headers)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.token is not None and (path == "/api" or path.startswith("/api/")) and path not in PUBLIC_API:
            headers = dict(scope.get("headers", []))
            given = headers.get(TOKEN_HEADER.lower().encode("latin-1"))
            if given is None:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = query["token"][0].encode("latin-1") if query.get("token") else None
            if not given:
                await self._answer(
                    scope,
                    receive,
                    send,
                    401,
                    "token: this study needs its access token (open the link with ?token=...)",
                )
                return
            if not secrets.compare_digest(given, self.token):
                await self._answer(scope, receive, send, 403, "token: wrong access token for this study")
                return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0:
                await self._answer(scope, receive, send, 400, "content-length: not a byte count")
                return
            if n > self.max_body:
                await self._answer(
                    scope,
                    receive,
                    send,
                    413,
                    f"body: {n} bytes; this server accepts at most {self.max_body} bytes per request",
                )
                return
        received = 0
        limit = self.max_body

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a streamed body without Content-Length
                    raise HTTPException(
                        413, f"body: more than {limit} bytes; this server accepts at most {limit} bytes per request"
                    )
            return message

        await self.app(scope, limited_receive, send)


class _SecurityHeaders:
    """Pure ASGI middleware adding security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(host_header: str) -> str:
    """The host part of a ``Host`` header: ``"127.0.0.1:8765"`` → ``"127.0.0.1"``, ``"[::1]:80"`` → ``"::1"``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.index("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class _AllowedHosts:
    """Pure ASGI middleware answering 400 to a request whose ``Host`` is not allowed (stops DNS
    rebinding: a web page on another domain reaching a server on 127.0.0.1 through the browser)."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = {host_name(h) for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                response = JSONResponse(status_code=400, content={"detail": f"host: {host!r} is not served here"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _png(image: np.ndarray, scale: int = IMAGE_SCALE) -> bytes:
    """A uint8 (28, 28) image as a grayscale PNG enlarged ``scale``× by pixel repetition."""
    from PIL import Image

    big = np.repeat(np.repeat(np.asarray(image, dtype=np.uint8), scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def create_app(
    study_dir: str | os.PathLike[str], *, require_token: bool = False, allowed_hosts: list[str] | None = None
) -> FastAPI:
    """The FastAPI app serving the study in ``study_dir``.

    ``require_token``: demand the study token on every ``/api`` route but ``/api/health``.
    ``allowed_hosts``: accepted ``Host`` header names (protects a loopback server from DNS
    rebinding); ``None`` accepts any.
    """
    study: Study = open_study(study_dir)
    db = AnnotationDB(study.db_path, study.study_id, study.settings.allow_reannotation)
    images = study.load_images()
    png_cache: dict[int, bytes] = {}
    png_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        db.close()  # checkpoint the WAL on a clean shutdown

    app = FastAPI(title="softlab annotate", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.study = study
    app.state.db = db
    app.state.require_token = require_token

    app.add_middleware(_RequestGate, token=study.token if require_token else None)
    if allowed_hosts is not None:
        app.add_middleware(_AllowedHosts, allowed_hosts=allowed_hosts)
    app.add_middleware(_SecurityHeaders)
    secret = study_secret(study.study_dir)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'body (expected a JSON object)'}: {err.get('msg', 'invalid')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(parts) or "invalid request"})

    def check_key(annotator: str, key: str | None) -> None:
        """Only the holder of ``annotator``'s personal link may act as ``annotator``."""
        if not key:
            raise _reject(
                401,
                "annotator key: missing; open your personal link (the study owner prints it "
                "with `softlab annotate links`)",
            )
        if not key_matches(study, annotator, key, secret):
            raise _reject(403, f"annotator key: not the key of annotator {annotator!r}; open your own personal link")

    def progress(annotator: str) -> dict[str, Any]:
        counts = db.answer_counts(annotator)
        order = annotator_order(study, annotator)
        remaining = [i for i in order if counts.get(i, 0) == 0]
        nxt = remaining[0] if remaining else None
        return {
            "annotator": annotator,
            "done": len(order) - len(remaining),
            "total": len(order),
            "finished": nxt is None,
            "item": nxt,
            "image_url": None if nxt is None else f"/api/image/{nxt}.png?v={study.study_id}",
        }

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "study_id": study.study_id}

    @app.get("/api/study")
    def study_info() -> dict[str, Any]:
        s = study.settings
        return {
            "study_id": study.study_id,
            "dataset": study.dataset,
            "split": study.split,
            "classes": list(study.classes),
            "total": len(study.all_items),
            "confidence": None if not s.has_confidence else {"min": s.confidence_min, "max": s.confidence_max},
            "second_choice": s.second_choice,
            "allow_reannotation": s.allow_reannotation,
            "token_required": require_token,
        }

    @app.get("/api/next")
    def next_item(
        annotator: str | None = Query(default=None), key: str | None = Header(default=None, alias=KEY_HEADER)
    ) -> dict[str, Any]:
        a = clean_annotator(annotator)
        check_key(a, key)
        return progress(a)

    @app.get("/api/image/{item}.png")
    def image(item: int) -> Response:
        if not study.has_item(item):
            raise _reject(404, f"item: {item} is not part of this study")
        png = png_cache.get(item)
        if png is None:
            png = _png(images[item])
            with png_lock:
                png_cache[item] = png
        return Response(content=png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    @app.post("/api/answers")
    def submit(sub: Submission, key: str | None = Header(default=None, alias=KEY_HEADER)) -> JSONResponse:
        annotator = clean_annotator(sub.annotator)
        check_key(annotator, key)
        if not study.has_item(sub.item):
            raise _reject(422, f"item: {sub.item} is not part of this study")
        n = study.n_classes
        if not 0 <= sub.label < n:
            raise _reject(422, f"label: {sub.label} is outside the classes 0..{n - 1}")
        s = study.settings
        if sub.second_label is not None:
            if not s.second_choice:
                raise _reject(422, "second_label: this study does not ask for a second choice")
            if not 0 <= sub.second_label < n:
                raise _reject(422, f"second_label: {sub.second_label} is outside the classes 0..{n - 1}")
            if sub.second_label == sub.label:
                raise _reject(422, "second_label: must differ from label")
        if sub.confidence is not None:
            if not s.has_confidence:
                raise _reject(422, "confidence: this study does not ask for a confidence")
            assert s.confidence_min is not None and s.confidence_max is not None
            if not s.confidence_min <= sub.confidence <= s.confidence_max:
                raise _reject(
                    422, f"confidence: {sub.confidence} is outside the scale {s.confidence_min}..{s.confidence_max}"
                )
        rms = float(sub.response_ms)
        if not math.isfinite(rms) or rms < 0 or rms > MAX_RESPONSE_MS:
            raise _reject(
                422, f"response_ms: {sub.response_ms!r}; expected milliseconds between 0 and {MAX_RESPONSE_MS:.0f}"
            )
        if sub.submission_id is not None and not SUBMISSION_ID_PATTERN.match(sub.submission_id):
            raise _reject(422, "submission_id: expected 1-100 letters, digits, '_' or '-'")
        answer = Answer(
            annotator=annotator,
            item=sub.item,
            label=sub.label,
            second_label=sub.second_label,
            confidence=sub.confidence,
            response_ms=rms,
            is_attention_check=study.is_attention(sub.item),
            submission_id=sub.submission_id,
        )
        try:
            stored, repeated = db.add(answer)
        except DuplicateAnswerError as exc:
            raise _reject(409, str(exc)) from None
        except SubmissionConflictError as exc:
            raise _reject(409, str(exc)) from None
        body = {
            "stored": True,
            "repeated_submission": repeated,
            "answer": {k: v for k, v in stored.to_dict().items() if k != "is_attention_check"},
            "progress": progress(annotator),
        }
        return JSONResponse(status_code=200 if repeated else 201, content=body)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def serve(
    study_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    require_token: bool | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the study with uvicorn until interrupted (Ctrl-C / SIGTERM stop it gracefully).

    ``require_token`` defaults to True on a non-loopback ``host``; serving on a non-loopback
    host with ``require_token=False`` is refused. ``port=0`` picks a free port. The URL is
    printed on the first line of stdout.
    """
    import uvicorn

    if log_level not in LOG_LEVELS:  # uvicorn raised KeyError after printing "serving"
        raise StudyError(f"log_level: expected one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise StudyError(f"port: expected an integer 0..65535 (0 = any free port), got {port!r}")
    loopback = is_loopback(host)
    if require_token is None:
        require_token = not loopback
    if not loopback and not require_token:
        raise StudyError(f"host: refusing to serve on non-loopback host {host!r} without token enforcement")
    allowed = sorted({host, "127.0.0.1", "localhost", "::1"}) if loopback else None
    app = create_app(study_dir, require_token=require_token, allowed_hosts=allowed)
    study: Study = app.state.study

    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on accepted sockets of that
    # proto, and without it Nagle + delayed ACK add ~40 ms to every response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise StudyError(f"port: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    actual_port = sock.getsockname()[1]
    shown_host = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    url = f"http://{shown_host}:{actual_port}/"
    if require_token:
        url += f"?token={study.token}"
    print(f"softlab annotate: serving study {study.study_id} ({len(study.all_items)} items) at {url}", flush=True)
    print(
        f"softlab annotate: each annotator needs a personal link: softlab annotate links --study-dir "
        f"{study.study_dir} --base-url http://{shown_host}:{actual_port}/ --annotator NAME ...",
        file=sys.stderr,
        flush=True,
    )
    if not loopback:
        print(
            "softlab annotate: share this link (with its token) only with your annotators", file=sys.stderr, flush=True
        )
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
