"""Every body a live `pacos serve` answers, each SSE chunk included, checked against OpenAI's official schemas."""

from __future__ import annotations

import json

import httpx
import pytest

from .openai_schemas import HERE as SCHEMA_DIR
from .openai_schemas import assert_conforms, schema_errors
from .openai_schemas.build import ROOTS, bundle

MODEL = "tiny"
CHAT = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello."}]


def post(server, path: str, body, *, key: str | None = "", headers: dict | None = None, timeout: float = 60):
    """POST JSON (a dict, or bytes sent as they are) with the server's key unless told otherwise."""
    key = server.api_key if key == "" else key
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
            **(headers or {})}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + path, content=content, headers=sent, timeout=timeout)


def sse_chunks(response: httpx.Response) -> list[dict]:
    """The JSON chunks of a finished event stream, after checking its framing (data lines, then [DONE])."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    events = [line for line in response.text.split("\n") if line]
    assert events and all(e.startswith("data: ") for e in events), events[:5]
    assert events[-1] == "data: [DONE]" and "data: [DONE]" not in events[:-1], events[-3:]
    return [json.loads(e[len("data: "):]) for e in events[:-1]]


def get(server, path: str, key: str | None = ""):
    key = server.api_key if key == "" else key
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)


# -- the vendored schemas themselves ----------------------------------------------------------------------
def test_vendored_json_is_what_build_makes_of_the_extract():
    import yaml

    schemas = yaml.safe_load((SCHEMA_DIR / "openapi_extract.yaml").read_text())["components"]["schemas"]
    for root in ROOTS:
        assert json.loads((SCHEMA_DIR / f"{root}.json").read_text()) == bundle(schemas, root), root


def _chat_body(**message) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL, "choices": [
        {"index": 0, "message": {"role": "assistant", **message}, "logprobs": None, "finish_reason": "stop"}]}


def test_schemas_hold_the_specs_rules():
    """The translation kept what matters: required fields, enums, nullable as null types, bundled $refs."""
    assert schema_errors("CreateChatCompletionResponse", _chat_body(content="hi", refusal=None)) == []
    assert schema_errors("CreateChatCompletionResponse", _chat_body(content=None, refusal=None)) == []  # nullable
    missing = schema_errors("CreateChatCompletionResponse", _chat_body(content="hi"))
    assert missing == ["choices/0/message: 'refusal' is a required property"]
    wrong = _chat_body(content="hi", refusal=None)
    wrong["choices"][0]["finish_reason"] = "error"  # not one of OpenAI's finish reasons
    errors = schema_errors("CreateChatCompletionResponse", wrong)
    assert [e.split(":")[0] for e in errors] == ["choices/0/finish_reason"]
    error = {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}
    assert schema_errors("ErrorResponse", error) == []
    for field in ("message", "type", "param", "code"):
        partial = {"error": {k: v for k, v in error["error"].items() if k != field}}
        assert schema_errors("ErrorResponse", partial) == [f"error: '{field}' is a required property"]
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "usage": None,
             "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}]}
    assert schema_errors("CreateChatCompletionStreamResponse", chunk) == []
    assert schema_errors("CreateChatCompletionStreamResponse", {**chunk, "object": "chat.completion"}) != []
    assert schema_errors("ListModelsResponse", {"object": "list", "data": [{"id": "m", "object": "model"}]}) != []


# -- live responses ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3])
def test_chat_completion(server, n):
    r = post(server, "/v1/chat/completions", {"model": MODEL, "messages": CHAT, "max_tokens": 4, "n": n, "seed": 3})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert_conforms("CreateChatCompletionResponse", body)
    assert [c["index"] for c in body["choices"]] == list(range(n)) and body["usage"]["completion_tokens"] <= 4 * n


@pytest.mark.parametrize("n", [1, 2])
def test_chat_stream_without_usage_option(server, n):
    r = post(server, "/v1/chat/completions", {"model": MODEL, "messages": CHAT, "max_tokens": 4, "n": n,
                                              "stream": True})
    assert r.status_code == 200
    chunks = sse_chunks(r)
    for chunk in chunks:
        assert_conforms("CreateChatCompletionStreamResponse", chunk)
    # OpenAI sends usage only to clients that asked with stream_options.include_usage.
    assert [c["usage"] for c in chunks if c.get("usage") is not None] == []
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    finished = [ch["index"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert sorted(finished) == list(range(n))


def test_chat_stream_with_usage_option(server):
    r = post(server, "/v1/chat/completions", {"model": MODEL, "messages": CHAT, "max_tokens": 4, "n": 2,
                                              "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    chunks = sse_chunks(r)
    for chunk in chunks:
        assert_conforms("CreateChatCompletionStreamResponse", chunk)
    *rest, last = chunks
    assert last["choices"] == [] and last["usage"]["total_tokens"] == (
        last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"])
    assert all(c.get("usage") is None for c in rest)  # "a null value except for the last chunk"


@pytest.mark.parametrize("prompt", ["The cat", ["The cat", "A dog"], [311, 331, 328], [[311, 331], [259, 326]]],
                         ids=["string", "strings", "token-ids", "token-id-lists"])
def test_completion(server, prompt):
    r = post(server, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 3, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_conforms("CreateCompletionResponse", body)
    prompts = 1 if isinstance(prompt, str) or isinstance(prompt[0], int) else len(prompt)
    assert [c["index"] for c in body["choices"]] == list(range(2 * prompts))


@pytest.mark.parametrize("include_usage", [False, True])
def test_completion_stream(server, include_usage):
    body = {"model": MODEL, "prompt": ["The cat", "A dog"], "max_tokens": 3, "stream": True,
            **({"stream_options": {"include_usage": True}} if include_usage else {})}
    r = post(server, "/v1/completions", body)
    assert r.status_code == 200
    chunks = sse_chunks(r)
    for chunk in chunks:
        assert_conforms("CreateCompletionStreamResponse", chunk)
    usages = [c["usage"] for c in chunks if c.get("usage") is not None]
    if include_usage:
        assert chunks[-1]["choices"] == [] and usages == [chunks[-1]["usage"]]
    else:
        assert usages == []


def test_models(server):
    listed = get(server, "/v1/models")
    assert listed.status_code == 200
    assert_conforms("ListModelsResponse", listed.json())
    assert [m["id"] for m in listed.json()["data"]] == [MODEL]
    one = get(server, f"/v1/models/{MODEL}")
    assert one.status_code == 200
    assert_conforms("Model", one.json())
    assert one.json() == listed.json()["data"][0]


# -- errors -----------------------------------------------------------------------------------------------
def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    assert_conforms("ErrorResponse", r.json())
    return r.json()["error"]


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["no-key", "wrong-key"])
def test_401(server, key):
    assert _error(get(server, "/v1/models", key=key), 401)["code"] == "invalid_api_key"
    _error(post(server, "/v1/chat/completions", {"model": MODEL, "messages": CHAT}, key=key), 401)


def test_404(server):
    assert _error(post(server, "/v1/chat/completions", {"model": "gpt-4", "messages": CHAT}), 404)["param"] == "model"
    _error(post(server, "/v1/completions", {"model": "gpt-4", "prompt": "x"}), 404)
    _error(get(server, "/v1/models/gpt-4"), 404)
    _error(get(server, "/v1/no-such-route"), 404)


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "temperature": 3}, "temperature"),
    ("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "n": "two"}, "n"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, "messages"),
    ("/v1/completions", {"model": MODEL, "prompt": [1, 10**6]}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": -1}, "max_tokens"),
])
def test_400_names_the_field(server, path, body, param):
    assert _error(post(server, path, body), 400)["param"] == param


def test_400_for_a_body_that_is_not_json(server):
    _error(post(server, "/v1/chat/completions", b"{not json"), 400)


def test_405(server):
    _error(get(server, "/v1/chat/completions"), 405)


def test_413(server):
    huge = b'{"model": "tiny", "prompt": "' + b"a" * (5 << 20) + b'"}'
    assert _error(post(server, "/v1/completions", huge), 413)["code"] == "request_too_large"


def test_415_for_a_body_that_is_not_sent_as_json(server):
    body = json.dumps({"model": MODEL, "messages": CHAT, "max_tokens": 1}).encode()
    _error(post(server, "/v1/chat/completions", body, headers={"Content-Type": "text/plain"}), 415)
