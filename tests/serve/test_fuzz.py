"""Property-based fuzzing of a live `pacos serve`: hostile request bodies never get a 5xx, every answer has
OpenAI's shape (errors included), writes need JSON from the server's own origin, and /health stays quick.

Bodies are written as JSON text by hand (`dump`), so they can hold what Python's encoder won't write and
the openai client won't send: NaN, 1e400, 1e-320, integers of thousands of digits, lone surrogate escapes,
duplicate keys, nesting thousands deep. Generation stays cheap (max_tokens 1-4, n <= 2 unless mutated).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .openai_schemas import assert_conforms
from .test_schemas import MODEL, sse_chunks

HEALTH_SECONDS = 2.0  # /health must answer this fast after (and while) any request
FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.data_too_large])


class Raw(str):
    """JSON text written into the body exactly as it is."""


class Pairs(list):
    """An object as (key, value) pairs, so one can hold a key twice."""


def dump(value, ascii_only: bool = True) -> str:
    if isinstance(value, Raw):
        return value
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v, ascii_only)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return dump(Pairs(value.items()), ascii_only)
    if isinstance(value, list):
        return "[" + ", ".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


# -- values ---------------------------------------------------------------------------------------------
HOSTILE_NUMBERS = ["1e-320", "-1e-320", "4.9e-324", "1e400", "-1e400", "NaN", "-NaN", "Infinity", "-Infinity",
                   "-0", "0.0", "-0.0", "1e308", "2.5", "-1", "0", str(2**63), str(2**64), str(-2**63 - 1),
                   "9" * 101, "1" + "0" * 4400, "0." + "0" * 400 + "1", "1E+2", "01", ".5", "1."]
HOSTILE_STRINGS = [r'"\ud800"', r'"a\udfffb"', r'"\udbff\udbff"', r'"\ud800\u0041"', r'"\u0000"', r'"\x"',
                   r'"\uZZZZ"', '"' + "x" * 20000 + '"', '"\u202e\ufeff"', '"<script>alert(1)</script>"',
                   '"\' OR 1=1 --"', '"unterminated', '"%s%n%x"', '"\\n\\r\\t"', '""']


def nested(depth: int, kind: str) -> Raw:
    return Raw("[" * depth + "]" * depth if kind == "list" else '{"a": ' * depth + "1" + "}" * depth)


DEEP = st.builds(nested, st.sampled_from([50, 101, 1000, 30000]), st.sampled_from(["list", "dict"]))
PLAIN_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)
HOSTILE = st.one_of(st.sampled_from(HOSTILE_NUMBERS).map(Raw), st.sampled_from(HOSTILE_STRINGS).map(Raw), DEEP,
                    PLAIN_JSON, st.sampled_from([[], {}, [[]], [{}], "", True, None]))
# A field that sets the generation budget only ever gets a value that is not a valid small budget, so no
# example asks for a long generation.
BUDGET_FIELDS = ("max_tokens", "max_completion_tokens")
BUDGET_HOSTILE = st.one_of(st.sampled_from(HOSTILE_NUMBERS + HOSTILE_STRINGS).map(Raw), DEEP,
                           st.sampled_from([None, "4", True, [], {}, 2**40, 10**6, 0, -5]))

# -- valid bodies -----------------------------------------------------------------------------------------
TEXT = st.text(max_size=24)
CONTENT = TEXT | st.lists(st.builds(lambda t: {"type": "text", "text": t}, TEXT), min_size=1, max_size=2)
SAMPLING = {
    "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1), "top_k": st.integers(0, 50),
    "presence_penalty": st.floats(-2, 2), "frequency_penalty": st.floats(-2, 2),
    "repetition_penalty": st.floats(0.5, 2), "seed": st.integers(0, 2**63 - 1), "n": st.integers(1, 2),
    "stop": TEXT.filter(bool) | st.lists(TEXT.filter(bool), min_size=1, max_size=4), "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}), "user": TEXT,
    "ignore_eos": st.booleans(),
}


@st.composite
def conversation(draw) -> list[dict]:
    turns = draw(st.integers(0, 3)) if draw(st.integers(0, 9)) else draw(st.integers(4, 150))
    roles = ["user", "assistant"] * turns + ["user"]
    system = [{"role": draw(st.sampled_from(["system", "developer"])), "content": draw(CONTENT)}]
    return (system if draw(st.booleans()) else []) + [{"role": r, "content": draw(CONTENT)} for r in roles]


TOKENS = st.lists(st.integers(3, 364), min_size=1, max_size=12)  # the tiny model's vocabulary is 365 ids
PROMPT = TEXT | st.lists(TEXT, min_size=1, max_size=3) | TOKENS | st.lists(TOKENS, min_size=1, max_size=2)


def with_sampling(base: dict):
    return st.builds(lambda extra: {**base, **extra},
                     st.fixed_dictionaries({}, optional=SAMPLING))


def generation_body(endpoint: str):
    first = ({"messages": conversation()} if endpoint == "chat" else {"prompt": PROMPT})
    base = st.fixed_dictionaries({"model": st.just(MODEL), "max_tokens": st.integers(1, 4), **first})
    return base.flatmap(with_sampling)


FEEDBACK = st.fixed_dictionaries({
    "response_id": st.builds(lambda: "fuzz-" + uuid.uuid4().hex[:12]),
    "response": TEXT, "context": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                                "content": TEXT}), max_size=3),
}, optional={"vote": st.sampled_from(["up", "down", "flag", "unflag"]), "params": st.just({"temperature": 0.7}),
             "conversation_id": TEXT, "regenerated_from": TEXT})

FIELDS = [*SAMPLING, *BUDGET_FIELDS, "model", "messages", "prompt", "logprobs", "tools", "response_format",
          "best_of", "echo", "suffix", "logit_bias", "response_id", "response", "context", "vote", "params"]


# -- mutations --------------------------------------------------------------------------------------------
@st.composite
def mutated(draw, body: dict):
    body = dict(body)
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["set", "drop", "extra", "inner", "duplicate", "many"]))
        if what == "set":
            field = draw(st.sampled_from(FIELDS))
            body[field] = draw(BUDGET_HOSTILE if field in BUDGET_FIELDS else HOSTILE)
        elif what == "drop" and body:
            body.pop(draw(st.sampled_from(sorted(k for k in body if k not in BUDGET_FIELDS) or ["model"])), None)
        elif what == "extra":
            body[draw(st.text(min_size=1, max_size=12))] = draw(HOSTILE)
        elif what == "inner":
            body = mutate_inner(draw, body)
        elif what == "duplicate" and body:
            key = draw(st.sampled_from(sorted(body)))
            return Pairs([*body.items(), (key, draw(HOSTILE))])
        elif what == "many":  # long lists where one item is expected
            key = draw(st.sampled_from(["messages", "prompt", "stop", "context"]))
            body[key] = [draw(TEXT)] * draw(st.sampled_from([0, 5, 300, 3000]))
    return body


def mutate_inner(draw, body: dict) -> dict:
    """Spoil one item inside `messages` / `prompt` / `context`: its role, content, type or the item itself."""
    key = next((k for k in ("messages", "context", "prompt") if isinstance(body.get(k), list) and body[k]), None)
    if key is None:
        return body
    items = list(body[key])
    i = draw(st.integers(0, len(items) - 1))
    if isinstance(items[i], dict):
        items[i] = {**items[i], draw(st.sampled_from(["role", "content", "name", "tool_call_id", "type"])):
                    draw(st.sampled_from(["tool", "function", "wizard", "", "USER"]) | HOSTILE)}
    else:
        items[i] = draw(HOSTILE)
    return {**body, key: items}


CONTENT_TYPES = st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "APPLICATION/JSON",
                                 "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
ORIGINS = st.sampled_from([None] * 6 + ["same", "http://evil.example", "null", "http://127.0.0.1:1", "file://"])


# -- the properties -------------------------------------------------------------------------------------
def send(server, path: str, content: bytes, content_type: str | None, origin: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if origin is not None:
        headers["Origin"] = server.url if origin == "same" else origin
    # httpx sets no Content-Type of its own for `content=`, so None really sends none.
    return httpx.post(server.url + path, content=content, headers=headers, timeout=30)


def check_answer(server, path: str, r: httpx.Response, content_type: str | None, origin: str | None) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:1000]}"
    json_type = content_type is not None and content_type.split(";")[0].strip().lower() == "application/json"
    if origin not in (None, "same"):
        assert r.status_code == 403, f"a write from Origin {origin} got {r.status_code}"
    elif not json_type:
        assert r.status_code == 415, f"a {content_type} body got {r.status_code}"
    if r.status_code >= 400:
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        assert_conforms("ErrorResponse", r.json())
    elif path == "/feedback":
        assert r.json()["ok"] is True
    elif r.headers.get("content-type", "").startswith("text/event-stream"):
        name = "CreateChatCompletionStreamResponse" if "chat" in path else "CreateCompletionStreamResponse"
        for chunk in sse_chunks(r):
            assert_conforms(name, chunk)
    else:
        assert_conforms("CreateChatCompletionResponse" if "chat" in path else "CreateCompletionResponse", r.json())
    check_health(server)


def check_health(server) -> None:
    start = time.monotonic()
    r = httpx.get(server.url + "/health", timeout=HEALTH_SECONDS * 5)
    took = time.monotonic() - start
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert took < HEALTH_SECONDS, f"/health took {took:.1f} s"


def exchange(server, path, body, ascii_only, content_type, origin) -> None:
    content = body if isinstance(body, bytes) else dump(body, ascii_only).encode("utf-8", "surrogatepass")
    check_answer(server, path, send(server, path, content, content_type, origin), content_type, origin)


@settings(FUZZ, max_examples=130)
@given(data=st.data(), endpoint=st.sampled_from(["chat", "completions"]), ascii_only=st.booleans(),
       content_type=CONTENT_TYPES, origin=ORIGINS)
def test_generation_requests(server, data, endpoint, ascii_only, content_type, origin):
    body = data.draw(generation_body(endpoint).flatmap(mutated), label="body")
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    exchange(server, path, body, ascii_only, content_type, origin)


@settings(FUZZ, max_examples=40)
@given(body=FEEDBACK.flatmap(mutated), ascii_only=st.booleans(), content_type=CONTENT_TYPES, origin=ORIGINS)
def test_feedback_requests(server, body, ascii_only, content_type, origin):
    exchange(server, "/feedback", body, ascii_only, content_type, origin)


@st.composite
def broken_json(draw) -> bytes:
    """Bytes that are not one JSON object in UTF-8: random bytes, a body cut short, a bare value, two objects.
    (A leading BOM is left out: RFC 8259 lets a parser ignore one.)"""
    whole = dump(draw(generation_body("completions"))).encode()
    return draw(st.one_of(
        st.binary(max_size=64),
        st.integers(0, len(whole) - 1).map(lambda cut: whole[:cut]),
        HOSTILE.map(lambda v: dump(v).encode("utf-8", "surrogatepass")),
        st.just(whole + whole), st.just(whole + b"\x00"),
        st.just(whole.replace(b'"', b"'")), st.just(whole.decode().encode("utf-16")),
    ))


@settings(FUZZ, max_examples=40)
@given(content=broken_json(), path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/feedback"]))
def test_bodies_that_are_not_one_json_object(server, content, path):
    r = send(server, path, content, "application/json", None)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert_conforms("ErrorResponse", r.json())
    check_health(server)


@settings(FUZZ, max_examples=25)
@given(name=st.text(max_size=40) | st.sampled_from(["\ud800", "a\udfff", "../../etc/passwd", "%00", MODEL + "/x"]))
def test_model_lookup_by_any_name(server, name):
    path = "/v1/models/" + quote(name, safe="", errors="surrogatepass")
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30)
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert_conforms("Model" if r.status_code == 200 else "ErrorResponse", r.json())
    if r.status_code == 200:
        assert r.json()["id"] == name == MODEL
    check_health(server)


def test_health_stays_quick_while_a_huge_conversation_is_handled(server):
    """The templating and tokenizing of one request must not hold the event loop (2,000 one-letter turns)."""
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "a"} for i in range(1999)]
    body = {"model": MODEL, "messages": messages, "max_tokens": 1}
    answer: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answer.append(
        send(server, "/v1/chat/completions", dump(body).encode(), "application/json", None)))
    worker.start()
    try:
        slowest = 0.0
        while worker.is_alive():
            start = time.monotonic()
            httpx.get(server.url + "/health", timeout=60)
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.05)
    finally:
        worker.join(120)
    assert answer and answer[0].status_code < 500, answer and answer[0].text[:500]
    assert_conforms("ErrorResponse" if answer[0].status_code >= 400 else "CreateChatCompletionResponse",
                    answer[0].json())
    assert slowest < HEALTH_SECONDS, f"/health took {slowest:.1f} s while the request was handled"
