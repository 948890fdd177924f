"""Dataset statistics: counts, input share, turns, word-length percentiles, and the text table."""

import json
import sys
import types
from pathlib import Path

import pytest

from pacos.data.formats import load_records
from pacos.data.records import Conversation, Example, Message
from pacos.data.stats import compute_stats, format_stats, percentiles

FIXTURES = Path(__file__).parent / "fixtures"  # real records, see fixtures/README.md


def test_percentiles_nearest_rank():
    assert percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7}
    assert percentiles([3, 1, 2]) == {"p50": 2, "p90": 3, "p99": 3, "max": 3}
    assert percentiles([]) is None


def test_instruction_stats():
    records = [Example("Add these numbers.", "1 2", "3"), Example("Say hi.", "", "hi there"),
               Example("Name it.", "", "x")]
    stats = compute_stats(records)
    assert stats["records"] == 3
    assert stats["kinds"] == {"instruction": 3, "conversation": 0}
    assert stats["with_input"] == 1 and stats["with_input_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert stats["words"]["instruction"] == {"p50": 2, "p90": 3, "p99": 3, "max": 3}
    assert stats["words"]["input"] == {"p50": 2, "p90": 2, "p99": 2, "max": 2}  # only records with an input
    assert stats["words"]["output"]["max"] == 2
    assert "turns" not in stats and "tokens" not in stats
    json.dumps(stats)


def test_conversation_stats():
    records = [
        Conversation([Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello there.")]),
        Conversation([Message("user", "a b c"), Message("assistant", "d"), Message("user", "e"),
                      Message("assistant", "f g")]),
        Example("Say hi.", "", "hi"),
    ]
    stats = compute_stats(records)
    assert stats["kinds"] == {"instruction": 1, "conversation": 2}
    assert stats["turns"] == {"p50": 2, "p90": 4, "p99": 4, "max": 4}
    assert stats["with_system"] == 1
    assert stats["words"]["user turn"] == {"p50": 1, "p90": 3, "p99": 3, "max": 3}
    assert stats["words"]["assistant turn"]["max"] == 2
    assert stats["words"]["system turn"]["max"] == 2
    table = format_stats(stats)
    assert "turns per conversation" in table and "with system prompt" in table
    json.dumps(stats)


def test_empty_records():
    stats = compute_stats([])
    assert stats["records"] == 0 and stats["words"] == {} and stats["with_input_share"] is None
    assert format_stats(stats).startswith("records")


def test_format_stats_table():
    stats = compute_stats([Example("Add these numbers.", "1 2", "3"), Example("Say hi.", "", "hi there")])
    table = format_stats(stats)
    assert "with input                1 (50.0%)" in table
    assert table.splitlines()[-3].split() == ["words:", "instruction", "2", "3", "3", "3"]


def test_token_counts_use_encode_record(monkeypatch):
    # encode_record belongs to the training stack; a stand-in counts characters so the arithmetic is checkable.
    calls = []

    def encode_record(record, tokenizer, template=None, max_len=None):
        calls.append((template, max_len))
        return types.SimpleNamespace(input_ids=list(record.output))

    monkeypatch.setitem(sys.modules, "pacos.prompting.encode", types.SimpleNamespace(encode_record=encode_record))
    records = [Example("i", "", "x" * n) for n in (3, 5, 10)]
    stats = compute_stats(records, tokenizer=object(), template="alpaca", max_len=4)
    assert calls == [("alpaca", None)] * 3  # whole sequences: truncation would hide what exceeds max_len
    assert stats["tokens"] == {"template": "alpaca", "length": {"p50": 5, "p90": 10, "p99": 10, "max": 10},
                               "max_len": 4, "over_max_len": 2, "over_max_len_share": pytest.approx(0.6667)}
    table = format_stats(stats)
    assert "tokens: alpaca" in table and "2 (66.7%) would be truncated" in table


def test_real_alpaca_stats():
    raw = json.loads((FIXTURES / "alpaca_60.json").read_text(encoding="utf-8"))
    stats = compute_stats(load_records(FIXTURES / "alpaca_60.json"))
    assert stats["records"] == len(raw) and stats["with_input"] == sum(1 for o in raw if o["input"].strip())
    assert stats["words"]["instruction"]["max"] == max(len(o["instruction"].split()) for o in raw)
    assert stats["words"]["output"]["p50"] <= stats["words"]["output"]["p90"] <= stats["words"]["output"]["max"]
