"""What `pacos eval judge` judges: the items (a pair of answers, or one answer, to one turn of one question),
the games each needs (a pairwise item is judged in both orders), and how finished games become the
records of --out. Plain data in and out: no requests here."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from pacos.eval.judge_cache import game_key
from pacos.eval.judge_prompts import JudgePrompt, render_pairwise, render_rating
from pacos.eval.questions import AnswerSet

SCORES = {"a": 1.0, "tie": 0.5, "b": 0.0}
ORDERS = ("ab", "ba")  # ab: model_a's answer shown first


@dataclass
class Game:
    """One request's worth of judging: the messages and the cache key of their verdict."""

    key: str
    order: str  # "ab"/"ba" for a pairwise game, "" for a rating
    prompt: JudgePrompt
    messages: list[dict]


@dataclass
class Item:
    """One line of --out before judging: its known fields and its games."""

    record: dict
    games: list[Game]


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # questions left out, and why
    left_out: Counter = field(default_factory=Counter)  # reason -> questions


def by_model(answer_sets: list[AnswerSet]) -> dict[str, dict[str, AnswerSet]]:
    """model -> question key -> its answers, models in the order first seen."""
    models: dict[str, dict[str, AnswerSet]] = {}
    for s in answer_sets:
        models.setdefault(s.model, {})[s.question.key] = s
    return models


def _wanted(answers: dict[str, AnswerSet], categories: tuple[str, ...]) -> dict[str, AnswerSet]:
    return {k: s for k, s in answers.items() if not categories or s.question.category in categories}


def pairwise_plan(models: dict[str, dict[str, AnswerSet]], baseline: dict[str, dict[str, AnswerSet]] | None,
                  judge_model: str, logprobs: bool, categories: tuple[str, ...] = ()) -> Plan:
    """Every --answers model against the baseline model, or (no baseline) every unordered pair once."""
    names = list(models)
    if baseline is not None:
        [base] = baseline  # the caller checks that the file holds one model
        pairs = [(name, base) for name in names if name != base]
        models = {**models, **baseline}
    else:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    plan = Plan()
    for name_a, name_b in pairs:
        side_a, side_b = _wanted(models[name_a], categories), _wanted(models[name_b], categories)
        for name, mine, theirs in ((name_a, side_b, side_a), (name_b, side_a, side_b)):
            lacking = len(mine.keys() - theirs.keys())
            if lacking:
                plan.left_out[f"no answer of {name}"] += lacking
                plan.notes.append(f"{name_a} vs {name_b}: {name} has no answer to {lacking} question(s) the "
                                  "other answered; left out")
        for key in [k for k in side_a if k in side_b]:  # side_a's order
            a, b = side_a[key], side_b[key]
            for turn in range(1, min(len(a.answers), len(b.answers)) + 1):
                plan.items.append(_pair_item(a, b, turn, judge_model, logprobs))
    return plan


def _pair_item(a: AnswerSet, b: AnswerSet, turn: int, judge_model: str, logprobs: bool) -> Item:
    q = a.question
    turns, answers_a, answers_b = list(q.turns[:turn]), a.answers[:turn], b.answers[:turn]
    games = []
    for order in ORDERS:
        first, second = (answers_a, answers_b) if order == "ab" else (answers_b, answers_a)
        prompt, messages = render_pairwise(turns, first, second)
        key = game_key(judge_model, prompt.version, q.key, turn, [first, second], order, logprobs)
        games.append(Game(key, order, prompt, messages))
    record = {"mode": "pairwise", "key": q.key, "question_id": q.question_id, "category": q.category, "turn": turn,
              "model_a": a.model, "model_b": b.model, "len_a": len(answers_a[-1]), "len_b": len(answers_b[-1]),
              "judge": judge_model, "prompt_version": games[0].prompt.version}
    return Item(record, games)


def rating_plan(models: dict[str, dict[str, AnswerSet]], judge_model: str, logprobs: bool,
                references: dict[str, tuple[str, ...]] | None = None, categories: tuple[str, ...] = ()) -> Plan:
    """Every answer rated alone; with `references` (reference mode), against the reference of its turn."""
    plan = Plan()
    for name, answers in models.items():
        for s in _wanted(answers, categories).values():
            q = s.question
            for turn in range(1, len(s.answers) + 1):
                reference = None
                if references is not None:
                    reference = reference_for(references.get(q.key) or q.reference, len(q.turns), turn)
                    if reference is None:
                        plan.left_out["no reference"] += 1
                        continue
                turns, given = list(q.turns[:turn]), s.answers[:turn]
                prompt, messages = render_rating(turns, given, reference)
                key = game_key(judge_model, prompt.version, q.key, turn, [given], "", logprobs, reference)
                record = {"mode": "single" if references is None else "reference", "key": q.key,
                          "question_id": q.question_id, "category": q.category, "turn": turn, "model": name,
                          "len": len(given[-1]), "judge": judge_model, "prompt_version": prompt.version}
                plan.items.append(Item(record, [Game(key, "", prompt, messages)]))
    if plan.left_out["no reference"]:
        plan.notes.append(f"{plan.left_out['no reference']} turn(s) have no reference answer; left out "
                          "(give --references FILE, or judge them with --mode single)")
    return plan


def reference_for(reference: tuple[str, ...] | None, n_turns: int, turn: int) -> str | None:
    """The reference of `turn` (1-based): one per turn, or a single one for the last turn."""
    if not reference:
        return None
    if len(reference) == n_turns:
        return reference[turn - 1]
    return reference[-1] if turn == n_turns else None


def pairwise_record(item: Item, results: list[dict], cached: list[bool]) -> dict:
    """The --out record of a pairwise item from its two games (each a finished game as cached), from model_a's
    side: two verdicts that differ are a tie, counted as inconsistent; an excluded game excludes the item."""
    games = []
    for game, result, was_cached in zip(item.games, results, cached):
        verdict = {"first": "a", "second": "b", "tie": "tie"}.get(result.get("verdict"))
        p_a = _finite(result.get("p_first"))
        if game.order == "ba":
            verdict = {"a": "b", "b": "a"}.get(verdict, verdict)
            p_a = None if p_a is None else 1.0 - p_a
        games.append({"order": game.order, "verdict": verdict, "p_a": p_a, "cached": was_cached,
                      "text": result.get("text", "")})
    excluded = next((r.get("excluded") or "unparseable" for r, g in zip(results, games) if g["verdict"] is None),
                    None)
    verdicts = [g["verdict"] for g in games]
    winner = None if excluded else verdicts[0] if verdicts[0] == verdicts[1] else "tie"
    p = [g["p_a"] for g in games]
    return {**item.record, "games": games, "winner": winner,
            "inconsistent": excluded is None and verdicts[0] != verdicts[1],
            "score_a": None if winner is None else SCORES[winner],
            "preference_a": None if None in p else sum(p) / len(p), "excluded": excluded}


def rating_record(item: Item, result: dict, cached: bool) -> dict:
    rating = _finite(result.get("rating"))
    excluded = None if rating is not None else result.get("excluded") or "unparseable"
    return {**item.record, "rating": rating, "cached": cached, "text": result.get("text", ""),
            "excluded": excluded}


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
