"""`pacos eval answer`: every question format answered by the tiny model (transformers and GGUF) or an endpoint,
turn 2 asked with the model's own turn-1 answer, MT-bench's temperatures per category, each answer recorded with
its settings, resumed after kill -9, and bad input refused in one line."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pacos.cli import main
from pacos.eval.answer import AnswerConfig, EndpointConfig, answer_questions
from pacos.eval.questions import load_answers, load_questions
from pacos.infer.params import SamplingParams

from ..conftest import kill_pacos_after, run_pacos
from ..serve.conftest import API_KEY, start_server, stop_server

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FORMATS = ["mt_bench.jsonl", "vicuna_bench.jsonl", "user_oriented.jsonl", "alpaca.json", "alpaca_eval.json"]
FAST = SamplingParams(max_new_tokens=6)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class Spy:
    """The tiny model's engine, recording what each generation was asked: the record and its sampling."""

    def __init__(self, engine):
        self.engine, self.records, self.sampling = engine, [], []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def encode(self, record, template=None):
        self.records.append(record)
        return self.engine.encode(record, template)

    def start(self, ids, sampling, **kw):
        self.sampling.append(sampling)
        return self.engine.start(ids, sampling, **kw)


@pytest.fixture(scope="module")
def engines(tiny_model_dir):
    from pacos.infer.hf_engine import TransformersEngine

    loaded = {kind: TransformersEngine.load(str(tiny_model_dir), kind=kind, max_batch=4, max_waiting=8)
              for kind in ("instruction", "conversation")}
    yield loaded
    for engine in loaded.values():
        engine.close()


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_is_answered_once_per_question_with_its_settings(engines, tmp_path, name):
    _, questions, _ = load_questions(FIXTURES / name)
    kind = "conversation" if name == "mt_bench.jsonl" else "instruction"
    out = tmp_path / "answers.jsonl"
    result = answer_questions(None, AnswerConfig(FIXTURES / name, out), FAST, engine=engines[kind])
    assert (result.questions, result.already, result.answered) == (len(questions), 0, len(questions))
    rows = {r["key"]: r for r in lines(out)}
    assert set(rows) == {q.key for q in questions}
    template = "model" if kind == "conversation" else "alpaca"  # the tiny model has a chat template
    for q in questions:
        row = rows[q.key]
        assert row["question_id"] == q.question_id and len(row["answers"]) == len(q.turns)
        assert (row["model"], row["engine"], row["template"]) == ("tiny", "transformers", template)
        assert row["sampling"]["max_new_tokens"] == 6 and row["sampling"]["temperature"] == 0.0
        assert row["finish_reasons"] and row["created_at"] and row["revision"]
    assert [a.question.key for a in load_answers(out)[1]] == list(rows)  # what the judge reads back


def test_turn_two_is_asked_after_the_models_own_turn_one_answer_at_mt_bench_temperatures(engines, tmp_path):
    spy = Spy(engines["conversation"])
    out = tmp_path / "answers.jsonl"
    config = AnswerConfig(FIXTURES / "mt_bench.jsonl", out, mt_bench_temperatures=True)
    answer_questions(None, config, SamplingParams(max_new_tokens=8, temperature=1.0, seed=7), engine=spy)
    rows = lines(out)
    assert {r["category"]: r["sampling"]["temperature"] for r in rows} == {"writing": 0.7, "reasoning": 0.0,
                                                                          "math": 0.0}
    assert {r["question_id"]: r["sampling"]["seed"] for r in rows} == {"81": 7, "103": 8, "111": 9}
    assert sorted(s.temperature for s in spy.sampling) == [0.0] * 4 + [0.7] * 2  # what the engine sampled with
    second_turns = [r for r in spy.records if len(r.messages) == 3]
    assert len(second_turns) == 3
    for row in rows:
        asked = next(r for r in second_turns if r.messages[0].content == row["turns"][0])
        assert [(m.role, m.content) for m in asked.messages] == [
            ("user", row["turns"][0]), ("assistant", row["answers"][0]), ("user", row["turns"][1])]
    assert any(r["answers"][0] for r in rows)  # sampled at 0.7, the model did say something to be asked about
    # Vicuna's categories are not MT-bench's: 0.7 but for math.
    answer_questions(None, AnswerConfig(FIXTURES / "vicuna_bench.jsonl", tmp_path / "v.jsonl",
                                        mt_bench_temperatures=True), FAST, engine=engines["instruction"])
    assert {r["category"]: r["sampling"]["temperature"] for r in lines(tmp_path / "v.jsonl")} == {
        "generic": 0.7, "roleplay": 0.7, "math": 0.0}


def test_a_gguf_file_is_answered_by_llama_cpp(tiny_gguf, tmp_path):
    out = tmp_path / "answers.jsonl"
    answer_questions(str(tiny_gguf), AnswerConfig(FIXTURES / "mt_bench.jsonl", out, limit=2), FAST)
    rows = lines(out)
    assert [r["question_id"] for r in rows] == ["81", "103"] or sorted(r["question_id"] for r in rows) == ["103", "81"]
    assert all(r["engine"] == "llama.cpp" and r["model"] == "tiny.gguf" and len(r["answers"]) == 2 for r in rows)


class ChatDouble:
    """An OpenAI-compatible chat endpoint on loopback that records the messages it is sent and answers with
    a text made from the last user turn."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                received.append(body)
                text = "answer to: " + " ".join(body["messages"][-1]["content"].split()[:3])
                reply = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                    "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": text}}],
                                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_an_endpoint_is_sent_each_conversation_with_its_own_answers(tmp_path):
    double = ChatDouble()
    try:
        out = tmp_path / "answers.jsonl"
        answer_questions(None, AnswerConfig(FIXTURES / "mt_bench.jsonl", out, mt_bench_temperatures=True),
                         SamplingParams(max_new_tokens=9), endpoint=EndpointConfig(url=double.url, model="remote-m"))
    finally:
        double.close()
    rows = {r["question_id"]: r for r in lines(out)}
    assert all(r["model"] == "remote-m" and r["engine"] == "api" and r["model_ref"] == double.url
               for r in rows.values())
    assert rows["81"]["answers"] == ["answer to: Compose an engaging", "answer to: Rewrite your previous"]
    assert rows["81"]["sampling"] == {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 9}
    second = next(b for b in double.received if len(b["messages"]) == 3 and "Rewrite" in b["messages"][2]["content"])
    assert second["messages"][1] == {"role": "assistant", "content": rows["81"]["answers"][0]}
    assert second["temperature"] == 0.7 and second["max_tokens"] == 9 and second["model"] == "remote-m"


def test_pacos_serve_evaluated_through_the_api_answers_as_the_engine_does(tiny_model_dir, engines, tmp_path):
    """Greedy answers through another `pacos serve` equal the same model's answers here (same chat template)."""
    server = start_server(tiny_model_dir, tmp_path, "--api-key", API_KEY)
    try:
        rc = main(["eval", "answer", "--api-base", server.url + "/v1", "--api-model", "tiny", "--api-key", API_KEY,
                   "--questions", str(FIXTURES / "mt_bench.jsonl"), "--out", str(tmp_path / "api.jsonl"),
                   "--max-new-tokens", "12", "--max-retries", "0"])
    finally:
        stop_server(server)
    assert rc == 0
    answer_questions(None, AnswerConfig(FIXTURES / "mt_bench.jsonl", tmp_path / "here.jsonl"),
                     SamplingParams(max_new_tokens=12), engine=engines["conversation"])
    remote = {r["key"]: r["answers"] for r in lines(tmp_path / "api.jsonl")}
    assert remote == {r["key"]: r["answers"] for r in lines(tmp_path / "here.jsonl")}


def test_kill_9_then_rerun_completes_the_file_each_question_once(tiny_model_dir, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"instruction": f"Count to {i} and stop.", "id": i}) + "\n"
                                 for i in range(24)))
    out = tmp_path / "answers.jsonl"
    args = ["eval", "answer", str(tiny_model_dir), "--questions", str(questions), "--out", str(out),
            "--max-new-tokens", "16", "--batch-size", "2", "--temperature", "0.8", "--seed", "3"]
    kill_pacos_after(*args, path=out, lines=4)
    before = out.read_text().splitlines(keepends=True)
    whole = [line for line in before if line.endswith("\n")]
    assert 4 <= len(whole) < 24, "the run was not interrupted mid-file"
    with open(out, "a") as f:  # as if killed in the middle of a line
        f.write('{"key": "0123", "answers": ["half')
    again = run_pacos(*args, "--batch-size", "8", check=True)  # not a setting of the answers: resumes
    assert f"({len(whole)} were already there)" in again.stdout
    resumed = out.read_text().splitlines(keepends=True)
    assert resumed[: len(whole)] == whole  # earlier answers untouched
    rows = lines(out)
    assert sorted(int(r["question_id"]) for r in rows) == list(range(24))
    assert all(r["sampling"]["seed"] == 3 + int(r["question_id"]) for r in rows)  # as an uninterrupted run


def test_a_file_of_other_answers_is_refused_before_anything_is_loaded(tmp_path, capsys):
    out = tmp_path / "answers.jsonl"
    _, questions, _ = load_questions(FIXTURES / "vicuna_bench.jsonl")
    from pacos.eval.questions import answer_record

    out.write_text(json.dumps(answer_record(questions[0], ["hi"], "other-model", template="alpaca",
                                            sampling={})) + "\n")
    args = ["eval", "answer", "no/such/model", "--questions", str(FIXTURES / "vicuna_bench.jsonl"), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "answers.jsonl:1: answered with model 'other-model', this run's is 'no/such/model'" in err
    assert "choose another --out" in err and len(err.splitlines()) == 1
    assert main(args[:-1] + [str(tmp_path / "new.jsonl"), "--questions", str(FIXTURES / "mt_bench.jsonl")]) == 2
    assert "no/such/model" in capsys.readouterr().err  # a fresh --out gets as far as loading the model


@pytest.mark.parametrize("extra, message", [
    (["no/such/model", "--questions", "missing.jsonl"], "missing.jsonl"),
    (["no/such/model", "--questions", "{bad}"], "bad.jsonl:2: `turns` must be a non-empty list"),
    (["no/such/model", "--questions", "{empty}"], "empty.jsonl"),
    (["--api-base", "http://127.0.0.1:9/v1", "--api-model", "m", "--max-retries", "0", "--timeout", "5"],
     "endpoint at http://127.0.0.1:9/v1 still failing after 1 attempts"),
    (["--api-base", "http://127.0.0.1:9/v1", "--api-model", "m", "--top-k", "5"], "--top-k: not sent to an endpoint"),
    (["MODEL", "--api-base", "http://127.0.0.1:9/v1", "--api-model", "m"], "give MODEL (MODEL) or --api-base, not both"),
    (["--api-model", "m", "MODEL"], "--api-model names the model at --api-base"),
    ([], "give MODEL"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"turns": ["Fine?"]}\n{"turns": []}\n')
    (tmp_path / "empty.jsonl").write_text("")
    extra = [e.format(bad=tmp_path / "bad.jsonl", empty=tmp_path / "empty.jsonl") for e in extra]
    if "--questions" not in extra:
        extra += ["--questions", str(FIXTURES / "mt_bench.jsonl")]
    assert main(["eval", "answer", *extra, "--out", str(tmp_path / "a.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "a.jsonl").exists()
