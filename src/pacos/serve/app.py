"""The FastAPI app: the routers (routes/), the access rules they depend on, and OpenAI-shaped errors for all.

One app serves one or more models, each on its own engine, by the name clients ask for; with two or more,
the compare page (routes/compare.py) collects blind side-by-side votes.

Request bodies are pydantic models (protocol.py) read through the strict JSON reader, so every bad request
gets an OpenAI-shaped 4xx naming its param; anything unexpected is a 500 in the same shape, without
internals. Writes are same-origin JSON only, and the API key guards /v1, /feedback and /compare/* (access.py, one
dependency on their routers). Parsing, templating and tokenization run on a small thread pool, never on the
event loop, so no single request can stall the others or /health.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from collections.abc import Mapping

from pacos.infer.engine import Engine
from pacos.serve.access import AccessPolicy
from pacos.serve.protocol import MAX_N, APIError, validation_error
from pacos.serve.routes import compare as compare_routes
from pacos.serve.routes import feedback as feedback_routes
from pacos.serve.routes import public, v1
from pacos.serve.state import MAX_BODY_BYTES, ServerState


def create_app(engines: Mapping[str, Engine], api_key: str | None = None, feedback=None,
               max_body_bytes: int = MAX_BODY_BYTES, max_choices: int = MAX_N,
               allow_origins: tuple[str, ...] = ()) -> FastAPI:
    """The server for `engines`, {served name: engine} (the first is the default of the chat page)."""
    state = ServerState(dict(engines), created=int(time.time()), feedback=feedback,
                        max_body_bytes=max_body_bytes, max_choices=max_choices)

    @asynccontextmanager
    async def lifespan(app):
        yield
        state.prep.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="pacos serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    allowed_origins = frozenset(o.rstrip("/").lower() for o in allow_origins)
    app.state.server, app.state.access = state, AccessPolicy(api_key, allowed_origins)
    app.state.feedback = feedback
    if allowed_origins:  # deliberate cross-origin use: browsers must also be able to preflight and read
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=sorted(allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    for router in (public.router, v1.router, feedback_routes.router, compare_routes.router):
        app.include_router(router)
    add_error_handlers(app)
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, never FastAPI's own."""

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
        return JSONResponse(APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                     code=kind).body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):  # a 400 naming the param, not a 422
        error = validation_error(list(exc.errors()))
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(Exception)
    async def _server_error(request, exc):
        # Starlette re-raises after this answer, so uvicorn logs the traceback; the client gets no internals.
        return JSONResponse(APIError(500, "internal error; see the server log", "server_error").body(),
                            status_code=500)
