"""When to give up on a teacher: too many answers in a row, in commit order, from which no task was kept.

A teacher that answers 200 with a web page, `choices: []`, prose or the same task over and over would
otherwise keep the loop asking forever. Answers are judged in the order batches commit (and, within a
batch, in prompt order), so the streak, and where a run stops, do not depend on how requests interleave.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pacos.errors import PacosError

# What to try, by kind of problem (the kind of the last bad answer is the one named).
HINTS = {
    "unreadable": "check --teacher-url and --api (is it an OpenAI-compatible server?)",
    "unparseable": "check --teacher-model and --api (does the model follow the prompt's format? "
                   "base models suit completions, chat models --api chat)",
    "cut": "raise --max-tokens",
    "filtered": "check --teacher-model (its tasks fail Alpaca's filters)",
    "similar": "the teacher repeats itself: raise --temperature or --threshold",
    "no_instance": "check --teacher-model (it does not answer the instance prompts)",
}


class TooManyBadAnswers(PacosError):
    """The teacher's recent answers gave nothing to keep; what was committed before stays resumable."""


@dataclass
class Problem:
    kind: str  # a key of HINTS
    detail: str  # why this answer gave nothing, in a few words


def answer_problem(error: str | None, text: str, cut: int, outcomes: list, kept: int | None = None) -> Problem | None:
    """Why one answer gave nothing to keep, or None if it gave something.

    `outcomes` holds, per task parsed from the answer, its discard reason (a str) or its novelty decision;
    `kept` is how many of the novel ones became records (default: all of them).
    """
    if error:
        return Problem("unreadable", error)
    if not outcomes:
        if cut:
            return Problem("cut", "it was cut at --max-tokens before its first task was complete")
        if not text.strip():
            return Problem("unparseable", "it was empty")
        preview = " ".join(text.split())[:60]
        return Problem("unparseable", f"no numbered tasks in it: {preview!r}")
    reasons = Counter(o for o in outcomes if isinstance(o, str))
    novel = len(outcomes) - sum(reasons.values())
    if novel == 0:
        counts = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
        if "similar" in reasons:  # some passed the filters, and were old news
            return Problem("similar", f"none of its {len(outcomes)} tasks was new ({counts})")
        return Problem("filtered", f"none of its {len(outcomes)} tasks passed the filters ({counts})")
    if kept == 0:
        return Problem("no_instance", f"none of its {novel} new instructions got a usable instance")
    return None


class BadAnswerStreak:
    """Counts consecutive bad answers; `error` gives the error to stop with once `limit` of them end a batch."""

    def __init__(self, limit: int):
        self.limit, self.count, self.last = limit, 0, None

    def add(self, problems: list[Problem | None]) -> None:
        for problem in problems:
            self.count = self.count + 1 if problem else 0
            self.last = problem or self.last

    def error(self) -> TooManyBadAnswers | None:
        if self.count >= self.limit and self.last:
            return TooManyBadAnswers(
                f"the teacher's last {self.count} answers had no usable tasks (last: {self.last.detail}); "
                f"{HINTS[self.last.kind]}. Batches committed so far are kept: rerun the same command to resume "
                "(--max-bad-answers sets how many bad answers in a row end a run)"
            )
        return None
