"""Procedurally generated instruction tasks with exactly checkable answers (`pacos data synth`, `pacos demo`).

Each task draws a short random subject (a made-up 5-letter word, three 4-letter words, two 2-digit
numbers, or a list of three 2-digit numbers), computes its answer, and phrases the request one of several
ways: with the subject in `input` ("Reverse this word." + "plonk") or inline with an empty `input`
("Reverse the word: plonk"). Subjects and answers are kept short because `pacos demo` trains a tiny
character-level model on these in minutes. No answer can be had by copying the input: subjects where the
answer would equal the subject (a palindrome to reverse, a sorted list to sort) are never drawn.

Records are deterministic for a seed. Two seeds can still produce the same record by chance (rare: the
subject spaces are large), so a held-out set should be drawn with `exclude={record_key(r) for r in train}`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from pacos.data.records import Example
from pacos.errors import DataError

VOWELS = "aeiou"
CONSONANTS = "bcdfghjklmnpqrstvwxyz"
# Every subject of a task has the same length: a tiny model then finds each answer character at a fixed
# distance back, which it learns in ~1000 steps. With 3-7 letter words it must learn content-based
# copying instead, and measured 5% exact match on uppercase after 2000 steps versus 100% with 5 letters.
WORD_LEN = 5  # letters in the word of a one-word task
PHRASE_WORDS, PHRASE_WORD_LEN = 3, 4  # words, and letters per word, in a several-word task
LIST_LEN = 3  # numbers in a list
LOW, HIGH = 10, 99  # numbers always have two digits
MAX_TRIES = 1000  # draws per record before `exclude` is judged to have used up a task's subjects


@dataclass(frozen=True)
class Task:
    """One task: `draw` returns the subject fields and the answer; each phrasing formats those fields.

    A phrasing is `(instruction, input)`; an empty input template means the subject sits in the instruction.
    """

    name: str
    draw: Callable[[random.Random], tuple[dict[str, str], str]]
    phrasings: tuple[tuple[str, str], ...]


def _word(rng: random.Random, length: int = WORD_LEN) -> str:
    """A made-up lowercase word; about a third vowels so words vary but stay word-like."""
    return "".join(rng.choice(VOWELS if rng.random() < 0.35 else CONSONANTS) for _ in range(length))


def _phrase(rng: random.Random) -> list[str]:
    return [_word(rng, PHRASE_WORD_LEN) for _ in range(PHRASE_WORDS)]


def _join(nums: list[int]) -> str:
    return ", ".join(map(str, nums))


def _draw_reverse(rng: random.Random) -> tuple[dict[str, str], str]:
    while True:
        word = _word(rng)
        if word != word[::-1]:
            return {"x": word}, word[::-1]


def _draw_uppercase(rng: random.Random) -> tuple[dict[str, str], str]:
    word = _word(rng)
    return {"x": word}, word.upper()


def _draw_sort_letters(rng: random.Random) -> tuple[dict[str, str], str]:
    while True:
        word = _word(rng)
        answer = "".join(sorted(word))
        if answer != word:
            return {"x": word}, answer


def _draw_remove_vowels(rng: random.Random) -> tuple[dict[str, str], str]:
    while True:
        word = _word(rng)
        answer = "".join(c for c in word if c not in VOWELS)
        if answer and answer != word:  # at least one vowel to remove and one consonant left
            return {"x": word}, answer


def _draw_first_letters(rng: random.Random) -> tuple[dict[str, str], str]:
    words = _phrase(rng)
    return {"x": " ".join(words)}, "".join(w[0] for w in words)


def _draw_last_letters(rng: random.Random) -> tuple[dict[str, str], str]:
    words = _phrase(rng)
    return {"x": " ".join(words)}, "".join(w[-1] for w in words)


def _draw_sort_numbers(rng: random.Random) -> tuple[dict[str, str], str]:
    while True:
        nums = rng.sample(range(LOW, HIGH + 1), LIST_LEN)
        if nums != sorted(nums):  # an already sorted list would be its own answer
            return {"x": _join(nums)}, _join(sorted(nums))


def _draw_max_number(rng: random.Random) -> tuple[dict[str, str], str]:
    # The maximum is drawn first, uniformly, so answers spread over the range instead of piling up near 99.
    top = rng.randint(LOW + LIST_LEN - 1, HIGH)
    nums = rng.sample(range(LOW, top), LIST_LEN - 1) + [top]
    rng.shuffle(nums)
    return {"x": _join(nums)}, str(top)


def _draw_add(rng: random.Random) -> tuple[dict[str, str], str]:
    a, b = rng.randint(LOW, HIGH), rng.randint(LOW, HIGH)
    return {"a": str(a), "b": str(b)}, str(a + b)


def _draw_subtract(rng: random.Random) -> tuple[dict[str, str], str]:
    a = rng.randint(LOW + 1, HIGH)
    b = rng.randint(LOW, a - 1)  # answer is positive: no signs for the model to learn
    return {"a": str(a), "b": str(b)}, str(a - b)


# Inline phrasings end with the subject, as the input form does: the answer then always starts the same
# distance from it, which a tiny model learns far sooner than a subject floating mid-sentence.
_TASK_LIST = (
    Task("reverse_word", _draw_reverse, (
        ("Reverse this word.", "{x}"),
        ("Write the word backwards.", "{x}"),
        ("Reverse the word: {x}", ""),
        ("Spell backwards: {x}", ""),
    )),
    Task("uppercase", _draw_uppercase, (
        ("Convert to uppercase.", "{x}"),
        ("Write this in capitals.", "{x}"),
        ("Uppercase the word: {x}", ""),
        ("Write in all caps: {x}", ""),
    )),
    Task("sort_letters", _draw_sort_letters, (
        ("Sort the letters.", "{x}"),
        ("Alphabetize the letters.", "{x}"),
        ("Sort the letters of: {x}", ""),
        ("Letters in order: {x}", ""),
    )),
    Task("remove_vowels", _draw_remove_vowels, (
        ("Remove the vowels.", "{x}"),
        ("Delete every vowel.", "{x}"),
        ("Remove the vowels from: {x}", ""),
        ("Drop the vowels: {x}", ""),
    )),
    Task("first_letters", _draw_first_letters, (
        ("Give the first letter of each word.", "{x}"),
        ("Join the initials.", "{x}"),
        ("First letters: {x}", ""),
        ("Initials of: {x}", ""),
    )),
    Task("last_letters", _draw_last_letters, (
        ("Give the last letter of each word.", "{x}"),
        ("Join the final letters.", "{x}"),
        ("Last letters: {x}", ""),
        ("Final letters of: {x}", ""),
    )),
    Task("sort_numbers", _draw_sort_numbers, (
        ("Sort in ascending order.", "{x}"),
        ("Order from smallest to largest.", "{x}"),
        ("Sort ascending: {x}", ""),
        ("Put in increasing order: {x}", ""),
    )),
    Task("max_number", _draw_max_number, (
        ("Find the largest number.", "{x}"),
        ("Which number is biggest?", "{x}"),
        ("Largest of: {x}", ""),
        ("Give the maximum of: {x}", ""),
    )),
    Task("add", _draw_add, (
        ("Add the numbers.", "{a} + {b}"),
        ("Compute the sum.", "{a} + {b}"),
        ("What is {a} plus {b}?", ""),
        ("Add {a} and {b}.", ""),
    )),
    Task("subtract", _draw_subtract, (
        ("Compute the difference.", "{a} - {b}"),
        ("Subtract.", "{a} - {b}"),
        ("What is {a} minus {b}?", ""),
        ("Subtract {b} from {a}.", ""),
    )),
)

TASKS: dict[str, Task] = {task.name: task for task in _TASK_LIST}


def record_key(example: Example) -> str:
    """The identity of a request, for `exclude`: instruction and input, NUL-separated."""
    return example.instruction + "\x00" + example.input


def make_record(task: Task, rng: random.Random) -> Example:
    """One record of `task`: a fresh subject in a randomly chosen phrasing."""
    fields, answer = task.draw(rng)
    instruction, input_ = rng.choice(task.phrasings)
    return Example(instruction.format(**fields), input_.format(**fields), answer, {"task": task.name})


def synth_records(
    n: int, seed: int = 0, tasks: list[str] | None = None, exclude: set[str] | None = None
) -> list[Example]:
    """`n` records, the same for the same arguments, each task getting n/len(tasks) of them (give or take one).

    `tasks` picks task names from TASKS (default: all). `exclude` holds `record_key`s never to produce —
    pass the training set's keys when drawing a held-out set, since two seeds may collide by chance.
    """
    if n <= 0:
        raise DataError(f"synth: --n must be a positive number of records, got {n}")
    names = list(TASKS) if tasks is None else [name.strip() for name in tasks]
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise DataError(f"synth: unknown task(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(TASKS)}")
    rng = random.Random(seed)
    # Balanced shuffle: every task appears n // k or n // k + 1 times, in a random order.
    order = [names[i % len(names)] for i in range(n)]
    rng.shuffle(order)
    exclude = set(exclude or ())
    records = []
    for name in order:
        for _ in range(MAX_TRIES):
            record = make_record(TASKS[name], rng)
            if record_key(record) not in exclude:
                break
        else:
            raise DataError(f"synth: task {name} found no record outside `exclude` in {MAX_TRIES} draws")
        records.append(record)
    return records
