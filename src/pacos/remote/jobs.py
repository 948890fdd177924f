"""Many requests to one remote model: each within --max-cost (reserved before it starts, settled after), and a
pool of --concurrency workers over the items that stops when one of them finds the budget spent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pacos.remote.client import RemoteModel
from pacos.remote.reply import Reply
from pacos.remote.spend import Spend


async def chat_within_budget(client: RemoteModel, spend: Spend, messages: list[dict], *, max_tokens: int,
                             **sampling) -> Reply | None:
    """`client.chat(messages)`'s Reply, its tokens counted in `spend`; None (nothing sent) when the request
    might pass --max-cost."""
    chars = sum(len(m["content"]) for m in messages)
    estimate = spend.estimate(chars, max_tokens)
    if not spend.reserve(estimate):
        return None
    reply = None
    try:
        reply = await client.chat(messages, max_tokens=max_tokens, **sampling)
    finally:
        spend.settle(estimate, chars, reply.prompt_tokens if reply else 0, reply.completion_tokens if reply else 0,
                     reply.requests if reply else 0)
    return reply


async def ask_twice(client: RemoteModel, spend: Spend, messages: list[dict], read: Callable, failed: Callable, *,
                    keep: int, max_tokens: int, **sampling) -> dict | None:
    """One judge request, asked once more when its answer is an error or `read` finds nothing usable in it.

    `read(answer)` -> (fields to record, usable?); `failed(why, detail)` -> the fields that record a failed
    attempt (why: "bad_response" with the client's error, or "unparseable" with None). The dict also holds the
    tokens and requests of every attempt and the last answer's text (its first `keep` characters); None when
    --max-cost leaves no room for a request."""
    result = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
    for _attempt in range(2):
        reply = await chat_within_budget(client, spend, messages, max_tokens=max_tokens, **sampling)
        if reply is None:
            return None
        result["prompt_tokens"] += reply.prompt_tokens
        result["completion_tokens"] += reply.completion_tokens
        result["requests"] += reply.requests
        answer = reply.answers[0]
        result["text"] = answer.text[:keep]
        if answer.error:
            result.update(failed("bad_response", answer.error))
            continue
        fields, usable = read(answer)
        result.update(fields)
        if usable:
            return result
        result.update(failed("unparseable", None))
    return result


async def run_workers(items: list, concurrency: int, work: Callable[[object], Awaitable[bool]]) -> bool:
    """`await work(item)` for each item in order, `concurrency` at a time; False from `work` stops the pool
    (items not started stay undone). True when it stopped so; an exception of `work` cancels the rest and
    is raised."""
    queue = list(reversed(items))
    stopped: list[bool] = []

    async def worker():
        while queue and not stopped:
            if not await work(queue.pop()):
                stopped.append(True)
                return

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        if workers:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception():
                    raise task.exception()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return bool(stopped)
