"""Judging answers and counting bad ones in a row: pure functions on known outcomes."""

import pytest

from pacos.data.dedup import Decision
from pacos.self_instruct.bad_answers import (
    BadAnswerStreak,
    Problem,
    TooManyBadAnswers,
    answer_problem,
)

NEW = Decision(kept=True, score=0.1, nearest="x")


@pytest.mark.parametrize("error, text, cut, outcomes, kept, kind, detail", [
    ("not JSON (...)", "", 0, [], None, "unreadable", "not JSON (...)"),
    (None, "  \n", 0, [], None, "unparseable", "it was empty"),
    (None, "Sorry, no.\nReally.", 0, [], None, "unparseable", "no numbered tasks in it: 'Sorry, no. Really.'"),
    (None, "1. Instruction: Half a t", 1, [], None, "cut", "it was cut at --max-tokens before its first task"),
    (None, "t", 0, ["too_short", "too_short", "blacklisted"], None, "filtered",
     "none of its 3 tasks passed the filters (too_short 2, blacklisted 1)"),
    (None, "t", 0, ["similar", "too_short", "similar"], None, "similar", "none of its 3 tasks was new (similar 2"),
    (None, "t", 0, ["too_short", NEW], 0, "no_instance", "none of its 1 new instructions got a usable instance"),
])
def test_answer_problem_says_why_nothing_was_kept(error, text, cut, outcomes, kept, kind, detail):
    problem = answer_problem(error, text, cut, outcomes, kept)
    assert problem.kind == kind and problem.detail.startswith(detail)


def test_an_answer_with_one_kept_task_is_usable():
    assert answer_problem(None, "t", 1, ["too_short", "similar", NEW]) is None
    assert answer_problem(None, "t", 0, [NEW], kept=1) is None


def test_streak_counts_consecutive_bad_answers_and_names_the_last():
    streak, bad = BadAnswerStreak(3), Problem("unreadable", "not JSON")
    streak.add([bad, bad, None, bad])  # a usable answer resets the count
    assert streak.count == 1 and streak.error() is None
    streak.add([bad, Problem("cut", "it was cut")])
    error = streak.error()
    assert isinstance(error, TooManyBadAnswers) and error.exit_code == 2
    assert str(error).startswith("the teacher's last 3 answers had no usable tasks (last: it was cut); "
                                 "raise --max-tokens.")
    streak.add([None])
    assert streak.error() is None
