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
