"""The teacher client: retries, Retry-After, the deadline, the size cap, rate limit, fatal errors, body reading."""

import asyncio
import json
import random
import socket
import time

import pytest

from pacos.remote.client import RemoteError as TeacherError
from pacos.remote.client import Teacher, parse_retry_after, retry_delay
from pacos.remote.config import TeacherConfig
from pacos.remote.reply import UnparseableResponse, read_reply


def config(teacher, **overrides):
    values = dict(url=teacher.url, model="teacher-double", concurrency=4, timeout=5, max_retries=3,
                  backoff_base=0.05, backoff_cap=1.0)
    values.update(overrides)
    return TeacherConfig(**values)


def complete(cfg, prompts, n_calls=1):
    async def go():
        client = Teacher(cfg)
        try:
            return await asyncio.gather(*(client.complete(prompts) for _ in range(n_calls)))
        finally:
            await client.close()

    return asyncio.run(go())


PROMPT = "Write tasks.\n###\n1. Instruction: Say hi.\n1. Input:\n<noinput>\n1. Output:\nHi\n###\n2. Instruction:"


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert parse_retry_after({}) is None


def test_backoff_is_exponential_with_full_jitter_unless_the_server_says():
    rng = random.Random(0)
    waits = [retry_delay(5, None, 1.0, 60.0, rng) for _ in range(200)]
    assert 0 <= min(waits) < 2 and 10 < max(waits) <= 16  # uniform in [0, 2^4]
    assert all(retry_delay(9, None, 1.0, 60.0, rng) <= 60 for _ in range(50))
    assert 3.0 <= retry_delay(1, 3.0, 1.0, 60.0, rng) <= 3.1


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_batch_of_prompts_gets_one_answer_each_with_usage(teacher, api):
    [reply] = complete(config(teacher, api=api), [PROMPT, PROMPT + " "])
    assert len(reply.answers) == 2 and reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert all("Instruction" in a.text or "Input" in a.text for a in reply.answers)
    paths = {r["path"] for r in teacher.requests}
    assert paths == ({"/v1/completions"} if api == "completions" else {"/v1/chat/completions"})
    assert len(teacher.requests) == (1 if api == "completions" else 2)


def test_429_waits_for_retry_after_and_5xx_and_dropped_connections_are_retried(teacher):
    teacher.fail_next("429", "500", "drop", "429ms")
    [reply] = complete(config(teacher, max_retries=5), [PROMPT])
    assert reply.requests == 5 and reply.answers[0].text
    times = [r["time"] for r in teacher.requests]
    assert times[1] - times[0] >= 0.2  # retry-after: 0.2
    assert times[4] - times[3] >= 0.15  # retry-after-ms: 150


def test_slow_answer_times_out_and_is_retried(teacher):
    teacher.fail_next("slow")
    started = time.monotonic()
    [reply] = complete(config(teacher, timeout=0.5), [PROMPT])
    assert reply.requests == 2 and reply.answers[0].text and time.monotonic() - started < 2.5


def test_unreadable_body_is_counted_not_fatal(teacher):
    teacher.fail_next("junk")
    [reply] = complete(config(teacher), [PROMPT, PROMPT])
    assert [a.error is not None for a in reply.answers] == [True, True] and reply.requests == 1


def test_concurrency_and_requests_per_minute_are_respected(teacher):
    teacher.delay = 0.2
    complete(config(teacher, concurrency=2), [PROMPT], n_calls=6)
    assert teacher.max_in_flight == 2
    teacher.delay, teacher.requests = 0.0, []
    complete(config(teacher, requests_per_minute=600), [PROMPT], n_calls=4)  # one start per 0.1 s
    times = sorted(r["time"] for r in teacher.requests)
    assert times[-1] - times[0] >= 0.28


def test_persistent_failure_gives_up_with_a_clear_message(teacher):
    teacher.fail_next(*["500"] * 10)
    with pytest.raises(TeacherError, match=r"still failing after 3 attempts \(HTTP 500"):
        complete(config(teacher, max_retries=2), [PROMPT])


def test_rejected_key_and_unknown_model_are_fatal_at_once(teacher):
    teacher.api_key = "sk-right"
    with pytest.raises(TeacherError, match="rejected the API key .*HTTP 401.*--api-key or set OPENAI_API_KEY"):
        complete(config(teacher, api_key="sk-wrong"), [PROMPT])
    assert len(teacher.requests) == 1  # no retries
    with pytest.raises(TeacherError, match="has no model 'nope'"):
        complete(config(teacher, api_key="sk-right", model="nope"), [PROMPT])


def test_unreachable_teacher():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = TeacherConfig(url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, backoff_base=0.01)
    with pytest.raises(TeacherError, match=f"127.0.0.1:{port}/v1 still failing after 2 attempts \\(APIConnectionError"):
        complete(cfg, [PROMPT])


def response_body(choices, usage=None):
    return json.dumps({"id": "x", "object": "text_completion", "created": 0, "model": "m", "choices": choices,
                       **({"usage": usage} if usage is not None else {})}).encode()


def test_read_reply_orders_choices_and_reads_usage_defensively():
    body = response_body([{"index": 1, "text": "b", "finish_reason": "length"}, {"index": 0, "text": "a"}],
                         {"prompt_tokens": 7, "completion_tokens": True})
    reply = read_reply(body, "completions", 2)
    assert [(a.text, a.finish_reason) for a in reply.answers] == [("a", None), ("b", "length")]
    assert (reply.prompt_tokens, reply.completion_tokens) == (7, 0)  # a bool is no count
    chat = response_body([{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": 3}])
    assert [(a.text, a.finish_reason) for a in read_reply(chat, "chat", 1).answers] == [("", None)]


@pytest.mark.parametrize("body, api, reason", [
    (b"<html>hi</html>", "completions", "not JSON (malformed JSON: Expecting value): '<html>hi</html>'"),
    (response_body([{"text": "a"}])[:30], "completions", "not JSON (malformed JSON"),
    (b'{"choices": [{"text": "a"}], "usage": {"prompt_tokens": NaN}}', "completions", "not JSON (NaN"),
    (b'{"choices": [{"text": "\\ud800"}]}', "completions", "not JSON ("),
    (b'{"choices": [], "choices": [{"text": "a"}]}', "completions", "not JSON (duplicate key"),
    (b'[{"text": "a"}]', "completions", "JSON but not an object"),
    (b'{"choices": null}', "completions", "no list of choices (choices: 'None')"),
    (b'{"choices": ["a"]}', "completions", "no list of choices"),
    (b'{"choices": []}', "completions", "0 choices for 1 prompt(s)"),
    (b'{"choices": [{"text": ["a"]}]}', "completions", "a choice without text"),
    (b'{"choices": [{"message": {"content": 5}}]}', "chat", "a choice without text"),
])
def test_read_reply_refuses_what_is_not_a_response(body, api, reason):
    with pytest.raises(UnparseableResponse) as info:
        read_reply(body, api, 1)
    assert str(info.value).startswith(reason)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_hostile_retry_after_values_are_ignored_or_capped():
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "Wed, 99 Oct 2015 07:28:00 GMT"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert retry_delay(1, parse_retry_after({"retry-after": "1e400"}), 1.0, 60.0, random.Random(0)) <= 60.1


def test_deadline_covers_the_whole_body_not_each_read(teacher):
    teacher.fail_next("trickle")  # a byte every 0.4 s: no read ever waits long, the whole takes minutes
    started = time.monotonic()
    [reply] = complete(config(teacher, timeout=1.0), [PROMPT])
    assert reply.requests == 2 and reply.answers[0].text  # timed out once, then retried and answered
    assert 1.0 <= time.monotonic() - started < 2.5


@pytest.mark.parametrize("fault, reason", [("gzip", "a compressed response (gzip)"),
                                           ("huge_declared", "over --max-response-bytes 100000"),
                                           ("huge", "over --max-response-bytes 100000 (stopped reading there)")])
def test_refused_bodies_are_bad_answers_not_retries(teacher, fault, reason):
    teacher.fail_next(fault)
    [reply] = complete(config(teacher, max_response_bytes=100_000), [PROMPT, PROMPT])
    assert reply.requests == 1 and all(reason in a.error for a in reply.answers)
    assert teacher.huge_sent < 16 * 2**20  # the endless body was not read to its end (1 GiB)
