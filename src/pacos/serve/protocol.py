"""The OpenAI wire format: request validation into plain dataclasses, OpenAI-shaped errors and response bodies.

Pure functions on dicts, so every rule (which field, which range, which message) is tested without a
server. The app turns `APIError` into `{"error": {"message", "type", "param", "code"}}` with its status.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from pacos.data.records import Message
from pacos.infer.params import SamplingError, SamplingParams

MAX_N = 16
MAX_STOPS = 4
# Bounds on the work one request can ask for before the model sees it. Templating renders growing prefixes
# of a chat (quadratic in the number of messages), so both the count and the text are capped; a million
# characters is far more than any context pacos serves, and well within the 4 MiB body cap.
MAX_MESSAGES = 256
MAX_MESSAGE_CHARS = 250_000
MAX_REQUEST_CHARS = 1_000_000  # all messages, or all prompts (characters or token ids), of one request
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
CHAT_DEFAULT_MAX_TOKENS = 512  # chat has no OpenAI default but the context; a model that never stops is capped
# Fields pacos does not implement: a request that uses them gets a clear 400, never silently other output.
UNSUPPORTED = {
    "logprobs": "logprobs are not supported by pacos serve",
    "top_logprobs": "logprobs are not supported by pacos serve",
    "logit_bias": "logit_bias is not supported by pacos serve",
    "tools": "tools / function calling is not supported by pacos serve",
    "functions": "tools / function calling is not supported by pacos serve",
    "tool_choice": "tools / function calling is not supported by pacos serve",
    "parallel_tool_calls": "tools / function calling is not supported by pacos serve",
    "echo": "echo is not supported by pacos serve",
    "suffix": "suffix (insertion) is not supported by pacos serve",
}


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": encodable(self.message), "type": self.type, "param": encodable(self.param),
                          "code": self.code}}


def encodable(text: str | None) -> str | None:
    """`text` with any lone surrogate written as `\\udXXX`: an error that quotes a client's text must still
    encode as UTF-8 (JSONResponse would crash on it, turning a 400 into a 500)."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


@dataclass
class GenerationRequest:
    """A validated /v1/chat/completions or /v1/completions request."""

    model: str
    sampling: SamplingParams
    max_tokens: int | None  # None: as many as the endpoint's default and the context allow
    stop: list[str] = field(default_factory=list)
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False  # vLLM's extension: run to max_tokens (benchmarks)
    messages: list[Message] | None = None  # chat
    prompts: list = field(default_factory=list)  # completions: strings or token-id lists


def parse_chat_request(body) -> GenerationRequest:
    req = _parse_common(body)
    req.messages = _parse_messages(body.get("messages"))
    return req


def parse_completion_request(body) -> GenerationRequest:
    req = _parse_common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str) or _is_token_list(prompt):
        req.prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) or _is_token_list(p) for p in prompt):
        req.prompts = list(prompt)
    else:
        raise bad("'prompt' is required: a string, a list of strings, or a list of token ids", "prompt")
    size = sum(len(p) for p in req.prompts)
    if size > MAX_REQUEST_CHARS:
        raise bad(f"'prompt' holds {size} characters or token ids; at most {MAX_REQUEST_CHARS} are accepted "
                  "in one request", "prompt", "request_too_large")
    if body.get("best_of") not in (None, 1):
        raise bad("best_of is not supported by pacos serve (use n)", "best_of")
    return req


def _parse_common(body) -> GenerationRequest:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("'model' is required: the name listed by GET /v1/models", "model")
    for name, why in UNSUPPORTED.items():
        if body.get(name) not in (None, False, [], {}):
            raise bad(why, name)
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise bad("response_format other than {'type': 'text'} is not supported by pacos serve", "response_format")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        _check_int(max_tokens, "max_tokens", 1)
    sampling = SamplingParams(
        max_new_tokens=max_tokens or 1,
        temperature=_number(body, "temperature", 1.0),
        top_p=_number(body, "top_p", 1.0),
        top_k=_integer(body, "top_k", 0, 0),
        repetition_penalty=_number(body, "repetition_penalty", 1.0),
        presence_penalty=_number(body, "presence_penalty", 0.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0),
        seed=body.get("seed"),
    )
    try:  # the types and ranges live with SamplingParams, so the server and the Python API refuse the same values
        sampling.check()
    except SamplingError as e:
        raise bad(str(e), e.param) from None
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object", "stream_options")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise bad("'ignore_eos' must be true or false", "ignore_eos")
    return GenerationRequest(model=model, sampling=sampling, max_tokens=max_tokens, stop=_parse_stop(body.get("stop")),
                             n=_integer(body, "n", 1, 1, MAX_N), stream=bool(stream),
                             include_usage=bool(options.get("include_usage")), ignore_eos=ignore_eos)


def _parse_messages(messages) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' is required: a non-empty list of {role, content}", "messages")
    if len(messages) > MAX_MESSAGES:
        raise bad(f"'messages' holds {len(messages)} messages; at most {MAX_MESSAGES} are accepted in one request",
                  "messages", "request_too_large")
    out, size = [], 0
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad(f"{where} must be an object with 'role' and 'content'", where)
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role in ("tool", "function"):
            raise bad(f"{where} is a {role!r} message: tools / function calling is not supported by pacos serve",
                      f"{where}.role")
        if role not in ("system", "user", "assistant"):
            raise bad(f"{where}.role must be 'system', 'user' or 'assistant' (got {m.get('role')!r})", f"{where}.role")
        text = _content_text(m.get("content"), f"{where}.content")
        size += len(text)
        if len(text) > MAX_MESSAGE_CHARS or size > MAX_REQUEST_CHARS:
            raise bad(f"{where}.content is too long: at most {MAX_MESSAGE_CHARS} characters a message and "
                      f"{MAX_REQUEST_CHARS} in all the messages of one request", f"{where}.content", "request_too_large")
        out.append(Message(role, text))
    start = 1 if out[0].role == "system" else 0
    for i, m in enumerate(out[start:], start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if m.role != expected:
            raise bad(f"messages[{i}] is a {m.role} message where a {expected} message was expected: after an "
                      "optional first system message, user and assistant messages must alternate", f"messages[{i}]")
    if out[-1].role != "user":
        raise bad("the last message must be a user message", "messages")
    return out


def _content_text(content, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in content):
            raise bad(f"{where}: only text content parts are supported", where)
        return "".join(p["text"] for p in content)
    raise bad(f"{where} must be a string or a list of text parts", where)


def _parse_stop(stop) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > MAX_STOPS:
        raise bad(f"'stop' must be a non-empty string or a list of at most {MAX_STOPS} non-empty strings", "stop")
    return stop


def _number(body, name, default) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(f"'{name}' must be a number", name)
    return float(value)  # the range is SamplingParams.check()'s


def _integer(body, name, default, low, high=None) -> int:
    value = body.get(name)
    if value is None:
        return default
    _check_int(value, name, low, high)
    return value


def _check_int(value, name, low, high=None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer", name)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise bad(f"'{name}' must be {bounds} (got {value})", name)


def _is_token_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                            for t in value)


def resolve_max_tokens(req: GenerationRequest, prompt_tokens: int, context: int | None, chat: bool) -> int:
    """The completion budget; a prompt + max_tokens over the context window is a 400 saying by how much."""
    param = "messages" if chat else "prompt"
    default = CHAT_DEFAULT_MAX_TOKENS if chat else COMPLETION_DEFAULT_MAX_TOKENS
    if context is None:
        return req.max_tokens or default
    if req.max_tokens is None:
        if prompt_tokens >= context:
            raise bad(f"This model's maximum context length is {context} tokens, but the {param} take "
                      f"{prompt_tokens} tokens, {prompt_tokens - context + 1} more than fit with room for one "
                      f"token of answer. Please shorten the {param}.", param, "context_length_exceeded")
        return min(default, context - prompt_tokens)
    total = prompt_tokens + req.max_tokens
    if total > context:
        raise bad(f"This model's maximum context length is {context} tokens. However, you requested {total} "
                  f"tokens ({prompt_tokens} in the {param}, {req.max_tokens} in the completion), "
                  f"{total - context} over the limit. Please reduce the length of the {param} or max_tokens.",
                  param, "context_length_exceeded")
    return req.max_tokens


# -- response bodies --------------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_response(rid: str, model: str, texts: list[str], finishes: list[str], use: dict) -> dict:
    choices = [{"index": i, "message": {"role": "assistant", "content": t, "refusal": None}, "logprobs": None,
                "finish_reason": f} for i, (t, f) in enumerate(zip(texts, finishes))]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use}


def chat_chunk(rid: str, model: str, index: int, delta: dict, finish: str | None = None) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def completion_response(rid: str, model: str, texts: list[str], finishes: list[str], use: dict) -> dict:
    choices = [{"index": i, "text": t, "logprobs": None, "finish_reason": f}
               for i, (t, f) in enumerate(zip(texts, finishes))]
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use}


def completion_chunk(rid: str, model: str, index: int, text: str, finish: str | None = None) -> dict:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}


def usage_chunk(rid: str, model: str, obj: str, use: dict) -> dict:
    """The final chunk of a stream whose client asked for `stream_options.include_usage` (OpenAI's way: no
    choices; every earlier chunk carries `"usage": null`). Without the option no chunk carries usage."""
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [], "usage": use}


def model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "pacos"}
