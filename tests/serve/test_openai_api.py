"""The official openai client against a live `pacos serve`: chat, streaming, completions, n, stop, errors, auth."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

MODEL = "tiny"
HELLO = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello."}]


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    health = server.health()  # with the key: the figures
    assert health["status"] == "ok" and health["model"] == MODEL and health["engine"] == "transformers"
    assert {"running", "waiting", "steps"} <= set(health)
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}  # without: liveness only


def test_chat_plain_and_streamed_agree(client):
    full = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=24, temperature=0)
    choice = full.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert full.usage.prompt_tokens > 0 and full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    assert choice.message.refusal is None
    chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=24, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert chunks[-2].choices[0].finish_reason == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage


def test_stream_ends_with_done_and_include_usage(server):
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    import json

    last = json.loads(events[-2][6:])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] >= 1


def test_completions_plain_streamed_and_batched(client):
    full = client.completions.create(model=MODEL, prompt="The cat", max_tokens=12, temperature=0)
    assert full.object == "text_completion" and full.usage.prompt_tokens == len("The cat") + 1  # chars + BOS
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The cat", max_tokens=12, temperature=0, stream=True) if c.choices)
    assert streamed == full.choices[0].text
    both = client.completions.create(model=MODEL, prompt=["The cat", "A dog"], max_tokens=12, temperature=0)
    assert [c.index for c in both.choices] == [0, 1] and both.choices[0].text == full.choices[0].text
    assert client.completions.create(model=MODEL, prompt="The cat", max_tokens=4).usage.completion_tokens <= 4


def test_n_choices_and_seed(client):
    kw = {"model": MODEL, "messages": HELLO, "max_tokens": 10, "temperature": 1.0, "seed": 11, "n": 3}
    a = client.chat.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert len({c.message.content for c in a.choices}) > 1  # seed + index: the choices differ ...
    b = client.chat.completions.create(**kw)
    assert [c.message.content for c in b.choices] == [c.message.content for c in a.choices]  # ... and repeat
    assert a.usage.completion_tokens == b.usage.completion_tokens
    streamed = client.chat.completions.create(**kw, stream=True)
    texts = ["", "", ""]
    for chunk in streamed:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in a.choices]


def test_stop_strings(client):
    text = client.completions.create(model=MODEL, prompt="Once", max_tokens=30, temperature=0).choices[0].text
    stop = next(ch for ch in text[3:] if ch.isalnum())
    cut = client.completions.create(model=MODEL, prompt="Once", max_tokens=30, temperature=0, stop=[stop, "@@@"])
    assert cut.choices[0].text == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="Once", max_tokens=30, temperature=0, stop=stop, stream=True) if c.choices)
    assert streamed == cut.choices[0].text


def test_penalties_are_accepted(client):
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, presence_penalty=1.5,
                                       frequency_penalty=0.5, top_p=0.9, temperature=0.7)
    assert r.choices[0].finish_reason in ("stop", "length")


def _error(call, status: int):
    with pytest.raises(openai.APIStatusError) as info:
        call()
    assert info.value.status_code == status, info.value
    body = info.value.body
    assert set(body) == {"message", "type", "param", "code"}, body  # the client unwraps {"error": ...}
    return body


@pytest.mark.parametrize("kwargs, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "messages[1]"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "messages"),
    ({"messages": HELLO, "temperature": 5}, "temperature"),
    ({"messages": HELLO, "top_p": 0}, "top_p"),
    ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"messages": HELLO, "n": 0}, "n"),
    ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": HELLO, "presence_penalty": 3}, "presence_penalty"),
    ({"messages": HELLO, "logprobs": True}, "logprobs"),
    ({"messages": HELLO, "extra_body": {"seed": "x"}}, "seed"),
])
def test_invalid_chat_fields_are_400(client, kwargs, param):
    body = _error(lambda: client.chat.completions.create(model=MODEL, **kwargs), 400)
    assert body["type"] == "invalid_request_error" and body["param"] == param


def test_context_overflow_says_by_how_much(client):
    body = _error(lambda: client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1020), 400)
    assert body["code"] == "context_length_exceeded" and "1024" in body["message"] and "over the limit" in body["message"]
    ids = _error(lambda: client.completions.create(model=MODEL, prompt=[1, 10**6]), 400)
    assert ids["param"] == "prompt" and "vocabulary" in ids["message"]
    over = _error(lambda: client.completions.create(model=MODEL, prompt="x" * 1100), 400)
    assert over["code"] == "context_length_exceeded" and over["param"] == "prompt"


def test_unknown_model_is_404(client):
    body = _error(lambda: client.chat.completions.create(model="gpt-4", messages=HELLO), 404)
    assert body["code"] == "model_not_found" and "tiny" in body["message"]
    _error(lambda: client.models.retrieve("nope"), 404)


def test_auth(server):
    from openai import OpenAI

    for key in ("wrong", ""):
        bad = OpenAI(base_url=server.url + "/v1", api_key=key or "x", max_retries=0,
                     default_headers={} if key else {"Authorization": ""})
        body = _error(bad.models.list, 401)
        assert body["code"] == "invalid_api_key"
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("content, status", [
    (b"{not json", 400), (b"[1, 2]", 400), (b'{"model": "tiny", "messages": "hi"}', 400), (b"", 400),
    (b'{"model": "tiny", "prompt": "a", "stream": "yes"}', 400), (b"\xff\xfe", 400),
    (b'{"model": "tiny", "prompt": "' + b"a" * (5 << 20) + b'"}', 413),
])
def test_malformed_and_oversized_bodies(server, content, status):
    path = "/v1/completions" if b'"prompt"' in content else "/v1/chat/completions"
    r = httpx.post(server.url + path, content=content, timeout=60,
                   headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"})
    assert r.status_code == status and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_route_and_method_are_openai_shaped(server):
    headers = {"Authorization": f"Bearer {server.api_key}"}
    assert httpx.get(server.url + "/v1/nothing", headers=headers).json()["error"]["code"] == "not_found"
    assert httpx.get(server.url + "/v1/chat/completions", headers=headers).status_code == 405


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_cancels_generation(server, stream):
    before = server.health()["cancelled"]
    body = {"model": MODEL, "prompt": "Tell me a long story", "max_tokens": 900, "stream": stream,
            "temperature": 0, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    if stream:
        with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60, headers=headers) as r:
            lines = r.iter_lines()
            for _ in range(6):
                next(lines)
    else:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            httpx.post(server.url + "/v1/completions", json=body, headers=headers, timeout=1.5)
    deadline = time.time() + 15
    while time.time() < deadline and server.health()["cancelled"] == before:
        time.sleep(0.1)
    health = server.health()
    assert health["cancelled"] == before + 1 and health["running"] == 0
