"""Tests for pacos.data.synth: every answer is recomputed here from the request text, independently."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest

from pacos.data.records import Example
from pacos.data.synth import TASKS, record_key, synth_records
from pacos.errors import DataError

N_PER_TASK = 200


@pytest.fixture(scope="module")
def records() -> list[Example]:
    return synth_records(N_PER_TASK * len(TASKS), seed=7)


@pytest.fixture(scope="module")
def by_task(records) -> dict[str, list[Example]]:
    grouped = defaultdict(list)
    for record in records:
        grouped[record.extra["task"]].append(record)
    return grouped


def subject(record: Example) -> str:
    """What the request is about: the input, else the quoted word, else the text after a colon, else all of it."""
    if record.input:
        return record.input
    quoted = re.search(r"'([^']*)'", record.instruction)
    if quoted:
        return quoted.group(1)
    if ": " in record.instruction:
        return record.instruction.split(": ", 1)[1]
    return record.instruction


def numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def difference(record: Example) -> int:
    text = record.input or record.instruction
    m = re.search(r"Subtract (\d+) from (\d+)", text)
    if m:
        return int(m.group(2)) - int(m.group(1))
    m = re.search(r"(\d+) (?:-|minus) (\d+)", text)
    assert m, f"cannot read a subtraction from {record}"
    return int(m.group(1)) - int(m.group(2))


def expected_answer(record: Example) -> str:
    """The right answer, computed from scratch (no code shared with the generator)."""
    task, x = record.extra["task"], subject(record)
    if task == "reverse_word":
        return "".join(reversed(x))
    if task == "uppercase":
        return x.upper()
    if task == "sort_letters":
        return "".join(sorted(x))
    if task == "remove_vowels":
        return re.sub("[aeiou]", "", x)
    if task == "first_letters":
        return "".join(word[0] for word in x.split())
    if task == "last_letters":
        return "".join(word[-1] for word in x.split())
    if task == "sort_numbers":
        return ", ".join(str(v) for v in sorted(numbers(x)))
    if task == "max_number":
        return str(max(numbers(x)))
    if task == "add":
        assert "+" in x or "plus" in x or x.startswith("Add")
        return str(sum(numbers(x)))
    if task == "subtract":
        return str(difference(record))
    raise AssertionError(f"test does not know task {task}: add its recomputation here")


def test_at_least_eight_tasks_and_each_is_checked_here(records):
    assert len(TASKS) >= 8
    for name in TASKS:  # expected_answer raises for a task it does not know
        expected_answer(next(r for r in records if r.extra["task"] == name))


def test_every_answer_is_right(records):
    wrong = [(r, expected_answer(r)) for r in records if r.output != expected_answer(r)]
    assert not wrong, wrong[:3]


def test_answer_is_never_the_input_or_the_subject(records):
    for r in records:
        assert r.output and r.output != r.input and r.output != subject(r), r


SUBJECT_SHAPES = {  # fixed lengths: what lets a tiny model learn the tasks in minutes (see synth.py)
    "reverse_word": "[a-z]{5}", "uppercase": "[a-z]{5}", "sort_letters": "[a-z]{5}", "remove_vowels": "[a-z]{5}",
    "first_letters": "[a-z]{4} [a-z]{4} [a-z]{4}", "last_letters": "[a-z]{4} [a-z]{4} [a-z]{4}",
    "sort_numbers": r"\d\d, \d\d, \d\d", "max_number": r"\d\d, \d\d, \d\d",
}


def test_subjects_have_a_fixed_shape_and_everything_stays_short(records):
    for r in records:
        assert len(r.instruction) <= 50 and len(r.input) <= 20 and len(r.output) <= 12, r
        shape = SUBJECT_SHAPES.get(r.extra["task"])
        if shape:
            assert re.fullmatch(shape, subject(r)), r
        else:
            assert [len(str(v)) for v in numbers(r.input or r.instruction)] == [2, 2], r


def test_deterministic_per_seed_and_seeds_differ():
    assert synth_records(60, seed=3) == synth_records(60, seed=3)
    assert synth_records(60, seed=3) != synth_records(60, seed=4)


def test_tasks_are_balanced(by_task):
    assert {name: len(rs) for name, rs in by_task.items()} == {name: N_PER_TASK for name in TASKS}
    counts = Counter(r.extra["task"] for r in synth_records(len(TASKS) * 5 + 3, seed=1))
    assert set(counts) == set(TASKS) and set(counts.values()) <= {5, 6}


def test_tasks_interleaved_not_blocked(records):
    first = {r.extra["task"] for r in records[: 4 * len(TASKS)]}
    assert len(first) >= len(TASKS) - 2


def test_many_distinct_answers_per_task(by_task):
    for name, rs in by_task.items():
        assert len({r.output for r in rs}) >= 50, name


def test_varied_phrasings_with_and_without_input(by_task):
    for name, rs in by_task.items():
        shapes = {(re.sub(r"'[^']*'|: .*|\d+", "X", r.instruction), bool(r.input)) for r in rs}
        assert len(shapes) >= 3, (name, shapes)
        assert {has_input for _, has_input in shapes} == {True, False}, name


def test_task_subset_and_names_are_stripped():
    rs = synth_records(20, seed=0, tasks=["add", " reverse_word"])
    assert {r.extra["task"] for r in rs} == {"add", "reverse_word"}


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(DataError, match="nope") as info:
        synth_records(5, tasks=["add", "nope"])
    assert all(name in str(info.value) for name in TASKS)


@pytest.mark.parametrize("n", [0, -3])
def test_n_must_be_positive(n):
    with pytest.raises(DataError, match="positive"):
        synth_records(n)


def test_exclude_gives_a_disjoint_set():
    train = synth_records(3000, seed=1)
    test = synth_records(300, seed=2, exclude={record_key(r) for r in train})
    assert not {record_key(r) for r in train} & {record_key(r) for r in test}
    # Excluding a seed's own records makes it draw others.
    same = synth_records(30, seed=5)
    other = synth_records(30, seed=5, exclude={record_key(r) for r in same})
    assert not {record_key(r) for r in same} & {record_key(r) for r in other}


def test_cli_writes_records_with_their_task(tmp_path):
    pytest.importorskip("pacos.data.formats")
    from pacos.cli import main

    out = tmp_path / "synth.jsonl"
    assert main(["data", "synth", "--n", "25", "--out", str(out), "--seed", "3", "--tasks", "add,uppercase"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 25 and {row["task"] for row in rows} == {"add", "uppercase"}
