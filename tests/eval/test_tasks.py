"""Tests for pacos.eval.tasks: exact-match scoring, overall and per task."""

from __future__ import annotations

import pytest

from pacos.data.records import Example
from pacos.errors import DataError
from pacos.eval.tasks import format_scores, is_correct, normalize_answer, score_records


def rec(output: str, generated: str | None, task: str | None = "add") -> Example:
    extra = {} if task is None else {"task": task}
    if generated is not None:
        extra["generated"] = generated
    return Example("What is 2 plus 3?", "", output, extra)


def test_normalize_strips_surrounding_whitespace_only():
    assert normalize_answer("  ABC \n") == "ABC"
    assert normalize_answer("a  b") == "a  b"


@pytest.mark.parametrize(
    "expected, generated, ok",
    [
        ("5", "5", True),
        ("5", " 5\n", True),
        ("abc", "ABC", False),  # case counts
        ("5", "5.", False),  # punctuation counts
        ("5", "The answer is 5", False),
        ("1, 2, 3", "1,2,3", False),
        ("5", "", False),
    ],
)
def test_is_correct_is_exact_match(expected, generated, ok):
    assert is_correct(expected, generated) is ok


def test_score_records_overall_and_per_task():
    records = [
        rec("5", "5"), rec("7", "8"), rec("9", " 9 "),  # add: 2/3
        rec("CAT", "CAT", "uppercase"), rec("DOG", "dog", "uppercase"),  # uppercase: 1/2
        rec("x", "x", None),  # no task: "unknown" 1/1
    ]
    scores = score_records(records)
    assert (scores["n"], scores["correct"]) == (6, 4)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["per_task"] == {
        "add": {"accuracy": pytest.approx(2 / 3), "n": 3, "correct": 2},
        "unknown": {"accuracy": 1.0, "n": 1, "correct": 1},
        "uppercase": {"accuracy": 0.5, "n": 2, "correct": 1},
    }


def test_score_records_empty():
    assert score_records([]) == {"accuracy": 0.0, "n": 0, "correct": 0, "per_task": {}}


def test_missing_generated_names_the_record():
    with pytest.raises(DataError, match=r"record\[1\].*generated"):
        score_records([rec("5", "5"), rec("5", None)])


def test_format_scores_table():
    text = format_scores(score_records([rec("5", "5"), rec("7", "8"), rec("A", "A", "uppercase")]))
    lines = text.splitlines()
    assert lines[0].split() == ["task", "n", "correct", "accuracy"]
    assert lines[1].split() == ["add", "2", "1", "0.500"]
    assert lines[2].split() == ["uppercase", "1", "1", "1.000"]
    assert lines[-1].split() == ["all", "3", "2", "0.667"]
    assert set(lines[-2]) == {"-"}
