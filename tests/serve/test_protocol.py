"""Request validation and the context budget, as plain functions."""

import pytest

from pacos.serve.access import same_origin, write_refusal
from pacos.serve.protocol import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_REQUEST_CHARS,
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    resolve_max_tokens,
    validation_error,
    wire_param,
)

parse_chat_request, parse_completion_request = ChatCompletionRequest.parse, CompletionRequest.parse

MSGS = [{"role": "developer", "content": "be kind"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_chat_request_maps_onto_sampling_params():
    req = parse_chat_request({"model": "m", "messages": MSGS, "temperature": 0, "top_p": 0.5, "stop": "###",
                              "max_completion_tokens": 7, "n": 2, "seed": 3, "presence_penalty": -1})
    assert [(m.role, m.content) for m in req.messages] == [("system", "be kind"), ("user", "hi")]
    s = req.sampling
    assert (s.temperature, s.top_p, s.seed, s.presence_penalty) == (0.0, 0.5, 3, -1.0)
    assert req.stop == ["###"] and req.max_tokens == 7 and req.n == 2 and not req.stream
    assert parse_chat_request({"model": "m", "messages": MSGS}).sampling.temperature == 1.0  # OpenAI's default


def test_completion_prompt_forms():
    assert parse_completion_request({"model": "m", "prompt": "a"}).prompts == ["a"]
    assert parse_completion_request({"model": "m", "prompt": [1, 2]}).prompts == [[1, 2]]
    assert parse_completion_request({"model": "m", "prompt": ["a", [3]]}).prompts == ["a", [3]]
    for bad in ([], [True], None, 5):
        with pytest.raises(APIError, match="prompt"):
            parse_completion_request({"model": "m", "prompt": bad})


@pytest.mark.parametrize("field, value", [("temperature", True), ("n", 1.5), ("top_k", -1), ("stream", 1),
                                          ("response_format", {"type": "json_object"}), ("tools", [{}])])
def test_bad_fields_name_the_param(field, value):
    with pytest.raises(APIError) as info:
        parse_chat_request({"model": "m", "messages": MSGS, field: value})
    assert info.value.status == 400 and info.value.param == field


def test_context_budget():
    req = parse_completion_request({"model": "m", "prompt": "a"})
    assert resolve_max_tokens(req, 10, 100, chat=False) == 16
    req = parse_chat_request({"model": "m", "messages": MSGS})
    assert resolve_max_tokens(req, 90, 100, chat=True) == 10
    req.max_tokens = 20
    with pytest.raises(APIError, match="10 over the limit") as info:
        resolve_max_tokens(req, 90, 100, chat=True)
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    req.max_tokens = None
    with pytest.raises(APIError, match="1 more than fit"):
        resolve_max_tokens(req, 100, 100, chat=True)


@pytest.mark.parametrize("field, value", [("temperature", 2.5), ("repetition_penalty", 1e-320), ("top_p", 0),
                                          ("seed", 2 ** 64), ("seed", -(2 ** 63) - 1), ("frequency_penalty", -3)])
def test_sampling_ranges_come_from_sampling_params(field, value):
    with pytest.raises(APIError) as info:
        parse_chat_request({"model": "m", "messages": MSGS, field: value})
    assert info.value.status == 400 and info.value.param == field and field in info.value.message


def test_tiny_temperature_is_accepted():  # greedy by the engine's rule, not a 400 and not a NaN
    assert parse_chat_request({"model": "m", "messages": MSGS, "temperature": 1e-320}).sampling.temperature == 1e-320
    assert parse_chat_request({"model": "m", "messages": MSGS, "seed": 2 ** 63 - 1}).sampling.seed == 2 ** 63 - 1


def _chat(n, chars=1):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": "x" * chars} for i in range(n)]


def test_request_size_limits_name_the_limit():
    assert len(parse_chat_request({"model": "m", "messages": _chat(MAX_MESSAGES - 1)}).messages) == MAX_MESSAGES - 1
    cases = [({"messages": _chat(MAX_MESSAGES + 1)}, "messages", str(MAX_MESSAGES)),
             ({"messages": _chat(1, MAX_MESSAGE_CHARS + 1)}, "messages[0].content", str(MAX_MESSAGE_CHARS)),
             ({"messages": _chat(9, MAX_MESSAGE_CHARS)}, "messages[4].content", str(MAX_REQUEST_CHARS))]
    for body, param, limit in cases:
        with pytest.raises(APIError) as info:
            parse_chat_request({"model": "m", **body})
        assert (info.value.param, info.value.code) == (param, "request_too_large") and limit in info.value.message
    with pytest.raises(APIError, match=str(MAX_REQUEST_CHARS)):
        parse_completion_request({"model": "m", "prompt": ["a" * MAX_REQUEST_CHARS, "b"]})


@pytest.mark.parametrize("role", ["tool", "function"])
def test_tool_messages_say_tools_are_unsupported(role):
    with pytest.raises(APIError, match="function calling is not supported") as info:
        parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "a"},
                                                       {"role": role, "content": "{}", "tool_call_id": "x"}]})
    assert info.value.param == "messages[1].role"


def test_max_completion_tokens_wins_and_budget_errors_name_the_field_given():
    both = {"model": "m", "messages": MSGS, "max_tokens": 0, "max_completion_tokens": 3}
    assert parse_chat_request(both).max_tokens == 3
    for field in ("max_tokens", "max_completion_tokens"):  # SamplingParams calls it max_new_tokens
        with pytest.raises(APIError) as info:
            parse_chat_request({"model": "m", "messages": MSGS, field: 0})
        assert info.value.param == field and f"'{field}' must be an integer >= 1" in info.value.message


@pytest.mark.parametrize("body, param, message", [
    ({"messages": MSGS}, "model", "'model' is required: the name listed by GET /v1/models"),
    ({"model": "m", "messages": MSGS, "n": "2"}, "n", "Invalid type for 'n': expected an integer, but got a string"),
    ({"model": "m", "messages": MSGS, "n": 17}, "n", "'n' must be <= 16 (got 17)"),
    ({"model": "m", "messages": MSGS, "stream_options": {"include_usage": 1}}, "stream_options.include_usage",
     "expected a boolean, but got an integer"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "messages[0].content",
     "only text content parts are supported"),
    ({"model": "m", "messages": [{"role": "user", "content": "a"}, "b"]}, "messages[1]", "expected an object"),
    ({"model": "m", "messages": [{"role": ["user"], "content": "a"}]}, "messages[0].role", "(got ['user'])"),
])
def test_validation_messages_name_the_param(body, param, message):
    with pytest.raises(APIError) as info:
        parse_chat_request(body)
    assert (info.value.status, info.value.param) == (400, param) and message in info.value.message


def test_params_are_named_as_openai_writes_them():
    assert wire_param(("messages", 0, "content")) == "messages[0].content"
    assert wire_param(("stream_options", "include_usage")) == "stream_options.include_usage"
    assert wire_param(()) is None
    # FastAPI's own errors (RequestValidationError) lead with where the value was: body, query or path.
    error = validation_error([{"type": "missing", "loc": ("body", "messages", 2, "role"), "msg": "Field required",
                               "input": {}}])
    assert (error.status, error.param, error.message) == (400, "messages[2].role", "'messages[2].role' is required")


def test_error_bodies_encode_lone_surrogates():
    body = APIError(404, "The model '" + chr(0xD800) + "' does not exist").body()
    assert body["error"]["message"] == "The model '" + "\\" + "ud800' does not exist"
    body["error"]["message"].encode("utf-8")


@pytest.mark.parametrize("origin, host, same", [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", True), ("http://localhost:8000", "localhost:8000", True),
    ("https://chat.example", "chat.example", True), ("https://chat.example", "chat.example:443", True),
    ("http://127.0.0.1:8001", "127.0.0.1:8000", False), ("http://evil.example", "127.0.0.1:8000", False),
    ("null", "127.0.0.1:8000", False), ("http://[::1]:8000", "[::1]:8000", True), ("http://h:99999", "h", False),
    ("http://127.0.0.1:8000", None, False), ("file://", "127.0.0.1:8000", False),
])
def test_same_origin(origin, host, same):
    assert same_origin(origin, host) is same


def test_write_refusals():
    json_ = {"content-type": "application/json; charset=utf-8", "host": "127.0.0.1:8000"}
    assert write_refusal(json_) is None  # curl / the openai client: no Origin
    assert write_refusal(json_ | {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}) is None
    assert write_refusal(json_ | {"origin": "http://evil.example"}).status == 403
    assert write_refusal(json_ | {"sec-fetch-site": "cross-site"}).status == 403
    allowed = frozenset({"http://evil.example"})
    assert write_refusal(json_ | {"origin": "http://EVIL.example", "sec-fetch-site": "cross-site"}, allowed) is None
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
        refusal = write_refusal({"content-type": ctype, "host": "127.0.0.1:8000"})
        assert refusal.status == 415 and refusal.code == "unsupported_media_type"
