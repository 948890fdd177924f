"""`pacos eval judge` end to end against the judge double: both orders, inconsistency, the cache (reruns send
nothing, a new prompt version or judge resends, a kill -9 loses only what was in flight), faults, logprobs,
modes, missing questions, --max-cost, and the command line."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pacos.cli import main
from pacos.errors import DataError
from pacos.eval import judge_plan, judge_prompts
from pacos.eval.judge_config import JudgeConfig, JudgeRunConfig
from pacos.eval.judge_run import judge
from pacos.eval.questions import Question, answer_record, instruction_question, question_key
from pacos.remote.client import RemoteError
from pacos.remote.spend import Prices

sys.path.insert(0, str(Path(__file__).parent))  # importlib import mode: make judge_double importable
from judge_double import BIASED, MARKER, JudgeDouble  # noqa: E402

QUESTIONS = [instruction_question(f"Question number {i}: explain topic {i}.", question_id=i, category="writing")
             for i in range(6)]
QUESTIONS[5] = instruction_question(f"A {BIASED} question.", question_id=5, category="writing")


@pytest.fixture
def double():
    d = JudgeDouble()
    yield d
    d.close()


def write_answers(path, model, answers_by_question):
    with open(path, "w") as f:
        for q, answers in answers_by_question:
            f.write(json.dumps(answer_record(q, answers, model)) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path):
    """A candidate that wins questions 0-2 (MARKER), loses 3-4 (shorter), and a position-biased question 5."""
    cand = [(q, [f"{MARKER} short" if i < 3 else "tiny"]) for i, q in enumerate(QUESTIONS)]
    base = [(q, ["a much longer baseline answer"]) for q in QUESTIONS]
    return write_answers(tmp_path / "cand.jsonl", "cand", cand), write_answers(tmp_path / "base.jsonl", "base", base)


def run(double, tmp_path, answers, mode="pairwise", client_overrides=None, **overrides):
    settings = dict(url=double.url, model=double.model, concurrency=3, max_retries=2, backoff_base=0.01, timeout=5)
    judge_cfg = JudgeConfig(**{**settings, **(client_overrides or {})})
    cfg = JudgeRunConfig(answers=tuple(answers), mode=mode, out=str(tmp_path / "judgements.jsonl"), judge=judge_cfg,
                         progress=False, **overrides)
    summary = judge(cfg)
    records = [json.loads(line) for line in Path(cfg.out).read_text().splitlines()]
    return summary, records


def test_pairwise_against_a_baseline_judges_both_orders_and_flags_inconsistency(double, tmp_path, files):
    cand, base = files
    summary, records = run(double, tmp_path, [cand], baseline=base)
    assert len(records) == 6 and len(double.requests) == 12 and summary.sent == 12
    by_id = {r["question_id"]: r for r in records}
    assert [by_id[str(i)]["winner"] for i in range(5)] == ["a", "a", "a", "b", "b"]
    assert [by_id[str(i)]["score_a"] for i in range(5)] == [1.0, 1.0, 1.0, 0.0, 0.0]
    biased = by_id["5"]
    assert biased["winner"] == "tie" and biased["inconsistent"] and biased["score_a"] == 0.5
    assert [(g["order"], g["verdict"]) for g in biased["games"]] == [("ab", "a"), ("ba", "b")]
    r = by_id["0"]
    assert (r["mode"], r["model_a"], r["model_b"], r["turn"], r["excluded"]) == ("pairwise", "cand", "base", 1, None)
    assert (r["len_a"], r["len_b"]) == (len(f"{MARKER} short"), len("a much longer baseline answer"))
    assert r["judge"] == double.model and r["prompt_version"] == judge_prompts.PAIRWISE.version
    assert r["preference_a"] is None and all(g["p_a"] is None and not g["cached"] for g in r["games"])
    assert summary.inconsistent == 1 and summary.spend.prompt_tokens > 0
    assert "12 sent, 0 cached" in summary.describe() and "inconsistent 1" in summary.describe()
    # The judge saw model_a first in one game and second in the other.
    firsts = [shown for b in double.requests if (shown := b["messages"][1]["content"]).find("tiny") >= 0]
    assert len(firsts) == 6 and sum(f.index("tiny") < f.index("baseline") for f in firsts) == 3


def test_a_rerun_sends_nothing_and_a_new_prompt_version_or_judge_resends(double, tmp_path, files, monkeypatch):
    cand, base = files
    _, first = run(double, tmp_path, [cand], baseline=base)
    double.requests.clear()
    summary, again = run(double, tmp_path, [cand], baseline=base)
    assert double.requests == [] and summary.cached == 12 and summary.sent == 0
    assert [r["winner"] for r in again] == [r["winner"] for r in first]
    assert all(g["cached"] for r in again for g in r["games"])
    bumped = judge_prompts.JudgePrompt("pairwise-v2", judge_prompts.PAIRWISE.system, judge_prompts.PAIRWISE.user)
    monkeypatch.setattr(judge_prompts, "PAIRWISE", bumped)
    summary, records = run(double, tmp_path, [cand], baseline=base)
    assert len(double.requests) == 12 and {r["prompt_version"] for r in records} == {"pairwise-v2"}


def test_all_pairs_of_several_models_each_once_and_missing_questions_reported(double, tmp_path):
    one = write_answers(tmp_path / "one.jsonl", "one", [(q, ["x" * (i + 1)]) for i, q in enumerate(QUESTIONS[:4])])
    two = write_answers(tmp_path / "two.jsonl", "two", [(q, ["y" * 3]) for q in QUESTIONS[:3]])
    three = write_answers(tmp_path / "three.jsonl", "three", [(q, ["z" * 9]) for q in QUESTIONS[:4]])
    summary, records = run(double, tmp_path, [one, two, three])
    pairs = [(r["model_a"], r["model_b"]) for r in records]
    assert sorted(set(pairs)) == [("one", "three"), ("one", "two"), ("two", "three")]
    assert pairs.count(("one", "two")) == 3 and pairs.count(("one", "three")) == 4
    assert any("two has no answer to 1 question(s)" in note for note in summary.notes)
    assert "two has no answer" in summary.describe()


MT = Question(question_key(["Solve 2+2.", "Now times 3?"]), "81", ("Solve 2+2.", "Now times 3?"), "math",
              reference=("4", "12"))


def test_multi_turn_questions_judge_both_turns_with_the_conversation(double, tmp_path):
    a = write_answers(tmp_path / "a.jsonl", "a", [(MT, ["It is 4.", f"{MARKER} 12"])])
    b = write_answers(tmp_path / "b.jsonl", "b", [(MT, ["The answer is four.", "36"])])
    _, records = run(double, tmp_path, [a, b])
    assert [(r["turn"], r["winner"]) for r in records] == [(1, "b"), (2, "a")]
    assert records[1]["prompt_version"] == judge_prompts.PAIRWISE_MULTI.version
    turn2 = [b["messages"][1]["content"] for b in double.requests if "Now times 3?" in b["messages"][1]["content"]]
    assert len(turn2) == 2 and all("It is 4." in t and "The answer is four." in t for t in turn2)


def test_single_and_reference_ratings(double, tmp_path):
    a = write_answers(tmp_path / "a.jsonl", "a", [(MT, ["It is 4.", "Then 12."]), (QUESTIONS[0], [f"{MARKER}"])])
    _, single = run(double, tmp_path, [a], mode="single")
    assert [(r["mode"], r["turn"], r["model"]) for r in single] == [("single", 1, "a"), ("single", 2, "a"),
                                                                     ("single", 1, "a")]
    assert single[2]["rating"] == 9.0 and single[0]["len"] == len("It is 4.")
    assert {r["prompt_version"] for r in single} == {"single-v1", "single-multi-v1"}
    summary, graded = run(double, tmp_path, [a], mode="reference", cache=str(tmp_path / "ref.sqlite"))
    assert [(r["turn"], r["rating"]) for r in graded] == [(1, 9.0), (2, 9.0)]  # both contain the reference
    assert {r["prompt_version"] for r in graded} == {"reference-v1", "reference-multi-v1"}
    assert summary.notes and "no reference" in summary.notes[0]  # QUESTIONS[0] has none
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"question_id": 81, "category": "math", "turns": list(MT.turns),
                                "reference": ["5", "15"]}) + "\n")
    _, wrong = run(double, tmp_path, [a], mode="reference", references=str(refs), cache=str(tmp_path / "r2.sqlite"))
    assert [r["rating"] for r in wrong] == [2.0, 2.0]


@pytest.mark.parametrize("faults", [("500", "429"), ("garbage",), ("unparseable",), ("ambiguous",), ("huge",),
                                    ("slow",)])
def test_a_fault_once_is_retried_and_the_verdict_kept(double, tmp_path, files, faults):
    cand, base = files
    double.fail_next(*faults)
    summary, records = run(double, tmp_path, [cand], baseline=base, client_overrides={"max_response_bytes": 2**20,
                                                                                   "timeout": 1.0})
    assert len(records) == 6 and all(r["excluded"] is None for r in records)
    assert len(double.requests) == 12 + len(faults)


@pytest.mark.parametrize("fault, reason", [("unparseable", "unparseable"), ("ambiguous", "unparseable"),
                                           ("garbage", "bad_response"), ("nan", "bad_response")])
def test_a_verdict_never_readable_is_excluded_after_one_retry_never_fatal(double, tmp_path, files, fault, reason):
    cand, base = files
    double.always = fault
    summary, records = run(double, tmp_path, [cand], baseline=base, client_overrides={"logprobs": True})
    assert len(double.requests) == 24  # each game asked twice
    assert all(r["winner"] is None and r["score_a"] is None and r["excluded"] == reason for r in records)
    assert summary.excluded == {reason: 6} and f"excluded: {reason} 6" in summary.describe()
    double.requests.clear()
    run(double, tmp_path, [cand], baseline=base, client_overrides={"logprobs": True})
    assert double.requests == []  # excluded games are cached too


def test_logprobs_give_a_continuous_preference(double, tmp_path, files):
    cand, base = files
    _, records = run(double, tmp_path, [cand], baseline=base, client_overrides={"logprobs": True})
    assert all(b["logprobs"] is True and b["top_logprobs"] == 5 for b in double.requests)
    by_id = {r["question_id"]: r for r in records}
    # The double gives its verdict 0.7, the other letters 0.2 and 0.1.
    win = by_id["0"]
    assert all(abs(g["p_a"] - (0.7 + 0.05 if g["verdict"] == "a" else 0.2 + 0.05)) < 1e-6 for g in win["games"])
    assert win["preference_a"] > 0.5 and by_id["3"]["preference_a"] < 0.5
    biased = by_id["5"]["games"]
    assert abs(biased[0]["p_a"] + biased[1]["p_a"] - 1) < 0.2


def test_a_persistent_server_error_stops_with_one_line_and_saves_what_is_done(double, tmp_path, files):
    cand, base = files
    double.fail_next(*[None] * 4)
    double.always = "500"
    with pytest.raises(RemoteError, match=r"judge at .* still failing after 3 attempts \(HTTP 500.*--judge-url"):
        run(double, tmp_path, [cand], baseline=base, client_overrides={"concurrency": 1})
    records = [json.loads(line) for line in (tmp_path / "judgements.jsonl").read_text().splitlines()]
    assert len(records) == 2  # the four games done are two whole items


def test_max_cost_stops_new_requests_and_keeps_partial_results(double, tmp_path, files):
    cand, base = files
    prices = Prices(price_in=1000.0, price_out=1000.0, max_cost=1.0)  # $0.001 a token
    summary, records = run(double, tmp_path, [cand], baseline=base, prices=prices,
                           client_overrides={"max_tokens": 20, "concurrency": 2})
    assert summary.stopped == "max-cost" and 0 < len(double.requests) < 12
    assert summary.spend.cost <= 1.0 and summary.unjudged == 12 - len(double.requests)
    assert len(records) == len(double.requests) // 2 and "stopped at --max-cost" in summary.describe()


def test_unusable_inputs_are_one_clear_error(double, tmp_path, files):
    cand, base = files
    with pytest.raises(DataError, match="needs two models"):
        run(double, tmp_path, [cand])
    both = tmp_path / "both.jsonl"
    both.write_text(Path(cand).read_text() + Path(base).read_text())
    with pytest.raises(DataError, match="holds one model's answers"):
        run(double, tmp_path, [cand], baseline=str(both))
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database " * 100)
    with pytest.raises(DataError, match="not a usable judgement cache"):
        run(double, tmp_path, [cand], baseline=base, cache=str(bad))


def test_the_command_line(double, tmp_path, files, capsys):
    cand, base = files
    out = tmp_path / "cli.jsonl"
    argv = ["eval", "judge", "--answers", cand, "--baseline", base, "--mode", "pairwise", "--judge-url", double.url,
            "--judge-model", double.model, "--out", str(out), "--no-progress", "--concurrency", "2",
            "--price-in", "2.5", "--price-out", "10", "--logprobs"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "judged 6 item(s)" in printed and "$0.0" in printed and (tmp_path / "cli.cache.sqlite").exists()
    assert len(out.read_text().splitlines()) == 6
    assert main(["eval", "judge", "--answers", cand, "--mode", "single", "--out", str(out),
                 "--judge-url", double.url, "--judge-model", "nope", "--max-retries", "0"]) == 2
    assert "judge at" in capsys.readouterr().err


def test_kill_9_loses_only_the_games_in_flight(tmp_path):
    double = JudgeDouble(delay=0.15)
    try:
        qs = [instruction_question(f"Kill test question {i}.", question_id=i) for i in range(12)]
        a = write_answers(tmp_path / "a.jsonl", "a", [(q, ["short"]) for q in qs])
        b = write_answers(tmp_path / "b.jsonl", "b", [(q, ["longer answer"]) for q in qs])
        cache = tmp_path / "j.cache.sqlite"
        argv = [sys.executable, "-m", "pacos.cli", "eval", "judge", "--answers", a, "--answers", b, "--mode",
                "pairwise", "--judge-url", double.url, "--judge-model", double.model, "--out",
                str(tmp_path / "j.jsonl"), "--concurrency", "3", "--no-progress"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "OPENAI_API_KEY": "x"})
        deadline = time.monotonic() + 60
        while len(double.requests) < 9 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
        sent_before = len(double.requests)
        with sqlite3.connect(cache) as db:
            kept = db.execute("SELECT COUNT(*) FROM games").fetchone()[0]
        assert sent_before - 3 <= kept < 24  # at most the 3 in flight were lost
        double.requests.clear()
        summary, records = run(double, tmp_path, [a, b], cache=str(cache))
        assert len(double.requests) == 24 - kept and summary.cached == kept and len(records) == 12
    finally:
        double.close()


def test_the_plan_keys_differ_by_order_and_the_records_read_from_model_a(tmp_path):
    a = judge_plan.by_model([_set(QUESTIONS[0], "x", "a")])
    b = judge_plan.by_model([_set(QUESTIONS[0], "y", "b")])
    [item] = judge_plan.pairwise_plan(a, b, "j", False).items
    assert item.games[0].key != item.games[1].key
    record = judge_plan.pairwise_record(item, [{"verdict": "second", "p_first": 0.2},
                                               {"verdict": "first", "p_first": 0.9}], [False, True])
    assert record["winner"] == "b" and not record["inconsistent"] and record["score_a"] == 0.0
    assert abs(record["preference_a"] - 0.15) < 1e-9 and [g["cached"] for g in record["games"]] == [False, True]
    tie = judge_plan.pairwise_record(item, [{"verdict": "tie"}, {"verdict": "second"}], [False, False])
    assert tie["winner"] == "tie" and tie["inconsistent"] and tie["preference_a"] is None


def _set(question, text, model):
    from pacos.eval.questions import AnswerSet

    return AnswerSet(question, [text], model)
