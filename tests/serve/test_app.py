"""The app with stand-in engines: a full queue is 503 + Retry-After, engine failures are OpenAI-shaped 500s."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pacos.infer.engine import Engine, Event, QueueFull, Stream
from pacos.serve.app import create_app
from pacos.serve.feedback import FeedbackStore

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


class ScriptedStream(Stream):
    def __init__(self, events):
        super().__init__()
        self.script, self.prompt_tokens, self.tokens, self.cancelled = events, 2, 0, False

    @property
    def completion_tokens(self):
        return self.tokens

    @property
    def done(self):
        return self.cancelled

    async def aevents(self):
        for ev in self.script:
            self.tokens = ev.completion_tokens
            yield ev

    def cancel(self):
        self.cancelled = True


class StandIn(Engine):
    name, context_length, revision = "stand-in", 64, "rev1"

    def __init__(self, script=None, full=False):
        from pacos.prompting.templates import get_template

        self.script, self.full, self.started = script or [], full, []
        self.template = get_template("chatml")

    def encode(self, record, template=None):
        return [1, 2]

    def encode_text(self, text):
        return [1] * len(text)

    def start(self, prompt_ids, sampling, *, stops=(), template=None, ignore_eos=False, sink=None):
        if self.full:
            raise QueueFull("3 requests are already waiting")
        self.started.append(sampling)
        return ScriptedStream(self.script)


def app_client(backend, **kw):
    """The app on one stand-in served as "m", or on {name: engine}."""
    engines = backend if isinstance(backend, dict) else {"m": backend}
    return TestClient(create_app(engines, **kw), raise_server_exceptions=False)


def test_full_queue_is_503_with_retry_after():
    r = app_client(StandIn(full=True)).post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert r.json()["error"]["code"] == "server_overloaded"


def test_engine_failure_is_a_500_in_openai_shape_plain_and_streamed(caplog):
    client = app_client(StandIn([Event("par", None, 1), Event("", "error", 1, "RuntimeError: boom")]))
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "boom" not in r.text and "server log" in r.json()["error"]["message"]  # internals stay in the log
    assert "RuntimeError: boom" in caplog.text
    r = client.post("/v1/chat/completions", json=CHAT | {"stream": True})
    assert '"server_error"' in r.text and "boom" not in r.text and r.text.rstrip().endswith("data: [DONE]")


def test_unexpected_exception_is_a_500_without_internals():
    class Broken(StandIn):
        def encode(self, record, template=None):
            raise KeyError("secret internal detail")

    r = app_client(Broken()).post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 500 and "secret" not in r.text
    assert r.json()["error"] == {"message": "internal error; see the server log", "type": "server_error",
                                 "param": None, "code": None}


def test_texts_usage_and_seed_per_choice():
    backend = StandIn([Event("a", None, 1), Event("b", "stop", 2)])
    r = app_client(backend).post("/v1/chat/completions", json=CHAT | {"n": 2, "seed": 5})
    body = r.json()
    assert [c["message"]["content"] for c in body["choices"]] == ["ab", "ab"]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert [s.seed for s in backend.started] == [5, 6] and backend.started[0].max_new_tokens == 4
    backend.started.clear()
    app_client(backend).post("/v1/chat/completions", json={k: v for k, v in CHAT.items() if k != "max_tokens"})
    assert backend.started[0].max_new_tokens == 62  # no max_tokens: what the 64-token context leaves


def test_feedback_endpoint_validates_and_stores(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite3")
    client = app_client(StandIn(), feedback=store, api_key="k")
    item = {"response_id": "r1", "context": [{"role": "user", "content": "hi"}], "response": "yo",
            "params": {"temperature": 0.7}, "vote": "up", "conversation_id": "c1"}
    assert client.post("/feedback", json=item).status_code == 401
    auth = {"Authorization": "Bearer k"}
    assert client.post("/feedback", json=item, headers=auth).json() == {"ok": True, "response_id": "r1"}
    [row] = store.responses()
    assert (row["model"], row["revision"], row["template"], row["rating"]) == ("m", "rev1", "chatml", "up")
    for bad in ({**item, "vote": "sideways"}, {**item, "context": "hi"}, {**item, "response_id": 3}, [1]):
        r = client.post("/feedback", json=bad, headers=auth)
        assert r.status_code == 400 and "error" in r.json()
    assert app_client(StandIn()).post("/feedback", json=item).status_code == 404  # --no-feedback


def test_index_page_is_served():
    r = app_client(StandIn()).get("/")
    assert r.status_code == 200 and "pacos chat" in r.text and "/v1/chat/completions" in r.text


@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions"])
def test_auth_is_required_when_a_key_is_set(path):
    client = app_client(StandIn(), api_key="k")
    r = client.get(path) if path.endswith("models") else client.post(path, json=CHAT)
    assert r.status_code == 401


def test_allow_origin_opens_cors_for_that_origin_only():
    client = app_client(StandIn([Event("a", "stop", 1)]), allow_origins=("https://app.example",))
    preflight = client.options("/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://app.example"
    r = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://other.example"}).status_code == 403
    closed = app_client(StandIn([Event("a", "stop", 1)]))  # without the flag: no preflight passes
    assert "access-control-allow-origin" not in closed.options("/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"}).headers
