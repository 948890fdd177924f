"""The teacher: any OpenAI-compatible server through the official async client, with retries and a rate limit.

Retries (429, 408, 409, 5xx, timeouts, dropped connections) use exponential backoff with full jitter, or the
server's Retry-After when it sends one. A rejected key, an unknown model or a refused request stops the run
with one clear line; so does a teacher still failing after --max-retries.

Nothing the teacher sends can hang the run or end it in a traceback: --timeout is a deadline for a whole
attempt (a server trickling bytes cannot stretch it), bodies over --max-response-bytes are refused while they
stream in, and a 200 whose body is not a readable completions/chat response (a web page, `choices: null`,
truncated JSON) becomes answers marked with an `error`, which the loop counts as bad answers.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field

from pacos.data.strict_json import JSONInputError, loads
from pacos.errors import PacosError
from pacos.options import check_fields, option

OPENAI_URL = "https://api.openai.com/v1"
RETRY_STATUSES = {408, 409, 429}  # and every 5xx


class TeacherError(PacosError):
    """The teacher cannot be used: unreachable, key rejected, model unknown, or failing persistently."""


class UnparseableResponse(Exception):
    """A 200 answer whose body is not a completions/chat response; counted as bad answers, never retried."""


@dataclass
class TeacherConfig:
    url: str = option(OPENAI_URL, "OpenAI-compatible base URL", flag="--teacher-url", nonempty=True)
    model: str = option("gpt-3.5-turbo-instruct", "model name", flag="--teacher-model", nonempty=True)
    api: str = option("completions", "endpoint", choices=("completions", "chat"))
    api_key: str | None = option(None, "API key (default: $OPENAI_API_KEY)")
    temperature: float = option(1.0, "sampling temperature", ge=0)
    top_p: float = option(1.0, "nucleus sampling mass", ge=0, le=1)
    max_tokens: int = option(3072, "tokens per answer", ge=1)
    concurrency: int = option(8, "requests in flight", ge=1)
    requests_per_minute: float = option(0.0, "request starts per minute; 0: no limit", ge=0)
    timeout: float = option(120.0, "seconds for one whole attempt, body included; then it is retried", gt=0)
    # Larger bodies are refused unread; a 5 x 3072-token answer is ~100 KB.
    max_response_bytes: int = option(4 * 2**20, "larger responses are refused unread and count as bad answers "
                                                "(default 4 MiB)", ge=1)
    max_retries: int = option(8, "retries of a failing request", ge=0)
    backoff_base: float = option(1.0, "seconds before the first retry (at most; doubles per attempt)", ge=0)
    backoff_cap: float = option(60.0, "longest wait between retries, in seconds", ge=0)

    def __post_init__(self) -> None:
        check_fields(self)


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


class Teacher:
    """Sends prompts to the teacher; `complete` returns a Reply or raises TeacherError."""

    def __init__(self, config: TeacherConfig, seed: int = 0):
        import openai

        self.config = config
        self._openai = openai
        from pacos.remote.transport import ResponseRefused, capped_http_client

        self._refused = ResponseRefused
        self._client = openai.AsyncOpenAI(
            base_url=config.url, api_key=config.api_key or "no-key", max_retries=0, timeout=config.timeout,
            http_client=capped_http_client(config.max_response_bytes, config.timeout),
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
                    # The whole attempt, body included: httpx's timeouts are per read, so a teacher sending
                    # a byte a second would never trip them.
                    reply = await _within(cfg.timeout, self._call(prompts, stop))
                reply.requests, reply.seconds = attempt, time.monotonic() - started
                return reply
            except (UnparseableResponse, self._refused) as e:
                # The same request would get the same answer: a bad answer, not a retry.
                return Reply([Answer("", None, error=_short(str(e)))] * len(prompts), requests=attempt,
                             seconds=time.monotonic() - started)
            except asyncio.TimeoutError:
                failure = f"no complete answer within --timeout {cfg.timeout:g} s"
            except openai.APIConnectionError as e:  # httpx's own timeouts included
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
        # The raw body, read by us: the openai client's own parsing accepts NaN, turns a web page into a str
        # and raises json's errors on truncated JSON.
        if cfg.api == "chat":
            raw = await self._client.chat.completions.with_raw_response.create(
                messages=[{"role": "user", "content": prompts[0]}], **common
            )
        else:
            raw = await self._client.completions.with_raw_response.create(
                prompt=prompts if len(prompts) > 1 else prompts[0], **common
            )
        return read_reply(raw.http_response.content, cfg.api, len(prompts))

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


async def _within(seconds: float, call):
    """`call`'s result, or asyncio.TimeoutError after `seconds`. asyncio.timeout where there is one (3.11+):
    3.11's wait_for swallows a cancellation that arrives as the call completes, and a batch cancelled at the
    end of a run then waited forever for its turn."""
    if not hasattr(asyncio, "timeout"):
        return await asyncio.wait_for(call, seconds)
    async with asyncio.timeout(seconds):
        return await call


def read_reply(body: bytes, api: str, n_prompts: int) -> Reply:
    """A completions/chat response body -> one Answer per prompt; UnparseableResponse saying why if it is not one."""
    try:
        response = loads(body)
    except JSONInputError as e:
        raise UnparseableResponse(f"not JSON ({e.reason}): {_preview(body)}") from None
    if not isinstance(response, dict):
        raise UnparseableResponse(f"JSON but not an object: {_preview(body)}")
    choices = response.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise UnparseableResponse(f"no list of choices (choices: {_preview(choices)})")
    if len(choices) != n_prompts:
        raise UnparseableResponse(f"{len(choices)} choices for {n_prompts} prompt(s)")
    if all(isinstance(c.get("index"), int) for c in choices):
        choices = sorted(choices, key=lambda c: c["index"])
    answers = []
    for choice in choices:
        message = choice.get("message") if api == "chat" else choice
        text = message.get("content" if api == "chat" else "text") if isinstance(message, dict) else None
        if text is not None and not isinstance(text, str):
            raise UnparseableResponse(f"a choice without text: {_preview(choice)}")
        finish = choice.get("finish_reason")
        answers.append(Answer(text or "", finish if isinstance(finish, str) else None))
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    return Reply(answers, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _preview(value, limit: int = 80) -> str:
    """The start of something the teacher sent, quoted, on one line."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: limit * 4]).decode("utf-8", "replace")
    return repr(_short(value if isinstance(value, str) else repr(value), limit))


def _short(text: str, limit: int = 200) -> str:
    """One printable line (text from the teacher may hold newlines or terminal escapes), cut to `limit`."""
    text = " ".join(str(text)[: limit * 4].split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
