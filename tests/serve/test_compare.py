"""Blind side-by-side votes: two models on one server, the pairing drawn by the server, names hidden until the
vote, the row stored from what the server streamed, and every way of forging or spoiling a vote refused."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.infer.engine import Event
from pacos.serve.compare import CompareSessions
from pacos.serve.feedback import FeedbackStore

from .conftest import COMPARED
from .test_app import StandIn, app_client
from .test_fuzz import CONTENT_TYPES, FUZZ, HOSTILE, ORIGINS, check_health, dump, mutated, send

JSON = {"Content-Type": "application/json"}
QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
CHUNK_KEYS = {"side", "delta", "finish_reason"}


def stream(server, body: dict, headers=None) -> tuple[httpx.Response, list[dict]]:
    """A compare session's stream, read to the end: the response and its events (the last is the [DONE] mark)."""
    r = httpx.post(server.url + "/compare/sessions", json=body, headers=headers, timeout=60)
    events = [json.loads(line[6:]) if line != "data: [DONE]" else "[DONE]"
              for line in r.text.splitlines() if line.startswith("data: ")]
    return r, events


def ask(server, max_tokens=3, **sampling) -> tuple[str, dict[str, str], httpx.Response]:
    """A whole comparison: its session id, the text streamed for each side, and the raw response."""
    r, events = stream(server, {"messages": QUESTION, "max_tokens": max_tokens, **sampling})
    assert r.status_code == 200 and events[-1] == "[DONE]", r.text
    session = events[0]["session"]
    texts = {"a": "", "b": ""}
    for ev in events[1:-1]:
        assert set(ev) == CHUNK_KEYS, ev  # no model, no id, nothing but the side and its text
        texts[ev["side"]] += ev["delta"]
    return session, texts, r


def vote(server, session, choice, headers=None) -> httpx.Response:
    return httpx.post(server.url + "/compare/votes", json={"session": session, "vote": choice}, headers=headers,
                      timeout=30)


def test_two_models_listed_routed_and_each_in_health(compare_server):
    models = httpx.get(compare_server.url + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == list(COMPARED)
    for name in COMPARED:
        r = httpx.post(compare_server.url + "/v1/chat/completions", timeout=60,
                       json={"model": name, "messages": QUESTION, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["model"] == name
    r = httpx.post(compare_server.url + "/v1/chat/completions", json={"model": "nope", "messages": QUESTION})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert all(name in r.json()["error"]["message"] for name in COMPARED)
    health = httpx.get(compare_server.url + "/health").json()
    assert set(health["models"]) == set(COMPARED) and health["model"] == COMPARED[0]


def test_pairing_is_random_and_names_hidden_until_the_vote(compare_server):
    orders = set()
    for _ in range(16):
        session, texts, r = ask(compare_server, max_tokens=1)
        hidden = r.text + json.dumps(dict(r.headers))
        assert not any(name in hidden for name in COMPARED)
        assert not any(name in session for name in COMPARED)
        reveal = vote(compare_server, session, "tie").json()
        assert reveal["ok"] and {reveal["model_a"], reveal["model_b"]} == set(COMPARED)
        orders.add((reveal["model_a"], reveal["model_b"]))
    assert len(orders) == 2  # both assignments drawn (a 2**-15 chance of failing by luck)


def test_the_vote_is_stored_with_full_context_and_the_streamed_texts(compare_server, tmp_path):
    session, texts, _ = ask(compare_server, max_tokens=6, temperature=0.9, top_p=0.95, seed=3)
    reveal = vote(compare_server, session, "b").json()
    [row] = [c for c in FeedbackStore(compare_server.feedback_db, create=False).comparisons() if c["id"] == session]
    assert row["context"] == QUESTION and row["vote"] == "b"
    assert (row["model_a"], row["model_b"]) == (reveal["model_a"], reveal["model_b"])
    assert (row["response_a"], row["response_b"]) == (texts["a"], texts["b"])
    assert row["params"] == {"max_tokens": 6, "temperature": 0.9, "top_p": 0.95, "seed": 3}
    assert row["revision_a"] and row["template_a"] == row["template_b"] == "model" and row["created_at"] > 0


def test_a_vote_twice_early_unknown_or_from_another_site_is_refused(compare_server):
    session, _, _ = ask(compare_server)
    assert vote(compare_server, session, "a").status_code == 200
    again = vote(compare_server, session, "b")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_voted"
    unknown = vote(compare_server, uuid.uuid4().hex, "a")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "comparison_not_found"

    # Early: the vote arrives while the answers are still streaming.
    body = {"messages": QUESTION, "max_tokens": 900, "ignore_eos": True}  # seconds of work: the vote comes first
    with httpx.stream("POST", compare_server.url + "/compare/sessions", json=body, timeout=60) as r:
        first = json.loads(next(r.iter_lines())[6:])
        early = vote(compare_server, first["session"], "a")
    assert early.status_code == 409 and early.json()["error"]["code"] == "comparison_not_finished"
    # The stream was closed before its end: the session never completes, and takes no vote later either.
    assert vote(compare_server, first["session"], "a").status_code == 409

    session, _, _ = ask(compare_server)
    evil = {"Origin": "http://evil.example"}
    r = vote(compare_server, session, "a", headers=evil)
    assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_forbidden"
    r, _ = stream(compare_server, {"messages": QUESTION, "max_tokens": 1}, headers=evil)
    assert r.status_code == 403
    plain = httpx.post(compare_server.url + "/compare/votes", timeout=30, headers={"Content-Type": "text/plain"},
                       content=json.dumps({"session": session, "vote": "a"}))
    assert plain.status_code == 415
    assert vote(compare_server, session, "a", headers={"Origin": compare_server.url}).status_code == 200


def test_sessions_are_bounded_in_number_and_age():
    now = [0.0]
    sessions = CompareSessions(max_sessions=3, max_age=60, clock=lambda: now[0])
    opened = [sessions.open(("x", "y"), QUESTION, {}) for _ in range(5)]
    assert len(sessions) == 3
    with pytest.raises(Exception, match="unknown, expired"):
        sessions.get(opened[0].id)  # dropped for newer ones
    assert sessions.get(opened[4].id) is opened[4]
    now[0] = 61
    with pytest.raises(Exception, match="unknown, expired"):
        sessions.get(opened[4].id)
    assert len(sessions) == 0


def test_pairs_are_two_different_models_of_any_number():
    sessions = CompareSessions()
    names = ["m1", "m2", "m3", "m4"]
    draws = {sessions.draw(names) for _ in range(200)}
    assert all(a != b for a, b in draws) and {m for pair in draws for m in pair} == set(names)


@pytest.fixture()
def store(tmp_path):
    return FeedbackStore(tmp_path / "f.sqlite3")


def test_a_failed_side_takes_no_vote_and_a_one_model_server_has_no_comparisons(store, caplog):
    broken = StandIn([Event("x", None, 1), Event("", "error", 1, "RuntimeError: boom")])
    client = app_client({"working": StandIn([Event("fine", "stop", 1)]), "broken": broken}, feedback=store)
    r = client.post("/compare/sessions", json={"messages": QUESTION, "max_tokens": 2})
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert any("error" in e for e in events) and "boom" not in r.text and "broken" not in r.text
    r = client.post("/compare/votes", json={"session": events[0]["session"], "vote": "a"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "comparison_failed"
    assert store.comparisons() == []
    assert client.post("/v1/chat/completions", json={"model": "working", "messages": QUESTION}).status_code == 200

    one = app_client(StandIn(), feedback=store).post("/compare/sessions", json={"messages": QUESTION})
    assert one.status_code == 404 and "two or more models" in one.json()["error"]["message"]
    off = app_client({"a": StandIn(), "b": StandIn()}).post("/compare/sessions", json={"messages": QUESTION})
    assert off.status_code == 404 and "--no-feedback" in off.json()["error"]["message"]


def test_the_chat_page_votes_name_their_model(store):
    client = app_client({"first": StandIn(), "second": StandIn()}, feedback=store)
    item = {"response_id": "r1", "response": "yo", "context": QUESTION, "model": "second"}
    assert client.post("/feedback", json=item).status_code == 200
    assert client.post("/feedback", json=item | {"response_id": "r2", "model": "nope"}).status_code == 404
    assert client.post("/feedback", json={k: v for k, v in item.items() if k != "model"} | {"response_id": "r3"}).status_code == 200
    assert [r["model"] for r in store.responses()] == ["second", "first"]


# -- fuzz: hostile bodies against both endpoints ------------------------------------------------------------
def check(server, r: httpx.Response, content_type, origin) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:1000]}"
    if origin not in (None, "same"):
        assert r.status_code == 403
    if r.status_code >= 400:
        assert set(r.json()) == {"error"} and {"message", "type", "param", "code"} == set(r.json()["error"])
    elif r.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert set(events[0]) == {"session"} and all(set(e) == CHUNK_KEYS for e in events[1:]), events[:3]
    else:
        assert r.json()["ok"] is True
    check_health(server)


START = st.fixed_dictionaries({"messages": st.just(QUESTION[1:]) | st.just(QUESTION), "max_tokens": st.integers(1, 2)},
                              optional={"temperature": st.floats(0, 2), "seed": st.integers(0, 99),
                                        "model": st.sampled_from([*COMPARED, "other"])})


@settings(FUZZ, max_examples=40)
@given(body=START.flatmap(mutated), ascii_only=st.booleans(), content_type=CONTENT_TYPES, origin=ORIGINS)
def test_hostile_start_bodies(compare_server, body, ascii_only, content_type, origin):
    content = dump(body, ascii_only).encode("utf-8", "surrogatepass")
    check(compare_server, send(compare_server, "/compare/sessions", content, content_type, origin), content_type,
          origin)


@pytest.fixture(scope="module")
def finished_sessions(compare_server):
    return [ask(compare_server, max_tokens=1)[0] for _ in range(3)]


@settings(FUZZ, max_examples=40)
@given(data=st.data(), ascii_only=st.booleans(), content_type=CONTENT_TYPES, origin=ORIGINS)
def test_hostile_vote_bodies(compare_server, finished_sessions, data, ascii_only, content_type, origin):
    session = st.sampled_from(finished_sessions) | st.builds(lambda: uuid.uuid4().hex) | HOSTILE
    choice = st.sampled_from(["a", "b", "tie", "both_bad", "A", "up", ""]) | HOSTILE
    body = data.draw(st.fixed_dictionaries({"session": session, "vote": choice}).flatmap(mutated), label="body")
    content = dump(body, ascii_only).encode("utf-8", "surrogatepass")
    r = send(compare_server, "/compare/votes", content, content_type, origin)
    check(compare_server, r, content_type, origin)
    assert r.status_code in (200, 400, 403, 404, 409, 413, 415), r.text
