"""The teacher: any OpenAI-compatible server through the official async client, with retries and a rate limit.

Retries (429, 408, 409, 5xx, timeouts, dropped connections) use exponential backoff with full jitter, or the
server's Retry-After when it sends one. A rejected key, an unknown model or a refused request stops the run
with one clear line; so does a teacher still failing after --max-retries.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field

from pacos.errors import PacosError

OPENAI_URL = "https://api.openai.com/v1"
RETRY_STATUSES = {408, 409, 429}  # and every 5xx


class TeacherError(PacosError):
    """The teacher cannot be used: unreachable, key rejected, model unknown, or failing persistently."""


class UnparseableResponse(Exception):
    """A 200 answer whose body is not a completions/chat response; counted and logged, never fatal."""


@dataclass
class TeacherConfig:
    url: str = OPENAI_URL
    model: str = "gpt-3.5-turbo-instruct"
    api: str = "completions"  # or "chat"
    api_key: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 3072
    concurrency: int = 8
    requests_per_minute: float = 0.0  # 0: no limit
    timeout: float = 120.0  # seconds per attempt
    max_retries: int = 8
    backoff_base: float = 1.0  # seconds; doubles per attempt
    backoff_cap: float = 60.0


@dataclass
class Answer:
    """One prompt's answer."""

    text: str
    finish_reason: str | None
    error: str | None = None  # set when the response body could not be read


@dataclass
class Reply:
    """The answers to one call's prompts, with the usage and timing the sidecar log keeps."""

    answers: list[Answer] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0  # HTTP attempts, retries included
    seconds: float = 0.0


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date); None if absent."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    try:
        if value is not None:
            return max(0.0, float(value) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


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


class Teacher:
    """Sends prompts to the teacher; `complete` returns a Reply or raises TeacherError."""

    def __init__(self, config: TeacherConfig, seed: int = 0):
        import openai

        self.config = config
        self._openai = openai
        self._client = openai.AsyncOpenAI(
            base_url=config.url, api_key=config.api_key or "no-key", max_retries=0, timeout=config.timeout
        )
        self._slots = asyncio.Semaphore(config.concurrency)
        self._limiter = RateLimiter(config.requests_per_minute)
        self._rng = random.Random(seed)

    async def close(self) -> None:
        await self._client.close()

    async def complete(self, prompts: list[str], stop: list[str] | None = None) -> Reply:
        """All prompts' answers: one completions call (a prompt list when several), or one chat call each."""
        if self.config.api == "chat":
            replies = await asyncio.gather(*(self._with_retries([p], stop) for p in prompts))
            merged = Reply(seconds=max(r.seconds for r in replies))
            for r in replies:
                merged.answers += r.answers
                merged.prompt_tokens += r.prompt_tokens
                merged.completion_tokens += r.completion_tokens
                merged.requests += r.requests
            return merged
        return await self._with_retries(prompts, stop)

    async def _with_retries(self, prompts: list[str], stop: list[str] | None) -> Reply:
        openai, cfg = self._openai, self.config
        started = time.monotonic()
        for attempt in range(1, cfg.max_retries + 2):
            await self._limiter.wait()
            retry_after = None
            try:
                async with self._slots:
                    reply = await self._call(prompts, stop)
                reply.requests, reply.seconds = attempt, time.monotonic() - started
                return reply
            except (UnparseableResponse, openai.APIResponseValidationError) as e:
                return Reply([Answer("", None, error=str(e))] * len(prompts), requests=attempt,
                             seconds=time.monotonic() - started)
            except openai.APIConnectionError as e:  # timeouts included
                failure = f"{type(e).__name__}: {e}"
            except openai.APIStatusError as e:
                if not (e.status_code in RETRY_STATUSES or e.status_code >= 500):
                    raise TeacherError(self._refusal(e)) from None
                failure = f"HTTP {e.status_code}: {_short(e.message)}"
                retry_after = parse_retry_after(e.response.headers)
            if attempt <= cfg.max_retries:
                await asyncio.sleep(retry_delay(attempt, retry_after, cfg.backoff_base, cfg.backoff_cap, self._rng))
        raise TeacherError(
            f"teacher at {cfg.url} still failing after {cfg.max_retries + 1} attempts ({failure}); "
            "check --teacher-url, then rerun the same command to resume"
        )

    async def _call(self, prompts: list[str], stop: list[str] | None) -> Reply:
        cfg = self.config
        common = dict(model=cfg.model, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                      stop=stop or None)
        if cfg.api == "chat":
            response = await self._client.chat.completions.create(
                messages=[{"role": "user", "content": prompts[0]}], **common
            )
        else:
            response = await self._client.completions.create(
                prompt=prompts if len(prompts) > 1 else prompts[0], **common
            )
        try:
            choices = sorted(response.choices, key=lambda c: c.index)
            if len(choices) != len(prompts):
                raise ValueError(f"{len(choices)} choices for {len(prompts)} prompts")
            if cfg.api == "chat":
                answers = [Answer(c.message.content or "", c.finish_reason) for c in choices]
            else:
                answers = [Answer(c.text or "", c.finish_reason) for c in choices]
            usage = response.usage
            return Reply(answers, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)
        except (AttributeError, TypeError, ValueError) as e:
            raise UnparseableResponse(f"unreadable {cfg.api} response: {_short(str(e))}") from None

    def _refusal(self, error) -> str:
        cfg, status = self.config, error.status_code
        detail = _short(error.message)
        if status in (401, 403):
            return (f"teacher at {cfg.url} rejected the API key (HTTP {status}: {detail}); "
                    "pass --api-key or set OPENAI_API_KEY")
        if status == 404:
            return (f"teacher at {cfg.url} has no model {cfg.model!r} or no {cfg.api} endpoint (HTTP 404: "
                    f"{detail}); check --teacher-url, --teacher-model and --api")
        return f"teacher at {cfg.url} refused the request (HTTP {status}: {detail}); check the flags"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
