"""FeedbackStore: durable rows, vote states, and the SFT / DPO exports and stats built from them."""

import json
import sqlite3

import pytest

from pacos.errors import PacosError
from pacos.serve.feedback import SCHEMA, FeedbackStore, comparison_pairs, dpo_pairs, feedback_stats, sft_records

from ..conftest import run_pacos

CTX = [{"role": "system", "content": "S"}, {"role": "user", "content": "2+2?"}]


@pytest.fixture()
def store(tmp_path):
    s = FeedbackStore(tmp_path / "sub" / "fb.sqlite3")
    meta = {"model": "tiny", "revision": "abc", "template": "chatml", "params": {"temperature": 0.7}, "conversation_id": "c1"}
    s.record(response_id="r1", context=CTX, response="5", **meta)
    s.record(response_id="r2", context=CTX, response="4", regenerated_from="r1", vote="up", **meta)
    s.record(response_id="r3", context=CTX + [{"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}],
             response="6", vote="up", **meta)
    s.record(response_id="r4", context=[{"role": "user", "content": "hi"}], response="rude", vote="down",
             conversation_id="c2")
    s.record(response_id="r5", context=[{"role": "user", "content": "hi"}], response="hello", vote="up",
             conversation_id="c2")
    s.vote("r5", "flag")  # flagged: never chosen, even upvoted
    return s


def test_rows_are_durable_with_everything_the_vote_needs(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    row = db.execute("SELECT context, response, model, revision, template, params, created_at FROM responses "
                     "WHERE id='r2'").fetchone()
    assert json.loads(row[0]) == CTX and row[1:5] == ("4", "tiny", "abc", "chatml")
    assert json.loads(row[5]) == {"temperature": 0.7} and row[6] > 0
    assert db.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 5
    store.record(response_id="r2", context=CTX, response="changed?", vote="down")  # the response row is kept once
    states = {r["id"]: r for r in store.responses()}
    assert states["r2"]["response"] == "4" and states["r2"]["rating"] == "down"
    assert store.vote("r2", "clear") and store.responses()[1]["rating"] is None
    assert not store.vote("missing", "up")
    with pytest.raises(PacosError, match="unknown vote"):
        store.vote("r2", "meh")


def test_exports_and_stats(store):
    responses = store.responses()
    sft = sft_records(responses)
    assert [r["messages"][-1]["content"] for r in sft] == ["4", "6"]
    assert sft[0]["messages"][:2] == CTX and sft[0]["messages"][-1]["role"] == "assistant"
    pairs = dpo_pairs(responses)
    # r2 (up) beats the answer it replaced (r1); r5 is flagged so "hello" vs "rude" makes no pair
    assert pairs == [{"prompt": CTX, "chosen": [{"role": "assistant", "content": "4"}],
                      "rejected": [{"role": "assistant", "content": "5"}]}]
    stats = feedback_stats(responses, store.vote_count())
    assert stats | {"models": None} == {"responses": 5, "conversations": 2, "votes": 5, "upvoted": 3, "downvoted": 1,
                                        "flagged": 1, "regenerated": 1, "sft_records": 2, "dpo_pairs": 1, "models": None,
                                        "comparisons": 0, "comparison_votes": {"a": 0, "b": 0, "tie": 0, "both_bad": 0}}


def test_feedback_commands(store, tmp_path):
    out = tmp_path / "dpo.jsonl"
    r = run_pacos("feedback", "export", store.path, "--format", "dpo", "--out", out, check=True)
    assert "1 preference pairs" in r.stdout and json.loads(out.read_text())["chosen"][0]["content"] == "4"
    run_pacos("feedback", "export", store.path, "--format", "sft", "--out", tmp_path / "sft.jsonl", check=True)
    assert len((tmp_path / "sft.jsonl").read_text().splitlines()) == 2
    run_pacos("feedback", "export", store.path, "--format", "sft", "--sft-style", "alpaca",
              "--out", tmp_path / "sft.json", check=True)
    [alpaca] = json.loads((tmp_path / "sft.json").read_text())  # the two-turn chat has no Alpaca form
    assert alpaca["instruction"] == "2+2?" and alpaca["output"] == "4" and alpaca["system"] == "S"
    stats = run_pacos("feedback", "stats", store.path, "--json", check=True)
    assert json.loads(stats.stdout)["dpo_pairs"] == 1
    missing = run_pacos("feedback", "stats", tmp_path / "nope.sqlite3")
    assert missing.returncode != 0 and "no such feedback database" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_stats_and_export_never_write_the_database(store, tmp_path):
    before = store.path.read_bytes(), store.path.stat().st_mtime_ns
    stats = run_pacos("feedback", "stats", store.path, "--json", check=True)
    assert json.loads(stats.stdout)["responses"] == 5
    run_pacos("feedback", "export", store.path, "--format", "dpo", "--out", tmp_path / "p.jsonl", check=True)
    assert (store.path.read_bytes(), store.path.stat().st_mtime_ns) == before
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # SQLite itself refuses: opened mode=ro
        with FeedbackStore(store.path, create=False)._connect() as db:
            db.execute("DELETE FROM votes")


@pytest.mark.parametrize("content", [b"not a database at all" * 40, None])
def test_unusable_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "other.sqlite3"
    if content is None:  # a real SQLite file, but some other program's
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (t TEXT)")
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    r = run_pacos("feedback", "stats", path)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and str(path) in r.stderr, r.stderr
    assert path.read_bytes() == before
    if content is not None:
        with pytest.raises(PacosError, match="not a database"):
            FeedbackStore(path)  # what pacos serve --feedback-db gets


def compare(store, cid, vote, a="left answer", b="right answer"):
    return store.record_comparison(comparison_id=cid, context=CTX, model_a="tiny", model_b="other", response_a=a,
                                   response_b=b, vote=vote, revision_a="r1", template_a="chatml", revision_b="r2",
                                   template_b="alpaca", params={"temperature": 0.7, "max_tokens": 8})


def test_comparisons_are_rows_with_their_context_pairs_and_stats(store, tmp_path):
    assert compare(store, "c1", "a") and compare(store, "c2", "b", a="x", b="y") and compare(store, "c3", "tie")
    assert compare(store, "c4", "both_bad")
    assert not compare(store, "c1", "b")  # one vote a comparison: the first stands
    with pytest.raises(PacosError, match="unknown comparison vote"):
        compare(store, "c5", "up")
    rows = FeedbackStore(store.path, create=False).comparisons()
    assert [r["id"] for r in rows] == ["c1", "c2", "c3", "c4"]
    first = rows[0]
    assert {"id", "context", "model_a", "model_b", "response_a", "response_b", "vote", "created_at"} <= set(first)
    assert first["context"] == CTX and (first["model_a"], first["model_b"], first["vote"]) == ("tiny", "other", "a")
    assert (first["revision_a"], first["template_b"], first["params"]) == ("r1", "alpaca", {"temperature": 0.7,
                                                                                          "max_tokens": 8})
    assert first["created_at"] > 0
    assert comparison_pairs(rows) == [
        {"prompt": CTX, "chosen": [{"role": "assistant", "content": "left answer"}],
         "rejected": [{"role": "assistant", "content": "right answer"}]},
        {"prompt": CTX, "chosen": [{"role": "assistant", "content": "y"}],
         "rejected": [{"role": "assistant", "content": "x"}]}]
    stats = json.loads(run_pacos("feedback", "stats", store.path, "--json", check=True).stdout)
    assert stats["comparisons"] == 4 and stats["comparison_votes"] == {"a": 1, "b": 1, "tie": 1, "both_bad": 1}
    assert stats["dpo_pairs"] == 3  # one from the chat votes, two from the decisive comparisons
    out = tmp_path / "dpo.jsonl"
    run_pacos("feedback", "export", store.path, "--format", "dpo", "--out", out, check=True)
    assert [json.loads(line) for line in out.read_text().splitlines()][1:] == comparison_pairs(rows)
    assert "comparison_votes" in run_pacos("feedback", "stats", store.path, check=True).stdout


def test_a_database_from_before_comparisons_still_works(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the schema as it was: responses and votes only
        db.executescript(SCHEMA.split("CREATE TABLE IF NOT EXISTS comparisons")[0])
    assert FeedbackStore(path, create=False).comparisons() == []  # read-only: no table, no rows, no write
    stats = json.loads(run_pacos("feedback", "stats", path, "--json", check=True).stdout)
    assert stats["comparisons"] == 0
    store = FeedbackStore(path)  # what pacos serve does: the table is added
    assert compare(store, "c1", "a") and len(store.comparisons()) == 1
