"""Engine streams to HTTP: the events of a request's n choices merged, collected into whole texts or framed as
server-sent events, and cancelled when the client goes away. A failed generation fails its request only,
and its reason goes to the log, not to the client."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from pacos.infer.engine import Event, Stream
from pacos.serve.protocol import APIError
from pacos.serve.responses import wire_json

log = logging.getLogger("pacos.serve")


async def merged(gens: list[Stream]):
    """(index, event) from every generation as they come; cancels them all if the consumer stops."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i, gen):
        async for ev in gen.aevents():
            await queue.put((i, ev))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    try:
        remaining = len(gens)
        while remaining:
            i, ev = await queue.get()
            if ev.finish_reason is not None:
                remaining -= 1
            yield i, ev
    finally:
        for t in tasks:
            t.cancel()
        for g in gens:
            g.cancel()


async def collect(rid: str, gens: list[Stream], request: Request) -> tuple[list[str], list[str]]:
    """Whole texts of every generation; a client that disconnects while waiting cancels them."""
    texts, finishes = [""] * len(gens), [""] * len(gens)

    async def drain():
        async for i, ev in merged(gens):
            if ev.finish_reason == "error":
                raise generation_failed(rid, ev)
            texts[i] += ev.delta
            if ev.finish_reason:
                finishes[i] = ev.finish_reason

    task = asyncio.create_task(drain())
    try:
        while not task.done():
            await asyncio.wait([task], timeout=0.5)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                raise asyncio.CancelledError
        task.result()
    finally:
        task.cancel()
        for g in gens:
            g.cancel()
    return texts, finishes


def sse(chunks) -> StreamingResponse:
    """Server-sent events: each chunk (a response type, or an error body already as JSON) as a `data:` line,
    then `data: [DONE]`."""
    async def body():
        async for chunk in chunks:
            yield "data: " + (wire_json(chunk) if isinstance(chunk, BaseModel) else chunk) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def generation_failed(rid: str, ev: Event) -> APIError:
    """A row the engine ended with an error: only this request fails; the reason goes to the log, not out."""
    log.error("request %s: %s", rid, ev.error or "generation failed")
    return APIError(500, "generation failed for this request; see the server log", "server_error")


def stream_error(rid: str, ev: Event) -> str:
    return json.dumps(generation_failed(rid, ev).body())
