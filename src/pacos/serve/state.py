"""What every route shares: the engines by the names they are served under, this server's limits, the feedback
store, the compare sessions, and the small thread pool that keeps parsing, templating and tokenization off
the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from pacos.infer.engine import Engine
from pacos.serve.compare import CompareSessions
from pacos.serve.protocol import MAX_N, APIError, bad

if TYPE_CHECKING:
    from pacos.serve.feedback import FeedbackStore

MAX_BODY_BYTES = 4 << 20
# Threads for per-request CPU work (JSON parsing, templating, tokenization), so the event loop only moves
# bytes: a few, because they share two cores with the engine, and a bound keeps many big requests queued
# instead of all running at once.
PREP_WORKERS = 2


@dataclass
class ServerState:
    engines: dict[str, Engine]  # served name -> its own engine, in the order given; the first is the default
    created: int  # the served models' `created` in GET /v1/models: when this server started
    feedback: FeedbackStore | None = None  # None: started with --no-feedback
    max_body_bytes: int = MAX_BODY_BYTES
    max_choices: int = MAX_N
    prep: ThreadPoolExecutor | None = None
    compare: CompareSessions = field(default_factory=CompareSessions)  # blind side-by-side votes in progress

    def __post_init__(self):
        if not self.engines:
            raise ValueError("a server needs at least one engine")
        self.prep = self.prep or ThreadPoolExecutor(PREP_WORKERS, thread_name_prefix="pacos-prep")

    @property
    def names(self) -> list[str]:
        return list(self.engines)

    @property
    def default_name(self) -> str:
        """The model the web chat page and /feedback mean when they name none: the first one given."""
        return next(iter(self.engines))

    async def off_loop(self, fn, *args):
        """`fn(*args)` on the prep pool: CPU work no request may do on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.prep, fn, *args)

    async def read_body(self, request: Request) -> bytes:
        """The whole body, refused with a 413 as soon as it passes `max_body_bytes`."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_body_bytes:
                    raise too_large(self.max_body_bytes)
        except ClientDisconnect:  # nobody is left to answer; an error response goes nowhere, quietly
            raise APIError(400, "the client disconnected before sending the whole body") from None
        return bytes(body)

    def engine_for(self, name: str) -> Engine:
        """The engine serving `name`; any other name is OpenAI's 404 model_not_found."""
        engine = self.engines.get(name)
        if engine is None:
            served = ", ".join(f"'{n}'" for n in self.engines)
            raise APIError(404, f"The model '{name}' does not exist; this server serves {served}",
                           param="model", code="model_not_found")
        return engine

    def provenance(self, name: str) -> tuple[str, str]:
        """What a stored answer says wrote it, besides the name: the model's revision and template."""
        engine = self.engine_for(name)
        return engine.revision, engine.template.name if engine.template else ""

    def check_choices(self, n: int, prompts: int) -> None:
        if n * prompts > self.max_choices:
            raise bad(f"This request asks for {n * prompts} choices (n={n} x {prompts} prompts); this server "
                      f"allows at most {self.max_choices} per request (pacos serve --max-choices-per-request)",
                      "n", "request_too_large")


def too_large(limit: int) -> APIError:
    return APIError(413, f"The request body is larger than {limit} bytes", code="request_too_large")


def server_state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(server_state)]  # a route's parameter `state: State` is the app's ServerState
