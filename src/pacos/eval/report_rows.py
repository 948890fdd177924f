"""What an evaluation report is computed from: `pacos eval judge`'s judgements files, or human votes, checked."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from pacos.errors import DataError

SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5}  # model_a's points for a winner; a tie is half a win
MODES = ("pairwise", "single", "reference")
ORDERS, VERDICTS = ("ab", "ba"), ("a", "b", "tie")


@dataclass(frozen=True)
class Pairwise:
    """One judged comparison of model_a's answer with model_b's on one turn of one question."""

    where: str
    question_id: str
    category: str | None
    turn: int
    model_a: str
    model_b: str
    score_a: float  # 1: a won, 0.5: tie, 0: b won
    preference_a: float | None  # the judge's P(a better), when it gave one
    len_a: int
    len_b: int
    games: tuple[tuple[str, str | None], ...] = ()  # (order, verdict) of each game (verdicts name models)
    inconsistent: bool = False
    both_bad: bool = False  # a human vote "both are bad" (counted as a tie)


@dataclass(frozen=True)
class Grade:
    """One single-answer (or reference-guided) rating, 1 to 10."""

    where: str
    mode: str  # "single" or "reference"
    question_id: str
    category: str | None
    turn: int
    model: str
    rating: float
    length: int | None


@dataclass
class Judgements:
    """Every usable row of the inputs, and what was left out and why."""

    sources: list[str] = field(default_factory=list)
    kind: str = "judge"  # "judge" or "human"
    pairwise: list[Pairwise] = field(default_factory=list)
    grades: list[Grade] = field(default_factory=list)
    excluded: Counter = field(default_factory=Counter)  # reason -> records
    judges: set[str] = field(default_factory=set)
    prompt_versions: set[str] = field(default_factory=set)


def read_judgements(paths) -> Judgements:
    """The judgements files as rows; DataError naming FILE:LINE at the first bad record."""
    from pacos.data.raw_files import read_raw

    out = Judgements(sources=[str(p) for p in paths])
    seen: dict[tuple, str] = {}
    for path in paths:
        for entry in read_raw(path).entries:
            if entry.error:
                raise DataError(f"{entry.where}: {entry.error}")
            _add_record(out, entry.obj, entry.where, seen)
    return out


def _add_record(out: Judgements, obj, where: str, seen: dict[tuple, str]) -> None:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object (a judgement from `pacos eval judge`), got "
                        f"{type(obj).__name__}")
    mode = obj.get("mode")
    if mode not in MODES:
        raise DataError(f"{where}: unknown mode {mode!r}; a judgement's mode is one of {', '.join(MODES)}")
    judge = []
    for name, into in (("judge", out.judges), ("prompt_version", out.prompt_versions)):
        value = _get(obj, name, where, (str, int), required=False)
        judge.append(value)
        if value is not None:
            into.add(str(value))
    excluded = _get(obj, "excluded", where, (str,), required=False)
    if excluded is not None:
        out.excluded[excluded or "excluded"] += 1
        return
    common = dict(where=where, question_id=str(_get(obj, "question_id", where, (str, int))),
                  category=_get(obj, "category", where, (str,), required=False),
                  turn=_count(obj, "turn", where, minimum=1))
    if mode == "pairwise":
        row = _pairwise(obj, where, common)
        if row is None:
            out.excluded["no verdict"] += 1
        else:
            _once(seen, (mode, row.question_id, row.turn, frozenset((row.model_a, row.model_b)), *judge), where)
            out.pairwise.append(row)
        return
    rating = _number(obj, "rating", where, required=False)
    if rating is None:
        out.excluded["no rating"] += 1
        return
    if not 1 <= rating <= 10:
        raise DataError(f"{where}: field 'rating' must be from 1 to 10 (got {rating})")
    length = _count(obj, "len", where, required=False)
    grade = Grade(**common, mode=mode, model=_name(obj, "model", where), rating=float(rating), length=length)
    _once(seen, (mode, grade.question_id, grade.turn, grade.model, *judge), where)
    out.grades.append(grade)


def _once(seen: dict, identity: tuple, where: str) -> None:
    """Refuse a second judgement of the same item by the same judge and prompt (a file given twice, say)."""
    if identity in seen:
        raise DataError(f"{where}: the same judgement again (first at {seen[identity]}); give each judgements "
                        "file once")
    seen[identity] = where


def _pairwise(obj: dict, where: str, common: dict) -> Pairwise | None:
    model_a, model_b = _name(obj, "model_a", where), _name(obj, "model_b", where)
    if model_a == model_b:
        raise DataError(f"{where}: model_a and model_b are both {model_a!r}; a comparison needs two models")
    winner = _get(obj, "winner", where, (str,), required=False)
    if winner is None:
        return None
    if winner not in SCORE:
        raise DataError(f"{where}: field 'winner' must be one of a, b, tie or null (got {winner!r})")
    score = _number(obj, "score_a", where, required=False)
    if score is not None and score != SCORE[winner]:
        raise DataError(f"{where}: score_a {score} does not match winner {winner!r} ({SCORE[winner]})")
    preference = _number(obj, "preference_a", where, required=False)
    if preference is not None and not 0 <= preference <= 1:
        raise DataError(f"{where}: field 'preference_a' must be a probability from 0 to 1 (got {preference})")
    inconsistent = _get(obj, "inconsistent", where, (bool,), required=False) or False
    return Pairwise(**common, model_a=model_a, model_b=model_b, score_a=SCORE[winner],
                    preference_a=None if preference is None else float(preference),
                    len_a=_count(obj, "len_a", where), len_b=_count(obj, "len_b", where),
                    games=_games(obj, where), inconsistent=inconsistent)


def _games(obj: dict, where: str) -> tuple:
    games = _get(obj, "games", where, (list,), required=False) or []
    out = []
    for i, game in enumerate(games):
        if not isinstance(game, dict) or game.get("order") not in ORDERS or \
                game.get("verdict", None) not in (*VERDICTS, None):
            raise DataError(f"{where}: games[{i}] must be an object with order ab/ba and verdict a/b/tie/null")
        out.append((game["order"], game.get("verdict")))
    return tuple(out)


_KIND = {str: "a string", int: "an integer", bool: "true or false", list: "a list", float: "a number"}


def _get(obj: dict, name: str, where: str, kinds: tuple, required: bool = True):
    value = obj.get(name)
    if value is None:
        if required:
            raise DataError(f"{where}: field {name!r} is missing")
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise DataError(f"{where}: field {name!r} must be {' or '.join(_KIND[k] for k in kinds)} "
                        f"(got {type(value).__name__})")
    return value


def _name(obj: dict, name: str, where: str) -> str:
    value = _get(obj, name, where, (str,))
    if not value.strip():
        raise DataError(f"{where}: field {name!r} is empty; it names a model")
    return value


def _number(obj: dict, name: str, where: str, required: bool = True) -> float | None:
    value = _get(obj, name, where, (int, float), required=required)
    if value is not None and not math.isfinite(value):
        raise DataError(f"{where}: field {name!r} must be a finite number (got {value})")
    return value


def _count(obj: dict, name: str, where: str, minimum: int = 0, required: bool = True) -> int | None:
    value = _get(obj, name, where, (int,), required=required)
    if value is not None and value < minimum:
        raise DataError(f"{where}: field {name!r} must be an integer >= {minimum} (got {value})")
    return value


def human_judgements(comparisons: list[dict], source: str) -> Judgements:
    """Human A/B votes (FeedbackStore.comparisons()) as pairwise rows: "both_bad" counts as a tie and is also
    counted apart; a question is its conversation so far (votes on one context resample together); no
    position consistency (each pair was shown once); category None. A model served at several revisions is
    named MODEL@REVISION, so that checkpoints of one model are told apart."""
    from pacos.serve.feedback import COMPARISON_VOTES, context_hash

    revisions: dict[str, set] = {}
    for c in comparisons:
        for side in "ab":
            revisions.setdefault(str(c.get(f"model_{side}")), set()).add(c.get(f"revision_{side}") or "")

    def name(c: dict, side: str) -> str:
        model = str(c.get(f"model_{side}"))
        return f"{model}@{c.get(f'revision_{side}') or '?'}" if len(revisions[model]) > 1 else model

    out = Judgements(sources=[source], kind="human")
    for c in comparisons:
        where = f"{source}: vote {c.get('id')}"
        vote = c.get("vote")
        if vote not in COMPARISON_VOTES:
            raise DataError(f"{where}: unknown vote {vote!r}; one of {', '.join(COMPARISON_VOTES)}")
        model_a, model_b = name(c, "a"), name(c, "b")
        if model_a == model_b:
            out.excluded["same model on both sides"] += 1
            continue
        context = c.get("context") or []
        winner = "tie" if vote == "both_bad" else vote
        turn = max(1, sum(1 for m in context if m.get("role") == "user"))
        out.pairwise.append(Pairwise(
            where=where, question_id=context_hash(context), category=None, turn=turn, model_a=model_a,
            model_b=model_b, score_a=SCORE[winner], preference_a=None, len_a=len(c.get("response_a") or ""),
            len_b=len(c.get("response_b") or ""), both_bad=vote == "both_bad"))
    out.judges.add("human")
    return out
