"""A completions/chat response body read defensively into plain data: each answer's text, finish reason and
(when asked for) the log probability of each token with its most likely alternatives; usage and timing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pacos.data.strict_json import JSONInputError, loads


class UnparseableResponse(Exception):
    """A 200 answer whose body is not a completions/chat response; counted as bad answers, never retried."""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log probability and the alternatives the server listed (token, logprob)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class Answer:
    """One prompt's answer."""

    text: str
    finish_reason: str | None
    error: str | None = None  # set when the response body could not be read
    logprobs: tuple[TokenLogprob, ...] | None = None  # chat `logprobs.content`, when sent and readable


@dataclass
class Reply:
    """The answers to one call's prompts, with the usage and timing the sidecar log keeps."""

    answers: list[Answer] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0  # HTTP attempts, retries included
    seconds: float = 0.0


def read_reply(body: bytes, api: str, n_prompts: int) -> Reply:
    """A completions/chat response body -> one Answer per prompt; UnparseableResponse saying why if it is not one."""
    try:
        response = loads(body)
    except JSONInputError as e:
        raise UnparseableResponse(f"not JSON ({e.reason}): {preview(body)}") from None
    if not isinstance(response, dict):
        raise UnparseableResponse(f"JSON but not an object: {preview(body)}")
    choices = response.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise UnparseableResponse(f"no list of choices (choices: {preview(choices)})")
    if len(choices) != n_prompts:
        raise UnparseableResponse(f"{len(choices)} choices for {n_prompts} prompt(s)")
    if all(isinstance(c.get("index"), int) for c in choices):
        choices = sorted(choices, key=lambda c: c["index"])
    answers = []
    for choice in choices:
        message = choice.get("message") if api == "chat" else choice
        text = message.get("content" if api == "chat" else "text") if isinstance(message, dict) else None
        if text is not None and not isinstance(text, str):
            raise UnparseableResponse(f"a choice without text: {preview(choice)}")
        finish = choice.get("finish_reason")
        logprobs = read_logprobs(choice.get("logprobs")) if api == "chat" else None
        answers.append(Answer(text or "", finish if isinstance(finish, str) else None, logprobs=logprobs))
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    return Reply(answers, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def read_logprobs(value) -> tuple[TokenLogprob, ...] | None:
    """Chat `logprobs` ({"content": [{token, logprob, top_logprobs: [{token, logprob}]}]}) -> TokenLogprobs;
    None when absent or not of that shape. An alternative without a finite number is left out."""
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, list):
        return None
    tokens = []
    for entry in content:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None  # positions would no longer line up with the text
        top = entry.get("top_logprobs") if isinstance(entry.get("top_logprobs"), list) else []
        alternatives = tuple((t["token"], float(t["logprob"])) for t in top
                             if isinstance(t, dict) and isinstance(t.get("token"), str) and _finite(t.get("logprob")))
        logprob = float(entry["logprob"]) if _finite(entry.get("logprob")) else -math.inf
        tokens.append(TokenLogprob(entry["token"], logprob, alternatives))
    return tuple(tokens)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def preview(value, limit: int = 80) -> str:
    """The start of something a server sent, quoted, on one line."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: limit * 4]).decode("utf-8", "replace")
    return repr(one_line(value if isinstance(value, str) else repr(value), limit))


def one_line(text: str, limit: int = 200) -> str:
    """One printable line (text from a server may hold newlines or terminal escapes), cut to `limit`."""
    text = " ".join(str(text)[: limit * 4].split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
