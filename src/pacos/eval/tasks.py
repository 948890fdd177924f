"""Exact-match scoring of generated answers on verifiable tasks, overall and per task (`pacos eval tasks`, `pacos demo`)."""

from __future__ import annotations

from collections.abc import Iterable

from pacos.data.records import Example
from pacos.errors import DataError

UNKNOWN_TASK = "unknown"  # bucket for records that carry no `task`


def normalize_answer(text: str) -> str:
    """The answer as compared: surrounding whitespace dropped, nothing else (case and punctuation count)."""
    return text.strip()


def is_correct(expected: str, generated: str) -> bool:
    """Exact match after `normalize_answer` on both sides."""
    return normalize_answer(expected) == normalize_answer(generated)


def _bucket(correct: int, n: int) -> dict:
    return {"accuracy": correct / n if n else 0.0, "n": n, "correct": correct}


def score_records(records: Iterable[Example]) -> dict:
    """Accuracy of each record's `extra["generated"]` against its `output`, overall and per `extra["task"]`.

    Returns `{"accuracy", "n", "correct", "per_task": {task: {"accuracy", "n", "correct"}}}`; records with
    no task are counted under "unknown".
    """
    counts: dict[str, list[int]] = {}  # task -> [correct, n]
    for index, record in enumerate(records):
        generated = record.extra.get("generated")
        if not isinstance(generated, str):
            raise DataError(
                f"record[{index}]: no `generated` answer to score; run `pacos infer` on the file first "
                "(it adds a `generated` field to every record)"
            )
        task = str(record.extra.get("task") or UNKNOWN_TASK)
        tally = counts.setdefault(task, [0, 0])
        tally[0] += is_correct(record.output, generated)
        tally[1] += 1
    correct = sum(c for c, _ in counts.values())
    n = sum(n for _, n in counts.values())
    return {**_bucket(correct, n), "per_task": {task: _bucket(*counts[task]) for task in sorted(counts)}}


def format_scores(scores: dict) -> str:
    """`score_records`' result as a table: one row per task, then the overall row."""
    rows = [(task, s["n"], s["correct"], s["accuracy"]) for task, s in scores["per_task"].items()]
    rows.append(("all", scores["n"], scores["correct"], scores["accuracy"]))
    width = max(len("task"), *(len(row[0]) for row in rows))
    lines = [f"{'task':<{width}}  {'n':>5}  {'correct':>7}  {'accuracy':>8}"]
    lines += [f"{task:<{width}}  {n:>5}  {correct:>7}  {accuracy:>8.3f}" for task, n, correct, accuracy in rows]
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
