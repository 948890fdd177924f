"""The client of any OpenAI-compatible server through the official async client, with retries and a rate limit:
`RemoteModel` sends chat requests (a judge's); `Teacher` adds self-instruct's completions of prompt batches.

Retries (429, 408, 409, 5xx, timeouts, dropped connections) use exponential backoff with full jitter, or the
server's Retry-After when it sends one. A rejected key, an unknown model or a refused request stops the run
with one clear line; so does a server still failing after --max-retries.

Nothing the server sends can hang the run or end it in a traceback: --timeout is a deadline for a whole
attempt (a server trickling bytes cannot stretch it), bodies over --max-response-bytes are refused while they
stream in, and a 200 whose body is not a readable completions/chat response (a web page, `choices: null`,
truncated JSON, NaN) becomes answers marked with an `error`, which the caller counts as bad answers.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time

from pacos.errors import PacosError
from pacos.remote.config import RemoteConfig, TeacherConfig
from pacos.remote.reply import Answer, Reply, UnparseableResponse, one_line, read_reply

RETRY_STATUSES = {408, 409, 429}  # and every 5xx


class RemoteError(PacosError):
    """The server cannot be used: unreachable, key rejected, model unknown, or failing persistently."""


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date); None if absent."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    try:
        if value is not None:
            return _seconds(float(value) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        return _seconds(float(value))
    except ValueError:
        pass
    try:
        return _seconds(email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):  # not a date either: as if absent
        return None


def _seconds(value: float) -> float | None:
    """A wait from a header: never negative, and NaN is no wait at all (the cap bounds large ones)."""
    return max(0.0, value) if value == value else None


def retry_delay(attempt: int, retry_after: float | None, base: float, cap: float, rng: random.Random) -> float:
    """Wait before retry `attempt` (1-based): the server's Retry-After if given, else full-jitter backoff."""
    if retry_after is not None:
        return min(retry_after, cap) + rng.uniform(0, 0.1 * base)
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


class RateLimiter:
    """Spaces request starts at least 60/rpm seconds apart."""

    def __init__(self, requests_per_minute: float):
        self.interval = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval  # reserved before sleeping, so concurrent callers queue up
        if start > now:
            await asyncio.sleep(start - now)


class RemoteModel:
    """Requests to one model of an OpenAI-compatible server; each call returns a Reply or raises RemoteError."""

    def __init__(self, config: RemoteConfig, seed: int = 0):
        import openai

        from pacos.remote.transport import ResponseRefused, capped_http_client

        self.config = config
        self._openai = openai
        self._refused = ResponseRefused
        self._client = openai.AsyncOpenAI(
            base_url=config.url, api_key=config.key() or "no-key", max_retries=0, timeout=config.timeout,
            http_client=capped_http_client(config.max_response_bytes, config.timeout),
        )
        self._slots = asyncio.Semaphore(config.concurrency)
        self._limiter = RateLimiter(config.requests_per_minute)
        self._rng = random.Random(seed)

    async def close(self) -> None:
        await self._client.close()

    async def chat(self, messages: list[dict], *, temperature: float, max_tokens: int, top_p: float = 1.0,
                   stop: list[str] | None = None, top_logprobs: int = 0) -> Reply:
        """One chat completion of `messages`; with `top_logprobs`, each token's log probability and that many
        alternatives (`Answer.logprobs`, None when the server sends none)."""
        extra = dict(logprobs=True, top_logprobs=top_logprobs) if top_logprobs else {}

        async def call():
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self.config.model, messages=messages, temperature=temperature, top_p=top_p,
                max_tokens=max_tokens, stop=stop or None, **extra)
            return read_reply(raw.http_response.content, "chat", 1)

        return await self._with_retries(call, 1)

    async def _with_retries(self, call, n_answers: int) -> Reply:
        """`call()`'s Reply, retried as the module says; a refused or unreadable body is `n_answers` bad answers."""
        openai, cfg = self._openai, self.config
        started = time.monotonic()
        for attempt in range(1, cfg.max_retries + 2):
            await self._limiter.wait()
            retry_after = None
            try:
                async with self._slots:
                    # The whole attempt, body included: httpx's timeouts are per read, so a server sending
                    # a byte a second would never trip them.
                    reply = await _within(cfg.timeout, call())
                reply.requests, reply.seconds = attempt, time.monotonic() - started
                return reply
            except (UnparseableResponse, self._refused) as e:
                # The same request would get the same answer: a bad answer, not a retry.
                return Reply([Answer("", None, error=one_line(str(e)))] * n_answers, requests=attempt,
                             seconds=time.monotonic() - started)
            except asyncio.TimeoutError:
                failure = f"no complete answer within --timeout {cfg.timeout:g} s"
            except openai.APIConnectionError as e:  # httpx's own timeouts included
                failure = f"{type(e).__name__}: {e}"
            except openai.APIStatusError as e:
                if not (e.status_code in RETRY_STATUSES or e.status_code >= 500):
                    raise RemoteError(self._refusal(e)) from None
                failure = f"HTTP {e.status_code}: {one_line(e.message)}"
                retry_after = parse_retry_after(e.response.headers)
            if attempt <= cfg.max_retries:
                await asyncio.sleep(retry_delay(attempt, retry_after, cfg.backoff_base, cfg.backoff_cap, self._rng))
        raise RemoteError(
            f"{cfg.ROLE} at {cfg.url} still failing after {cfg.max_retries + 1} attempts ({failure}); "
            f"check {cfg.flag('url')}, then rerun the same command to resume"
        )

    def _refusal(self, error) -> str:
        cfg, status = self.config, error.status_code
        detail = one_line(error.message)
        if status in (401, 403):
            return (f"{cfg.ROLE} at {cfg.url} rejected the API key (HTTP {status}: {detail}); "
                    "pass --api-key or set OPENAI_API_KEY")
        if status == 404:
            api = getattr(cfg, "api", "chat")
            flags = [cfg.flag("url"), cfg.flag("model")] + (["--api"] if hasattr(cfg, "api") else [])
            return (f"{cfg.ROLE} at {cfg.url} has no model {cfg.model!r} or no {api} endpoint (HTTP 404: "
                    f"{detail}); check {', '.join(flags[:-1])} and {flags[-1]}")
        return f"{cfg.ROLE} at {cfg.url} refused the request (HTTP {status}: {detail}); check the flags"


class Teacher(RemoteModel):
    """Self-instruct's teacher: a batch of prompts answered in one completions call, or one chat call each."""

    config: TeacherConfig

    async def complete(self, prompts: list[str], stop: list[str] | None = None) -> Reply:
        """All prompts' answers, with the config's sampling settings."""
        cfg = self.config
        sampling = dict(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, stop=stop or None)
        if cfg.api == "chat":
            replies = await asyncio.gather(*(self.chat([{"role": "user", "content": p}], **sampling)
                                             for p in prompts))
            merged = Reply(seconds=max(r.seconds for r in replies))
            for r in replies:
                merged.answers += r.answers
                merged.prompt_tokens += r.prompt_tokens
                merged.completion_tokens += r.completion_tokens
                merged.requests += r.requests
            return merged

        async def call():
            # The raw body, read by us: the openai client's own parsing accepts NaN, turns a web page into a
            # str and raises json's errors on truncated JSON.
            raw = await self._client.completions.with_raw_response.create(
                model=cfg.model, prompt=prompts if len(prompts) > 1 else prompts[0], **sampling)
            return read_reply(raw.http_response.content, "completions", len(prompts))

        return await self._with_retries(call, len(prompts))


async def _within(seconds: float, call):
    """`call`'s result, or asyncio.TimeoutError after `seconds`. asyncio.timeout where there is one (3.11+):
    3.11's wait_for swallows a cancellation that arrives as the call completes, and a batch cancelled at the
    end of a run then waited forever for its turn."""
    if not hasattr(asyncio, "timeout"):
        return await asyncio.wait_for(call, seconds)
    async with asyncio.timeout(seconds):
        return await call
