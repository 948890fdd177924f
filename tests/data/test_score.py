"""`pacos data score` and `pacos data filter` against the judge double (a real HTTP server on loopback): the
scores and reasons written, the cache (a rerun sends nothing, a kill -9 loses only what was in flight), hostile
judges (garbled, NaN, out of range, huge, HTTP errors), --max-cost, and the filter's counts and PNG. The
score parser is fuzzed with hypothesis."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.cli import main
from pacos.data.records import Example
from pacos.data.quality import (QUALITY_FIELD, SCORE_PROMPT, describe_histogram, histogram, parse_score,
                                score_of)
from pacos.data.quality_filter import FilterConfig, filter_file
from pacos.data.quality_score import ScoreConfig, score
from pacos.remote.client import RemoteError
from pacos.remote.config import JudgeConfig
from pacos.remote.spend import Prices

sys.path.insert(0, str(Path(__file__).parents[1] / "eval"))  # importlib import mode: the judge double
from judge_double import JudgeDouble  # noqa: E402

TRUE_SCORES = [5, 4.5, 4, 3.5, 2, 0, 4.5, 1]


@pytest.fixture
def double():
    d = JudgeDouble()
    yield d
    d.close()


def write_alpaca(path, scores, extra=None):
    """Alpaca records whose response carries the score the double will give (`<score=X>`)."""
    records = [{"instruction": f"Task {i}: describe item {i}.", "input": "" if i % 2 else f"item {i}",
                "output": f"Item {i} is fine. <score={s}>", "id": i, **(extra or {})} for i, s in enumerate(scores)]
    Path(path).write_text(json.dumps(records, indent=1))
    return str(path)


def run_score(double, tmp_path, data, judge=None, **overrides):
    settings_ = dict(url=double.url, model=double.model, concurrency=3, max_retries=1, backoff_base=0.01, timeout=5)
    judge = JudgeConfig(**{**settings_, **(judge or {})})
    config = ScoreConfig(data=data, out=str(tmp_path / "scored.json"), judge=judge, progress=False, **overrides)
    summary = score(config)
    return summary, json.loads(Path(config.out).read_text())


def test_scores_and_reasons_are_written_into_each_record_and_a_rerun_sends_nothing(double, tmp_path):
    data = write_alpaca(tmp_path / "a.json", TRUE_SCORES)
    summary, out = run_score(double, tmp_path, data)
    assert [r[QUALITY_FIELD]["score"] for r in out] == TRUE_SCORES
    first = out[0]
    assert first["id"] == 0 and first["input"] == "item 0" and first["output"].startswith("Item 0")  # own fields kept
    assert first[QUALITY_FIELD] == {"score": 5.0, "reason": "The response carries the mark 5.",
                                    "judge": double.model, "prompt": SCORE_PROMPT.version}
    assert len(double.requests) == len(TRUE_SCORES) and summary.sent == len(TRUE_SCORES) and summary.cached == 0
    sent = {r["messages"][1]["content"].split(":")[0]: r["messages"] for r in double.requests}
    assert sent["[Instruction]\nTask 0"][0]["content"] == SCORE_PROMPT.system
    assert "[Input]\nitem 0\n" in sent["[Instruction]\nTask 0"][1]["content"]
    assert "[Input]\n(none)\n" in sent["[Instruction]\nTask 1"][1]["content"]
    printed = summary.describe()
    assert "scored 8 of 8" in printed and "4.5-<5 2" in printed and "| 5 1" in printed and "0-<0.5 1" in printed

    double.requests.clear()
    summary, again = run_score(double, tmp_path, data)
    assert double.requests == [] and summary.cached == len(TRUE_SCORES) and summary.sent == 0
    assert again == out


def test_a_new_judge_model_is_a_new_cache_key(double, tmp_path):
    data = write_alpaca(tmp_path / "a.json", [4, 5])
    run_score(double, tmp_path, data)
    double.model = "judge-two"
    double.requests.clear()
    _, out = run_score(double, tmp_path, data, judge={"model": "judge-two"})
    assert len(double.requests) == 2 and {r[QUALITY_FIELD]["judge"] for r in out} == {"judge-two"}


def test_hostile_replies_leave_records_unscored_never_crash(double, tmp_path):
    # NaN, negative, > 5, garbage text and a number past one digit: each asked twice, then unscored.
    data = write_alpaca(tmp_path / "a.json", ["nan", "-1", "7", "five", "45", 4.5])
    summary, out = run_score(double, tmp_path, data)
    assert [r[QUALITY_FIELD]["score"] for r in out] == [None] * 5 + [4.5]
    assert all(r[QUALITY_FIELD]["error"] == "unparseable" for r in out[:5])
    assert summary.unscored == {"unparseable": 5} and len(double.requests) == 5 * 2 + 1
    assert "unscored: unparseable 5" in summary.describe()


def test_a_garbled_reply_is_asked_again_once(double, tmp_path):
    data = write_alpaca(tmp_path / "a.json", [4, 3])
    double.fail_next("unparseable")  # the first request only: its retry gets the score
    summary, out = run_score(double, tmp_path, data, judge={"concurrency": 1})
    assert [r[QUALITY_FIELD]["score"] for r in out] == [4, 3] and len(double.requests) == 3


def test_bad_bodies_are_counted_and_asked_again_on_the_next_run(double, tmp_path):
    data = write_alpaca(tmp_path / "a.json", [4, 3, 2])
    double.fail_next("huge", "huge", "garbage", "garbage")  # record 1 twice, then record 2 twice
    summary, out = run_score(double, tmp_path, data, judge={"concurrency": 1, "max_response_bytes": 2**20})
    assert [r[QUALITY_FIELD]["score"] for r in out] == [None, None, 2]
    assert summary.unscored == {"bad_response": 2} and out[0][QUALITY_FIELD]["error"] == "bad_response"
    double.requests.clear()
    summary, out = run_score(double, tmp_path, data)  # not cached: a gateway's page is not the judge's word
    assert [r[QUALITY_FIELD]["score"] for r in out] == [4, 3, 2] and len(double.requests) == 2


def test_http_errors_are_retried_then_stop_with_one_line_and_keep_what_is_done(double, tmp_path):
    data = write_alpaca(tmp_path / "a.json", [4, 3])
    double.fail_next("500", "429")
    _, out = run_score(double, tmp_path, data, judge={"concurrency": 1, "max_retries": 2})
    assert [r[QUALITY_FIELD]["score"] for r in out] == [4, 3]
    double.always = "500"
    data2 = write_alpaca(tmp_path / "b.json", [1, 2])
    with pytest.raises(RemoteError, match="still failing after 2 attempts"):
        run_score(double, tmp_path, data2, judge={"concurrency": 1})
    assert [QUALITY_FIELD in r for r in json.loads((tmp_path / "scored.json").read_text())] == [False, False]


def test_max_cost_stops_cleanly_and_a_rerun_with_more_finishes(double, tmp_path):
    data = write_alpaca(tmp_path / "a.json", [4] * 10)
    prices = Prices(price_in=100.0, price_out=100.0, max_cost=0.06)  # the double: ~160 tokens a request
    summary, out = run_score(double, tmp_path, data, judge={"concurrency": 1, "max_tokens": 50}, prices=prices)
    assert summary.stopped == "max-cost" and 0 < summary.sent < 10 and summary.spend.cost <= 0.06
    assert len(out) == 10 and sum(QUALITY_FIELD in r for r in out) == summary.sent
    assert summary.unscored["not_judged"] == 10 - summary.sent and "stopped at --max-cost" in summary.describe()
    double.requests.clear()
    summary2, out = run_score(double, tmp_path, data, judge={"concurrency": 1})
    assert len(double.requests) == 10 - summary.sent and all(r[QUALITY_FIELD]["score"] == 4 for r in out)


def test_formats_are_kept_and_a_multi_turn_chat_is_unscored(double, tmp_path):
    chats = [{"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi <score=4>"}]},
             {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                                {"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]}]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in chats))
    config = ScoreConfig(data=str(path), out=str(tmp_path / "chats.scored.jsonl"), progress=False,
                         judge=JudgeConfig(url=double.url, model=double.model))
    summary = score(config)
    lines = [json.loads(line) for line in Path(config.out).read_text().splitlines()]
    assert "conversations" in lines[0] and lines[0][QUALITY_FIELD]["score"] == 4
    assert QUALITY_FIELD not in lines[1] and summary.unscored == {"multi_turn": 1} and len(double.requests) == 1


def test_a_record_past_max_chars_is_not_sent(double, tmp_path):
    data = write_alpaca(tmp_path / "a.json", [4, 3])
    records = json.loads(Path(data).read_text())
    records[1]["output"] += "x" * 200
    Path(data).write_text(json.dumps(records))
    summary, out = run_score(double, tmp_path, data, max_chars=100)
    assert [r.get(QUALITY_FIELD, {}).get("score") for r in out] == [4, None] and len(double.requests) == 1
    assert summary.unscored == {"too_long": 1} and "unscored: too_long 1" in summary.describe()


def test_kill_9_then_rerun_judges_each_record_once(tmp_path):
    double = JudgeDouble(delay=0.15)
    try:
        data = write_alpaca(tmp_path / "a.json", [i % 6 for i in range(12)])
        out, cache = tmp_path / "k.json", tmp_path / "k.cache.sqlite"
        argv = [sys.executable, "-m", "pacos", "data", "score", data, "--judge-url", double.url, "--judge-model",
                double.model, "--out", str(out), "--concurrency", "3", "--no-progress"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "OPENAI_API_KEY": "x"})
        deadline = time.monotonic() + 60
        while len(double.requests) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
        first = [r["messages"][1]["content"] for r in double.requests]
        with sqlite3.connect(cache) as db:
            kept = db.execute("SELECT COUNT(*) FROM games").fetchone()[0]
        assert len(first) - 3 <= kept < 12 and not out.exists()  # at most the 3 in flight were lost
        double.requests.clear()
        summary, records = run_score(double, tmp_path, data, cache=str(cache))
        second = [r["messages"][1]["content"] for r in double.requests]
        assert len(second) == len(set(second)) == 12 - kept and summary.cached == kept
        assert len(set(first) | set(second)) == 12  # every record judged, none twice in the rerun
        assert [r[QUALITY_FIELD]["score"] for r in records] == [i % 6 for i in range(12)]
    finally:
        double.close()


def scored_file(tmp_path, scores):
    records = [{"instruction": f"t{i}", "input": "", "output": f"o{i}",
                **({} if s is None else {QUALITY_FIELD: s if isinstance(s, dict) else {"score": s}})}
               for i, s in enumerate(scores)]
    path = tmp_path / "scored.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_filter_keeps_exactly_the_records_at_or_above_the_threshold_and_draws_a_png(tmp_path):
    scores = [5, 4.5, 4.49, 0, None, {"score": None, "error": "unparseable"}, {"score": "5"}, {"score": 7}, 3]
    data = scored_file(tmp_path, scores)
    summary = filter_file(FilterConfig(data=data, out=str(tmp_path / "kept.jsonl")))
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in kept] == ["t0", "t1"]
    assert (summary.kept, summary.dropped, summary.unscored) == (2, 3, 4)
    png = tmp_path / "kept.scores.png"
    assert summary.plot == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "kept 2" in summary.describe() and "unscored 4 (dropped)" in summary.describe()

    summary = filter_file(FilterConfig(data=data, out=str(tmp_path / "all.jsonl"), min_score=0,
                                       keep_unscored=True, no_plot=True))
    assert summary.kept == len(scores) and summary.plot is None and not (tmp_path / "all.scores.png").exists()


def test_the_command_line_scores_then_filters(double, tmp_path, capsys):
    data = write_alpaca(tmp_path / "a.json", TRUE_SCORES)
    scored, kept, plot = tmp_path / "s.json", tmp_path / "k.json", tmp_path / "h.png"
    assert main(["data", "score", data, "--judge-url", double.url, "--judge-model", double.model,
                 "--out", str(scored), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "scored 8 of 8" in printed and "scores: 0-<0.5 1" in printed and (tmp_path / "s.cache.sqlite").exists()
    assert main(["data", "filter", str(scored), "--min-score", "4.5", "--out", str(kept), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "kept 3 record(s) scored >= 4.5" in printed and "dropped 5" in printed
    assert [r["quality"]["score"] for r in json.loads(kept.read_text())] == [5, 4.5, 4.5]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_bad_data_files_are_one_line_errors(double, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n')
    assert main(["data", "score", str(bad), "--judge-url", double.url, "--judge-model", double.model,
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and len(err.strip().splitlines()) == 1 and double.requests == []
    assert main(["data", "filter", str(bad), "--out", str(tmp_path / "f.jsonl")]) == 2
    assert f"{bad}:2" in capsys.readouterr().err
    assert main(["data", "filter", str(bad), "--out", str(tmp_path / "f.jsonl"), "--min-score", "6"]) == 2
    assert "--min-score" in capsys.readouterr().err
    assert main(["data", "filter", str(bad), "--out", str(tmp_path / "f.jsonl"), "--plot", "p.png", "--no-plot"]) == 2
    assert "--no-plot" in capsys.readouterr().err
    double.always = "500"
    good = write_alpaca(tmp_path / "good.json", [4])
    assert main(["data", "score", good, "--judge-url", double.url, "--judge-model", double.model,
                 "--out", str(tmp_path / "o.json"), "--max-retries", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "judge at" in err and "HTTP 500" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text, expected", [
    ("Score: 4.5\nClear and correct.", (4.5, "Clear and correct.")),
    ("\n  Score: 5\n", (5.0, "")),
    ("Score:0", (0.0, "")),
    ("Score: 3.25 \r\nok", (3.25, "ok")),
    ("[[4.5]]", None), ("score: 4", None), ("Score: 5.5", None), ("Score: -1", None), ("Score: nan", None),
    ("Score: 10", None), ("Score: 4.5/5", None), ("I rate it\nScore: 4", None), ("Score: 4.", None),
    ("Score: inf", None), ("**Score: 4**", None), ("", None), ("Score: " + "9" * 10_000, None),
])
def test_parse_score_reads_only_the_prompt_format(text, expected):
    assert parse_score(text) == expected


def test_parse_score_of_a_huge_reply_reads_its_head_only():
    text = "Score: 4\n" + "because " * 1_000_000
    start = time.monotonic()
    found = parse_score(text)
    assert found[0] == 4.0 and len(found[1]) <= 500 and time.monotonic() - start < 0.5
    assert parse_score(" " * 5_000_000 + "Score: 4") is None


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_score_never_raises_and_returns_a_score_in_range(text):
    found = parse_score(text)
    if found is not None:
        value, reason = found
        assert 0 <= value <= 5 and math.isfinite(value) and "\n" not in reason and len(reason) <= 500


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=5, places=2, allow_nan=False), st.text())
def test_parse_score_reads_every_score_it_asks_for(value, reason):
    found = parse_score(f"Score: {value}\n{reason}")
    assert found is not None and found[0] == float(value)


def test_histogram_bins_and_score_of_refuse_what_is_not_a_score():
    assert dict(histogram([0, 0.49, 0.5, 4.5, 4.99, 5]))[0.0] == 2
    assert dict(histogram([4.5, 4.99, 5])) == {**dict.fromkeys([i / 2 for i in range(11)], 0), 4.5: 2, 5.0: 1}
    assert [part.rsplit(" ", 1)[1] for part in describe_histogram([]).split(" | ")] == ["0"] * 11
    qualities = [{"score": True}, {"score": math.inf}, {"score": math.nan}, {"score": -0.5}, "x", None,
                 {"score": 2}]
    assert [score_of(Example("i", "", "o", {QUALITY_FIELD: q})) for q in qualities] == [None] * 6 + [2.0]
