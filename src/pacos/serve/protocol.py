"""The OpenAI wire format, request side: bodies as pydantic models, their limits, and OpenAI-shaped errors.

A body is read by the strict JSON reader first (NaN, duplicate keys, deep nesting and lone surrogates are
400s before any model sees them), then validated by its model: strict types (no "1" for 1), unknown
fields ignored and null taken as the default, as OpenAI does. Every failure is an `APIError` 400 whose
`param` names the field as OpenAI writes it (`messages[0].content`). Sampling ranges are
`SamplingParams.check()`'s, so the server and the Python API refuse the same values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from openai.types import ErrorObject
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import Self

from pacos.data import strict_json
from pacos.data.records import Conversation, Message
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
TOO_LONG = (f"at most {MAX_MESSAGE_CHARS} characters a message and {MAX_REQUEST_CHARS} in all the messages of one "
            "request are accepted")


# -- errors -----------------------------------------------------------------------------------------------
class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        error = ErrorObject(message=encodable(self.message), type=self.type, param=encodable(self.param),
                            code=self.code)
        return {"error": error.model_dump(exclude_unset=True)}


def encodable(text: str | None) -> str | None:
    """`text` with any lone surrogate written as `\\udXXX`: an error that quotes a client's text must still
    encode as UTF-8 (JSONResponse would crash on it, turning a 400 into a 500)."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def refuse(message: str, at: str | None = None, code: str | None = None) -> PydanticCustomError:
    """A validation failure in pacos's words. Without `at` the message says what is wrong with the field
    that failed (the answer prefixes its name); with `at` it is a whole sentence about that param (a rule
    across fields, or a field checked from the body)."""
    return PydanticCustomError("pacos", "{message}", {"message": message, "at": at, "code": code})


EXPECTED = {"int_type": "an integer", "float_type": "a number", "string_type": "a string", "bool_type": "a boolean",
            "model_type": "an object", "dict_type": "an object", "list_type": "an array"}


def validation_error(errors: list[dict], model: type[BaseModel] | None = None) -> APIError:
    """The first of pydantic's errors as a 400 naming its param; `model` lends its fields' descriptions to
    the message for a missing field."""
    error = errors[0]
    loc = error["loc"]
    param = wire_param(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)  # FastAPI's prefixes
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "pacos":
        at = ctx.get("at") or param
        message = ctx["message"] if ctx.get("at") or not param else f"Invalid '{param}': {ctx['message']}"
        return bad(message, at, ctx.get("code"))
    if param is None:
        return bad("the request body must be a JSON object")
    if kind == "missing":
        field = model.model_fields.get(param) if model is not None else None
        hint = f": {field.description}" if field is not None and field.description else ""
        return bad(f"'{param}' is required{hint}", param)
    if kind in EXPECTED:
        return bad(f"Invalid type for '{param}': expected {EXPECTED[kind]}, but got {json_kind(error['input'])} "
                   "instead", param)
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = f">= {ctx['ge']}" if kind == "greater_than_equal" else f"<= {ctx['le']}"
        return bad(f"'{param}' must be {bound} (got {error['input']})", param)
    return bad(f"Invalid value for '{param}': {error['msg']}", param)


def wire_param(loc) -> str | None:
    """pydantic's location as OpenAI names a param: ("messages", 0, "content") -> "messages[0].content"."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or None


def json_kind(value) -> str:
    for kind, name in ((type(None), "null"), (bool, "a boolean"), (int, "an integer"), (float, "a number"),
                       (str, "a string"), (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def shown(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_json(raw: bytes):
    """The body through the one strict JSON reader: NaN, huge integers, deep nesting, duplicate keys and lone
    surrogates are 400s here, never a crash (or a NaN in the sampler) later."""
    try:
        return strict_json.loads(raw)
    except strict_json.JSONInputError as e:
        raise bad(f"the request body is not valid JSON: {e}") from None


# -- bodies -----------------------------------------------------------------------------------------------
class Body(BaseModel):
    """A JSON request body: unknown fields are ignored and null means the default (OpenAI's nullable
    parameters); `from_json` and `parse` answer every failure as an `APIError`."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data):
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data

    @classmethod
    def parse(cls, data) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise validation_error(e.errors(include_url=False), cls) from None

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        return cls.parse(read_json(raw))


def _stops(value) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise refuse(f"must be a non-empty string or a list of at most {MAX_STOPS} non-empty strings")
    return stops


class StreamOptions(Body):
    include_usage: StrictBool = False


class GenerationRequest(Body):
    """What /v1/chat/completions and /v1/completions share: the model, sampling and streaming."""

    model: StrictStr = Field(min_length=1, description="the name listed by GET /v1/models")
    max_tokens: StrictInt | None = None  # None: as many as the endpoint's default and the context allow
    max_completion_tokens: StrictInt | None = None  # OpenAI's newer name; wins over max_tokens
    temperature: StrictFloat = 1.0  # OpenAI's default
    top_p: StrictFloat = 1.0
    top_k: StrictInt = 0  # an extension, as in vLLM
    repetition_penalty: StrictFloat = 1.0  # an extension, as in vLLM
    presence_penalty: StrictFloat = 0.0
    frequency_penalty: StrictFloat = 0.0
    seed: StrictInt | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    ignore_eos: StrictBool = False  # vLLM's extension: run to max_tokens (benchmarks)
    stop: Annotated[list[str], BeforeValidator(_stops)] = []
    n: StrictInt = Field(1, ge=1, le=MAX_N)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data):
        if isinstance(data, dict):
            for name, why in UNSUPPORTED.items():
                if data.get(name) not in (None, False, [], {}):
                    raise refuse(why, at=name)
            if data.get("response_format") not in (None, {"type": "text"}):
                raise refuse("response_format other than {'type': 'text'} is not supported by pacos serve",
                             at="response_format")
        return data

    @model_validator(mode="after")
    def _sampling_in_range(self) -> Self:
        budget = "max_tokens"
        if self.max_completion_tokens is not None:
            budget, self.max_tokens = "max_completion_tokens", self.max_completion_tokens
        try:  # the ranges live with SamplingParams, so the server and the Python API refuse the same values
            self.sampling.check()
        except SamplingError as e:
            param = budget if e.param == "max_new_tokens" else e.param  # SamplingParams' names are OpenAI's but one
            raise refuse(str(e).replace(f"'{e.param}'", f"'{param}'"), at=param) from None
        return self

    @property
    def sampling(self) -> SamplingParams:
        """The request's sampling; without max_tokens a budget of 1 stands in until the prompt's is known."""
        return SamplingParams(max_new_tokens=1 if self.max_tokens is None else self.max_tokens,
                              temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              repetition_penalty=self.repetition_penalty,
                              presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                              seed=self.seed)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def _role(value) -> str:
    if value == "developer":  # OpenAI's newer name for the system message
        return "system"
    if value in ("tool", "function"):
        raise refuse(f"a {value!r} message: tools / function calling is not supported by pacos serve")
    if value not in ("system", "user", "assistant"):
        raise refuse(f"must be 'system', 'user' or 'assistant' (got {shown(value)})")
    return value


def _content_text(content) -> str:
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in content):
            raise refuse("only text content parts are supported")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise refuse("must be a string or a list of text parts")
    if len(content) > MAX_MESSAGE_CHARS:
        raise refuse(f"too long: {TOO_LONG}", code="request_too_large")
    return content


class ChatMessage(Body):
    role: Annotated[Literal["system", "user", "assistant"], BeforeValidator(_role)]
    content: Annotated[str, BeforeValidator(_content_text)]  # text parts are joined into one string


def _message_count(messages):
    if not isinstance(messages, list) or not messages:
        raise refuse("must be a non-empty list of {role, content}")
    if len(messages) > MAX_MESSAGES:
        raise refuse(f"holds {len(messages)} messages; at most {MAX_MESSAGES} are accepted in one request",
                     code="request_too_large")
    return messages


class ChatCompletionRequest(GenerationRequest):
    messages: Annotated[list[ChatMessage], BeforeValidator(_message_count)] = Field(
        description="a non-empty list of {role, content}")

    @field_validator("messages")
    @classmethod
    def _a_conversation(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        size = 0
        for i, m in enumerate(messages):
            size += len(m.content)
            if size > MAX_REQUEST_CHARS:
                raise refuse(f"messages[{i}].content is too long: {TOO_LONG}", f"messages[{i}].content",
                             "request_too_large")
        start = 1 if messages[0].role == "system" else 0
        for i, m in enumerate(messages[start:], start):
            expected = "user" if (i - start) % 2 == 0 else "assistant"
            if m.role != expected:
                raise refuse(f"messages[{i}] is a {m.role} message where a {expected} message was expected: after "
                             "an optional first system message, user and assistant messages must alternate",
                             f"messages[{i}]")
        if messages[-1].role != "user":
            raise refuse("the last message must be a user message", "messages")
        return messages

    @property
    def conversation(self) -> Conversation:
        return Conversation([Message(m.role, m.content) for m in self.messages])


def _is_token_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                            for t in value)


def _prompts(prompt) -> list:
    if isinstance(prompt, str) or _is_token_list(prompt):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) or _is_token_list(p) for p in prompt):
        prompts = prompt
    else:
        raise refuse("must be a string, a list of strings, or a list of token ids")
    size = sum(len(p) for p in prompts)
    if size > MAX_REQUEST_CHARS:
        raise refuse(f"holds {size} characters or token ids; at most {MAX_REQUEST_CHARS} are accepted in one "
                     "request", code="request_too_large")
    return prompts


class CompletionRequest(GenerationRequest):
    prompt: Annotated[list[str | list[int]], BeforeValidator(_prompts)] = Field(
        description="a string, a list of strings, or a list of token ids")
    best_of: Any = 1

    @field_validator("best_of")
    @classmethod
    def _one_of_one(cls, value):
        if value != 1:
            raise refuse("best_of is not supported by pacos serve (use n)", at="best_of")
        return value

    @property
    def prompts(self) -> list:
        """Strings or token-id lists, one per prompt."""
        return self.prompt


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
