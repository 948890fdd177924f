"""The OpenAI wire format, response side: bodies and stream chunks as the openai package's own types.

`wire` dumps them with `exclude_unset`: what a builder sets is sent even when null (`refusal`, `logprobs`,
a stream's `usage`, which OpenAI's schemas require), what it leaves out (`system_fingerprint`,
`tool_calls`, ...) is not.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from openai.types import Completion, CompletionChoice, CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel


def wire(body: BaseModel) -> dict:
    return body.model_dump(exclude_unset=True)


def wire_json(body: BaseModel) -> str:
    return body.model_dump_json(exclude_unset=True)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                           total_tokens=prompt_tokens + completion_tokens)


def _null_usage(include_usage: bool) -> dict:
    """OpenAI's way with `stream_options.include_usage`: `"usage": null` on every chunk but the last, which
    has no choices and the counts. Without the option no chunk carries usage."""
    return {"usage": None} if include_usage else {}


def chat_completion(rid: str, model: str, texts: list[str], finishes: list[str],
                    use: CompletionUsage) -> ChatCompletion:
    choices = [Choice(index=i, message=ChatCompletionMessage(role="assistant", content=t, refusal=None), logprobs=None,
                      finish_reason=f) for i, (t, f) in enumerate(zip(texts, finishes))]
    return ChatCompletion(id=rid, object="chat.completion", created=int(time.time()), model=model, choices=choices,
                          usage=use)


def chat_chunk(rid: str, model: str, index: int, delta: ChoiceDelta, finish: str | None = None,
               include_usage: bool = False) -> ChatCompletionChunk:
    return ChatCompletionChunk(id=rid, object="chat.completion.chunk", created=int(time.time()), model=model,
                               choices=[ChunkChoice(index=index, delta=delta, logprobs=None, finish_reason=finish)],
                               **_null_usage(include_usage))


def first_delta() -> ChoiceDelta:
    """What each chat choice's stream opens with."""
    return ChoiceDelta(role="assistant", content="", refusal=None)


def text_delta(text: str) -> ChoiceDelta:
    return ChoiceDelta(content=text) if text else ChoiceDelta()


def completion(rid: str, model: str, texts: list[str], finishes: list[str], use: CompletionUsage) -> Completion:
    choices = [CompletionChoice(index=i, text=t, logprobs=None, finish_reason=f)
               for i, (t, f) in enumerate(zip(texts, finishes))]
    return Completion(id=rid, object="text_completion", created=int(time.time()), model=model, choices=choices,
                      usage=use)


class CompletionChunkChoice(CompletionChoice):
    """A streamed completion is a `Completion` per chunk, but the type says `finish_reason` is never null,
    yet it is null on every chunk but a choice's last (as OpenAI sends it, and as its spec says in words)."""

    finish_reason: Literal["stop", "length", "content_filter"] | None = None


class CompletionChunk(Completion):
    choices: list[CompletionChunkChoice]


def completion_chunk(rid: str, model: str, index: int, text: str, finish: str | None = None,
                     include_usage: bool = False) -> CompletionChunk:
    choice = CompletionChunkChoice(index=index, text=text, logprobs=None, finish_reason=finish)
    return CompletionChunk(id=rid, object="text_completion", created=int(time.time()), model=model, choices=[choice],
                           **_null_usage(include_usage))


def chat_usage_chunk(rid: str, model: str, use: CompletionUsage) -> ChatCompletionChunk:
    return ChatCompletionChunk(id=rid, object="chat.completion.chunk", created=int(time.time()), model=model,
                               choices=[], usage=use)


def completion_usage_chunk(rid: str, model: str, use: CompletionUsage) -> Completion:
    return Completion(id=rid, object="text_completion", created=int(time.time()), model=model, choices=[], usage=use)


def model_card(name: str, created: int) -> Model:
    return Model(id=name, object="model", created=created, owned_by="pacos")


def model_list(names: list[str], created: int) -> dict:
    """GET /v1/models: the openai package has no type for the list itself (its client pages through `data`)."""
    return {"object": "list", "data": [wire(model_card(name, created)) for name in names]}
