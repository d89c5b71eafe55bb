"""``create_app``: the HTTP service of ``stemsep serve`` (FastAPI), and ``serve`` to run it with uvicorn.

FastAPI because the API's description comes for free: the OpenAPI schema at
``/openapi.json`` and the interactive documentation at ``/docs`` are made
from the routes' declarations, with nothing to keep in step by hand; and
Starlette beneath it streams responses (server-sent events) and serves files
with Range requests (seeking in an ``<audio>`` element).

- ``GET /``: the page (``static/index.html``); ``/static/...`` its files.
- ``GET /healthz``: ``{"status": "ok", "queued", "running", "workers"}``.
- ``/api/...``: the jobs and models (``serve.api``). With --token every call
  presents it, as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (an
  EventSource, an ``<audio>`` source or a download link cannot set headers).

Every error is JSON ``{"detail": "<one sentence>"}``. The server listens on
localhost unless told otherwise, and sends CORS headers only for --cors-origin.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from stemsep import __version__
from stemsep.errors import StemsepError
from stemsep.serve.api import Service, router
from stemsep.serve.jobs import JobStore
from stemsep.serve.settings import ServeSettings
from stemsep.serve.upload import RefusalError
from stemsep.serve.workers import QueueFullError, WorkerPool

# Module scripts need a JavaScript type; some systems (Windows registries) map .js to text/plain.
mimetypes.add_type("text/javascript", ".js")

log = logging.getLogger("stemsep.serve")
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")

STATIC = Path(__file__).parent / "static"
GRACE_S = 3  # open event streams get this long to end when the server stops
SWEEP_INTERVAL_S = 600.0  # expired jobs are looked for this often (and at start-up)
TOKEN_SENTENCE = "This server needs its token: send Authorization: Bearer TOKEN, or add ?token=TOKEN to the address."
SENTENCES = {  # for Starlette's own errors, whose detail is the bare status phrase
    404: "There is nothing at this address.",
    405: "This address does not take that method.",
}


def create_app(settings: ServeSettings) -> FastAPI:
    """The ASGI app; the job store opens and the workers start with its lifespan."""
    app = FastAPI(
        title="stemsep",
        version=__version__,
        summary="Separate songs into stems: upload, follow the job, download its stems.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    _add_error_handlers(app)
    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[settings.cors_origin],
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization"],
            expose_headers=["Content-Disposition", "Content-Range", "Location", "Retry-After"],
        )
    app.include_router(router, prefix="/api", dependencies=[Depends(require_token)])
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="Liveness and the queue's size.")
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app


def serve(settings: ServeSettings) -> None:
    """Run the service until Ctrl-C or SIGTERM (running jobs go back to the queue for the next start)."""
    import uvicorn

    JobStore(settings.database, settings.jobs_dir).close()  # an unusable --data-dir is one sentence, before uvicorn
    if settings.token is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Note: listening on {settings.host} without --token: anyone who reaches it can use it.", file=sys.stderr)
    if settings.token is not None:
        print("Note: the page asks for the token, or takes it from its address: /#token=TOKEN.", file=sys.stderr)
    logging.getLogger("uvicorn.access").addFilter(_hide_token)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, timeout_graceful_shutdown=GRACE_S, log_level="info")


def _hide_token(record: logging.LogRecord) -> bool:
    """Access log lines show ``?token=***``: event streams and links carry the token in their address."""
    if isinstance(record.args, tuple):
        record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args)
    return True


def require_token(request: Request) -> None:
    """With --token: the bearer header or the ``token`` query parameter must carry it."""
    token = request.app.state.settings.token
    if token is None:
        return
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    offered = [credentials.strip()] if scheme.lower() == "bearer" else []
    offered.append(request.query_params.get("token", ""))
    if not any(secrets.compare_digest(given.encode(), token.encode()) for given in offered if given):
        raise HTTPException(401, TOKEN_SENTENCE, headers={"WWW-Authenticate": "Bearer"})


def healthz(request: Request) -> dict:
    return {"status": "ok", **request.app.state.service.pool.counts()}


def index() -> FileResponse:
    page = STATIC / "index.html"
    if not page.is_file():
        raise HTTPException(404, "The page is not installed; the API is described at /docs.")
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ServeSettings = app.state.settings
    store = JobStore(settings.database, settings.jobs_dir)
    pool = WorkerPool(store, settings)
    stopped = True
    try:
        await run_in_threadpool(pool.start)
        app.state.service = Service(settings, store, pool)
        sweeper = asyncio.create_task(_sweep(pool, min(SWEEP_INTERVAL_S, settings.keep_hours * 3600 / 2)))
        try:
            yield
        finally:
            sweeper.cancel()
    finally:
        stopped = await run_in_threadpool(pool.stop)
        if stopped:  # a worker still busy (past the timeout) keeps using the store until the process ends
            store.close()


async def _sweep(pool: WorkerPool, interval_s: float) -> None:
    while True:
        await asyncio.sleep(max(interval_s, 1.0))
        try:
            await run_in_threadpool(pool.remove_expired)
        except Exception:
            log.exception("removing expired jobs failed")


# -- errors: always {"detail": "<one sentence>"} ----------------------------------


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RefusalError, _refused)
    app.add_exception_handler(QueueFullError, _queue_full)
    app.add_exception_handler(StemsepError, _stemsep_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(Exception, _internal_error)


def _detail(status: int, sentence: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": sentence}, status_code=status, headers=headers)


async def _refused(request: Request, error: RefusalError) -> JSONResponse:
    return _detail(error.status, str(error), error.headers)


async def _queue_full(request: Request, error: QueueFullError) -> JSONResponse:
    return _detail(503, str(error), {"Retry-After": str(error.retry_after)})


async def _stemsep_error(request: Request, error: StemsepError) -> JSONResponse:
    return _detail(422, str(error))


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    phrase = HTTPStatus(error.status_code).phrase
    sentence = error.detail if error.detail != phrase else SENTENCES.get(error.status_code, f"{phrase}.")
    return _detail(error.status_code, sentence, error.headers)


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return _detail(422, f"The request is not valid: {where} {first.get('msg', '')}.".replace(" .", "."))


async def _disconnected(request: Request, error: ClientDisconnect) -> JSONResponse:
    return _detail(400, "The upload was cut off before it ended.")


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return _detail(500, f"internal error: {type(error).__name__}")
