"""Hostile and unlucky input against a live `pacos serve`: each reproduction from the hardening issue, as a test.

A server started without --api-key (the default, and the case where a web page could forge votes) is
shared by this module; the session server (with a key) serves the checks that need one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time

import httpx
import pytest

from pacos.serve.protocol import MAX_MESSAGE_CHARS, MAX_MESSAGES, MAX_REQUEST_CHARS

from ..conftest import run_pacos
from .conftest import start_server, stop_server

MODEL = "tiny"
HELLO = [{"role": "user", "content": "Say hello."}]
JSON = {"Content-Type": "application/json"}
SHAPE = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def open_server(tiny_model_dir, tmp_path_factory):
    """No --api-key: nothing but the same-origin rule stands between a web page and the feedback data."""
    tmp = tmp_path_factory.mktemp("serve-open")
    live = start_server(tiny_model_dir, tmp)
    live.log = tmp / "server.log"
    yield live
    stop_server(live)


def post(server, path, content: bytes | str, headers=None, timeout=60):
    return httpx.post(server.url + path, content=content, headers=JSON | (headers or {}), timeout=timeout)


def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == SHAPE, body
    return body["error"]


def stored_ids(server) -> set[str]:
    with sqlite3.connect(server.feedback_db) as db:
        return {row[0] for row in db.execute("SELECT id FROM responses")}


def vote(rid: str, text: str = "The capital of France is Berlin.") -> str:
    return json.dumps({"response_id": rid, "context": [{"role": "user", "content": "Capital of France?"}],
                       "response": text, "vote": "up", "conversation_id": "c-" + rid})


# -- 1. a sampling value that would make probabilities NaN fails only its own request -----------------------------
async def _stream_text(http, body: str) -> tuple[int, str, list[str]]:
    async with http.stream("POST", "/v1/completions", content=body, headers=JSON) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, r.text, []
        text, finishes = "", []
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                for c in chunk["choices"]:
                    text += c["text"]
                    finishes += [c["finish_reason"]] if c["finish_reason"] else []
        return 200, text, finishes


def test_bad_sampling_values_harm_no_other_stream(open_server):
    good = json.dumps({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0.8,
                       "seed": 1, "stream": True, "ignore_eos": True})
    greedy = {"model": MODEL, "prompt": "The cat", "max_tokens": 12, "stream": True, "ignore_eos": True}
    bad = {  # raw bodies: the openai client would never send NaN
        "repetition_penalty": ('{"model": "tiny", "prompt": "x", "stream": true, "repetition_penalty": 1e-320}', 400),
        "temperature": ('{"model": "tiny", "prompt": "x", "stream": true, "temperature": NaN}', 400),
        "presence_penalty": ('{"model": "tiny", "prompt": "x", "stream": true, "presence_penalty": -Infinity}', 400),
    }

    async def run():
        async with httpx.AsyncClient(base_url=open_server.url, timeout=120) as http:
            goods = [asyncio.create_task(_stream_text(http, good)) for _ in range(4)]
            await asyncio.sleep(0.3)  # the good streams are generating when the bad ones arrive
            tiny = asyncio.create_task(_stream_text(http, json.dumps(greedy | {"temperature": 1e-320})))
            bads = {name: await _stream_text(http, body) for name, (body, _) in bad.items()}
            zero = await _stream_text(http, json.dumps(greedy | {"temperature": 0}))
            return [await g for g in goods], await tiny, bads, zero

    goods, tiny, bads, zero = asyncio.run(run())
    for status, text, finishes in goods:
        assert status == 200 and finishes == ["length"] and text
    assert len({text for _, text, _ in goods}) == 1  # same seed, same text: nothing disturbed them
    for name, (status, text, _) in bads.items():
        assert status == 400 and json.loads(text)["error"]["param"] in (name, None), text
    assert tiny[0] == 200 and tiny[2] == ["length"] and tiny[1] == zero[1]  # a denormal temperature is greedy


# -- 2. one request can't freeze the server ----------------------------------------------------------------------
def _chat(n: int, chars: int = 1) -> list[dict]:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x" * chars} for i in range(n)]
    return msgs if n % 2 else msgs[:-1]


def test_thousands_of_messages_are_a_fast_400(open_server):
    body = json.dumps({"model": MODEL, "messages": _chat(4001)})
    t = time.perf_counter()
    err = error_of(post(open_server, "/v1/chat/completions", body), 400)
    assert time.perf_counter() - t < 2
    assert err["param"] == "messages" and str(MAX_MESSAGES) in err["message"] and err["code"] == "request_too_large"
    err = error_of(post(open_server, "/v1/chat/completions", json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "y" * (MAX_MESSAGE_CHARS + 1)}]})), 400)
    assert str(MAX_MESSAGE_CHARS) in err["message"]


def test_health_stays_fast_while_the_largest_request_is_templated(open_server):
    per_message = MAX_REQUEST_CHARS // MAX_MESSAGES
    body = json.dumps({"model": MODEL, "messages": _chat(MAX_MESSAGES, per_message)})
    result = {}

    def big():
        result["response"] = post(open_server, "/v1/chat/completions", body, timeout=120)

    worker = threading.Thread(target=big)
    worker.start()
    latencies = []
    with httpx.Client(timeout=10) as http:
        while worker.is_alive():
            t = time.perf_counter()
            assert http.get(open_server.url + "/health").json()["status"] == "ok"
            latencies.append(time.perf_counter() - t)
            time.sleep(0.02)
    worker.join()
    # Templated and tokenized in full (a million characters), then refused for the tiny model's context.
    assert error_of(result["response"], 400)["code"] == "context_length_exceeded"
    assert len(latencies) >= 3 and max(latencies) < 0.5, latencies


# -- 3. no other web page may write -------------------------------------------------------------------------------
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_posts_are_415_and_store_nothing(open_server, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    steps = open_server.health()["steps"]
    rid = f"plain-{ctype}"
    r = httpx.post(open_server.url + "/feedback", content=vote(rid), headers=headers)
    assert error_of(r, 415)["code"] == "unsupported_media_type"
    r = httpx.post(open_server.url + "/v1/chat/completions", headers=headers,
                   content=json.dumps({"model": MODEL, "messages": HELLO, "max_tokens": 4}))
    assert r.status_code == 415
    assert rid not in stored_ids(open_server) and open_server.health()["steps"] == steps  # no generation ran


def test_cross_origin_writes_are_403_same_origin_works(open_server, tmp_path):
    own = open_server.url  # http://127.0.0.1:PORT, what the page itself sends
    port = own.rsplit(":", 1)[1]
    for i, headers in enumerate([{"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{int(port) + 1}"},
                                 {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}]):
        err = error_of(post(open_server, "/feedback", vote(f"forged-{i}"), headers), 403)
        assert err["code"] == "cross_origin_forbidden"
        r = post(open_server, "/v1/completions", json.dumps({"model": MODEL, "prompt": "a", "max_tokens": 2}), headers)
        assert r.status_code == 403
    page = {"Origin": own, "Sec-Fetch-Site": "same-origin"}
    assert post(open_server, "/feedback", vote("own-page", "Paris."), page).json() == {"ok": True,
                                                                                       "response_id": "own-page"}
    r = post(open_server, "/v1/chat/completions", json.dumps({"model": MODEL, "messages": HELLO, "max_tokens": 3}), page)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["refusal"] is None
    assert not any(i.startswith("forged") for i in stored_ids(open_server))
    sft = tmp_path / "sft.jsonl"
    run_pacos("feedback", "export", open_server.feedback_db, "--format", "sft", "--out", sft, check=True)
    answers = [json.loads(line)["messages"][-1]["content"] for line in sft.read_text().splitlines()]
    assert "Paris." in answers and not any("Berlin" in a for a in answers)


# -- 5. malformed bodies are 400s in OpenAI's shape, never 500s ---------------------------------------------------
LONE = "\\ud800"  # a JSON escape for a lone surrogate


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", '{"model": "tiny", "messages": [{"role": "user", "content": "a' + LONE + '"}]}', None),
    ("/v1/completions", '{"model": "tiny", "prompt": "' + LONE + '"}', None),
    ("/v1/chat/completions", '{"model": "tiny' + LONE + '", "messages": [{"role": "user", "content": "a"}]}', None),
    ("/feedback", vote("surrogate", "x" + chr(0xD800)), None),  # json.dumps writes it as an escape
    ("/v1/completions", '{"model": "tiny", "prompt": ' + "[" * 50_000 + "]" * 50_000 + "}", None),
    ("/v1/completions", '{"model": "tiny", "prompt": [' + "7" * 5000 + "]}", None),
    ("/v1/completions", '{"model": "tiny", "prompt": "a", "max_tokens": 1e400}', None),
    ("/v1/completions", '{"model": "tiny", "prompt": "a", "prompt": "b"}', None),
    ("/v1/completions", '{"model": "tiny", "prompt": "a", "seed": ' + str(2 ** 64) + "}", "seed"),
    ("/v1/completions", '{"model": "tiny", "prompt": "a", "temperature": Infinity}', None),
    ("/v1/chat/completions", '{"model": "tiny", "messages": [{"role": "user", "content": "a"}, '
                             '{"role": "tool", "content": "{}", "tool_call_id": "c1"}]}', "messages[1].role"),
])
def test_malformed_bodies_are_openai_shaped_400s(open_server, path, body, param):
    err = error_of(post(open_server, path, body), 400)
    assert err["type"] == "invalid_request_error" and (param is None or err["param"] == param), err
    assert "surrogate" not in path or "surrogate" in err["message"]


def test_odd_model_names_in_the_url_are_404s(open_server):
    for name in ("%ED%A0%80", "%FF%FE", "a%00b", "x" * 5000):
        err = error_of(httpx.get(f"{open_server.url}/v1/models/{name}"), 404)
        assert err["code"] == "model_not_found"


# -- 6. conformance, shares, health, disconnects ------------------------------------------------------------------
def _chunks(server, body: dict) -> list[dict]:
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_usage_only_when_include_usage(open_server):
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 5, "stream": True}
    assert all("usage" not in c for c in _chunks(open_server, body))
    chunks = _chunks(open_server, body | {"stream_options": {"include_usage": True}})
    assert all(c["usage"] is None and c["choices"] for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}


def test_one_request_cannot_take_every_slot(open_server):
    steps = open_server.health()["steps"]
    err = error_of(post(open_server, "/v1/completions", json.dumps(
        {"model": MODEL, "prompt": ["p"] * 100, "n": 16, "max_tokens": 4})), 400)
    assert err["param"] == "n" and "1600 choices" in err["message"] and "at most 16" in err["message"]
    assert open_server.health()["steps"] == steps and open_server.health()["waiting"] == 0
    r = post(open_server, "/v1/completions", json.dumps({"model": MODEL, "prompt": ["a", "b"], "n": 8, "max_tokens": 2}))
    assert r.status_code == 200 and len(r.json()["choices"]) == 16  # exactly the share is fine


def test_health_figures_need_the_key(server, open_server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    bad = {"Authorization": "Bearer wrong"}
    assert httpx.get(server.url + "/health", headers=bad).json() == {"status": "ok"}
    assert "running" in server.health()  # with the key
    assert "running" in httpx.get(open_server.url + "/health").json()  # no key configured: nothing to protect


def test_disconnect_mid_body_logs_no_traceback(open_server):
    host, port = open_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                  "Content-Length: 100000\r\n\r\n{\"model\": \"tiny\", ".encode())
        time.sleep(0.3)  # the handler is now waiting for the rest of the body
    time.sleep(0.5)
    assert httpx.get(open_server.url + "/health").json()["status"] == "ok"
    log = open_server.log.read_text()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log
