"""The routers with a stand-in engine: every route but the public ones is behind the access dependency, and
every body's validation failure is an OpenAI-shaped 400 naming its param, never FastAPI's 422."""

from __future__ import annotations

import re

import fastapi.routing
import pytest
from fastapi.routing import APIRoute

from pacos.infer.engine import Event
from pacos.serve.access import require_access
from pacos.serve.app import create_app
from pacos.serve.feedback import FeedbackStore

from .test_app import CHAT, StandIn, app_client

PUBLIC = {"/", "/compare", "/health"}  # the pages and liveness: open to anyone, by design
KEY = {"Authorization": "Bearer k"}
BODIES = {"/v1/chat/completions": CHAT, "/v1/completions": {"model": "m", "prompt": "hi", "max_tokens": 2},
          "/feedback": {"response_id": "r1", "response": "yo", "context": [{"role": "user", "content": "hi"}]},
          "/compare/sessions": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
          "/compare/votes": {"session": "0" * 32, "vote": "a"}}
KEYED = {"/compare/votes": 404}  # what a route answers with the key, when not 200: no such comparison


def routes(app) -> list:
    """Every route the app answers, with its included routers' dependencies, as FastAPI resolves them."""
    resolve = getattr(fastapi.routing, "iter_route_contexts", None)  # newer FastAPI includes routers lazily
    found = list(resolve(app.routes)) if resolve else list(app.routes)
    # Anything but an APIRoute (a mount, a plain Starlette route) would take no dependencies: there is none.
    others = [r for r in found if not isinstance(getattr(r, "original_route", r), APIRoute)]
    assert others == [], others
    return found


def test_every_route_but_the_public_ones_depends_on_require_access():
    app = create_app({"m": StandIn()}, api_key="k")
    paths = {r.path for r in routes(app)}
    assert {"/v1/models", "/v1/models/{name:path}", "/v1/chat/completions", "/v1/completions", "/feedback",
            "/compare/sessions", "/compare/votes"} <= paths
    assert PUBLIC <= paths
    for route in routes(app):
        guarded = require_access in {d.call for d in route.dependant.dependencies}
        assert guarded == (route.path not in PUBLIC), route.path


@pytest.fixture()
def client(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite3")
    return app_client({"m": StandIn([Event("a", "stop", 1)]), "m2": StandIn([Event("b", "stop", 1)])}, api_key="k",
                      feedback=store)


def calls(client):
    """(method, url, body) for every route of the app, path parameters filled in."""
    for route in routes(client.app):
        url = re.sub(r"\{[^}]*\}", "m", route.path)
        for method in sorted(route.methods):
            yield route.path, method, url, BODIES.get(route.path)


def test_every_guarded_route_refuses_without_the_key_and_answers_with_it(client):
    for path, method, url, body in calls(client):
        anonymous = client.request(method, url, json=body)
        keyed = client.request(method, url, json=body, headers=KEY)
        if path in PUBLIC:
            assert anonymous.status_code == keyed.status_code == 200, path
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        assert anonymous.json()["error"]["code"] == "invalid_api_key"
        assert keyed.status_code == KEYED.get(path, 200), (method, path, keyed.text)


def test_every_guarded_write_is_same_origin_json_only(client):
    writes = [(path, method, url, body) for path, method, url, body in calls(client)
              if path not in PUBLIC and method not in ("GET", "HEAD")]
    assert {path for path, *_ in writes} == {"/v1/chat/completions", "/v1/completions", "/feedback",
                                             "/compare/sessions", "/compare/votes"}
    for path, method, url, body in writes:
        r = client.request(method, url, json=body, headers=KEY | {"Origin": "http://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_forbidden", path
        r = client.request(method, url, content=str(body), headers=KEY | {"Content-Type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", path


MSG = {"role": "user", "content": "hi"}


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", {"model": "m"}, "messages"),  # missing
    ("/v1/chat/completions", {"messages": [MSG]}, "model"),
    ("/v1/chat/completions", {"model": 5, "messages": [MSG]}, "model"),  # wrong type
    ("/v1/chat/completions", {"model": "m", "messages": "hi"}, "messages"),
    ("/v1/chat/completions", {"model": "m", "messages": ["hi"]}, "messages[0]"),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
    ("/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content"),
    ("/v1/chat/completions", CHAT | {"n": "2"}, "n"),  # no coercion of "2" to 2 ...
    ("/v1/chat/completions", CHAT | {"n": 2.0}, "n"),  # ... nor of 2.0
    ("/v1/chat/completions", CHAT | {"n": 17}, "n"),
    ("/v1/chat/completions", CHAT | {"temperature": "0.5"}, "temperature"),
    ("/v1/chat/completions", CHAT | {"stream": "true"}, "stream"),
    ("/v1/chat/completions", CHAT | {"stream": True, "stream_options": {"include_usage": "yes"}},
     "stream_options.include_usage"),  # nested, dotted
    ("/v1/chat/completions", CHAT | {"max_tokens": 0}, "max_tokens"),  # SamplingParams' max_new_tokens
    ("/v1/chat/completions", CHAT | {"max_completion_tokens": 0}, "max_completion_tokens"),
    ("/v1/chat/completions", CHAT | {"top_k": -1}, "top_k"),
    ("/v1/chat/completions", CHAT | {"seed": 1.5}, "seed"),
    ("/v1/chat/completions", CHAT | {"logprobs": True}, "logprobs"),
    ("/v1/completions", {"model": "m"}, "prompt"),
    ("/v1/completions", {"model": "m", "prompt": {"text": "hi"}}, "prompt"),
    ("/v1/completions", {"model": "m", "prompt": "hi", "stop": [1]}, "stop"),
    ("/v1/completions", {"model": "m", "prompt": "hi", "best_of": 2}, "best_of"),
    ("/v1/completions", {"model": "m", "prompt": "hi", "ignore_eos": 1}, "ignore_eos"),
    ("/feedback", {"response": "yo", "context": []}, "response_id"),
    ("/feedback", BODIES["/feedback"] | {"response_id": 5}, "response_id"),
    ("/feedback", BODIES["/feedback"] | {"context": [{"role": "user", "content": 5}]}, "context[0].content"),
    ("/feedback", BODIES["/feedback"] | {"vote": "sideways"}, "vote"),
    ("/feedback", BODIES["/feedback"] | {"params": [1]}, "params"),
    ("/feedback", BODIES["/feedback"] | {"model": 5}, "model"),
    ("/compare/sessions", {}, "messages"),
    ("/compare/sessions", BODIES["/compare/sessions"] | {"n": 2}, "n"),
    ("/compare/sessions", BODIES["/compare/sessions"] | {"temperature": -1}, "temperature"),
    ("/compare/sessions", {"messages": [MSG, {"role": "assistant", "content": "yo"}, MSG]}, "messages"),  # one question
    ("/compare/votes", {"vote": "a"}, "session"),
    ("/compare/votes", BODIES["/compare/votes"] | {"vote": "up"}, "vote"),
    ("/compare/votes", BODIES["/compare/votes"] | {"session": ["x"]}, "session"),
    ("/compare/votes", BODIES["/compare/votes"] | {"session": "x" * 65}, "session"),
])
def test_validation_failures_are_400s_naming_the_param(client, path, body, param):
    r = client.post(path, json=body, headers=KEY)
    assert r.status_code == 400, (r.status_code, r.text)
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and param in error["message"], error


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/feedback", "/compare/sessions",
                                  "/compare/votes"])
def test_a_body_that_is_not_an_object_is_a_400_without_param(client, path):
    r = client.post(path, json=[BODIES[path]], headers=KEY)
    assert r.status_code == 400 and r.json()["error"]["param"] is None
    assert "must be a JSON object" in r.json()["error"]["message"]


def test_unknown_fields_are_ignored_and_null_is_the_default(client):
    body = CHAT | {"user": "u1", "metadata": {"a": 1}, "n": None, "temperature": None, "stop": None, "x-y": [1]}
    r = client.post("/v1/chat/completions", json=body, headers=KEY)
    assert r.status_code == 200 and len(r.json()["choices"]) == 1, r.text
    item = BODIES["/feedback"] | {"vote": None, "params": None, "extra": True}
    assert client.post("/feedback", json=item, headers=KEY).json() == {"ok": True, "response_id": "r1"}
