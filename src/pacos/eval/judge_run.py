"""`pacos eval judge`'s flow: load the answers, plan the items, judge every game not in the cache (concurrently,
within --max-cost), write --out atomically, and say what happened in a summary."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from pacos.data.atomic_write import write_objects
from pacos.errors import DataError
from pacos.eval.judge_config import TOP_LOGPROBS, JudgeRunConfig
from pacos.eval.judge_plan import Game, Plan, by_model, pairwise_plan, pairwise_record, rating_plan, rating_record
from pacos.eval.judge_verdicts import parse_pairwise, parse_rating, preference_first, verdict_probabilities
from pacos.eval.questions import ANSWERS_FORMAT, load_answers, load_questions
from pacos.remote.cache import JudgementCache
from pacos.remote.client import RemoteModel
from pacos.remote.jobs import ask_twice, run_workers
from pacos.remote.spend import Spend


@dataclass
class JudgeSummary:
    out: str
    items: int = 0  # records written
    games: int = 0  # distinct games the items need
    sent: int = 0  # games judged by requests in this run
    cached: int = 0  # games found in the cache
    excluded: Counter = field(default_factory=Counter)  # items, by reason
    inconsistent: int = 0
    unjudged: int = 0  # games left when the run stopped early
    stopped: str | None = None  # "max-cost"
    notes: list[str] = field(default_factory=list)
    spend: Spend | None = None
    seconds: float = 0.0

    def describe(self) -> str:
        lines = list(self.notes)
        excluded = ", ".join(f"{reason} {n}" for reason, n in self.excluded.most_common()) or "none"
        line = (f"judged {self.items} item(s) into {self.out} in {self.seconds:.1f} s | games: {self.sent} sent, "
                f"{self.cached} cached | excluded: {excluded} | inconsistent {self.inconsistent}")
        if self.spend is not None:
            line += f" | requests {self.spend.requests} | {self.spend.describe()}"
        lines.append(line)
        if self.stopped == "max-cost":
            lines.append(f"stopped at --max-cost: {self.unjudged} game(s) not judged and their items left out; "
                         "rerun with a higher --max-cost to judge them (the cache keeps what is done)")
        return "\n".join(lines)


def judge(config: JudgeRunConfig, client: RemoteModel | None = None) -> JudgeSummary:
    """Judge as `config` says; `client` replaces the one built from config.judge (tests, other transports)."""
    return asyncio.run(judge_async(config, client))


async def judge_async(config: JudgeRunConfig, client: RemoteModel | None = None) -> JudgeSummary:
    started = time.monotonic()
    plan = make_plan(config)
    summary = JudgeSummary(str(config.out), notes=plan.notes, spend=Spend(config.prices))
    games = {g.key: g for item in plan.items for g in item.games}
    summary.games = len(games)
    cache = JudgementCache(config.cache_path)
    results: dict[str, dict] = {}
    fresh: set[str] = set()
    try:
        for key in games:
            if (found := cache.get(key)) is not None:
                results[key] = found
        summary.cached = len(results)
        todo = [g for key, g in games.items() if key not in results]
        own_client = client is None
        client = client or RemoteModel(config.judge)
        bar = _progress(len(games), summary.cached, config.progress)
        try:
            summary.stopped = await _judge_games(todo, config, client, summary.spend, cache, results, fresh, bar)
        finally:
            bar.close()
            if own_client:
                await client.close()
            _write(plan, results, fresh, config, summary)  # also when the judge failed: what is done is saved
    finally:
        cache.close()
    summary.sent = len(fresh)
    summary.unjudged = len(games) - len(results)
    summary.seconds = time.monotonic() - started
    return summary


def make_plan(config: JudgeRunConfig) -> Plan:
    answer_sets = [s for path in config.answers for s in load_answers(path)[1]]
    models = by_model(answer_sets)
    judge = config.judge
    if config.mode == "pairwise":
        baseline = None
        if config.baseline is not None:
            baseline = by_model(load_answers(config.baseline)[1])
            if len(baseline) != 1:
                raise DataError(f"{config.baseline}: a baseline file holds one model's answers, this one "
                                f"{len(baseline)} ({', '.join(baseline)})")
        elif len(models) < 2:
            raise DataError(f"pairwise judging needs two models: the --answers files hold {len(models)} "
                            f"({', '.join(models)}); add one, or give --baseline FILE")
        return pairwise_plan(models, baseline, judge.model, judge.logprobs, config.categories)
    references = load_references(config.references) if config.mode == "reference" else None
    return rating_plan(models, judge.model, judge.logprobs, references, config.categories)


def load_references(path: str | None) -> dict[str, tuple[str, ...]]:
    """question key -> reference answers: a question file's `reference`, or the answers of a reference model."""
    if path is None:
        return {}  # the questions' own references
    fmt, questions, _ = load_questions(path)
    references = {q.key: q.reference for q in questions if q.reference}
    if fmt in (ANSWERS_FORMAT, "alpaca-eval", "self-instruct-predictions"):
        sets = load_answers(path)[1]
        if len({s.model for s in sets}) > 1:
            raise DataError(f"{path}: reference answers come from one model; this file holds several")
        for s in sets:
            references.setdefault(s.question.key, tuple(s.answers))
    return references


async def _judge_games(todo: list[Game], config: JudgeRunConfig, client: RemoteModel, spend: Spend,
                       cache: JudgementCache, results: dict, fresh: set, bar) -> str | None:
    """Judge `todo` with --concurrency workers; 'max-cost' when the budget stopped them."""

    async def one(game: Game) -> bool:
        result = await judge_game(game, config, client, spend)
        if result is None:
            return False
        cache.put(game.key, result)  # one commit per finished game: a kill loses only those in flight
        results[game.key] = result
        fresh.add(game.key)
        bar.set_postfix_str(spend.describe(), refresh=False)
        bar.update(1)
        return True

    return "max-cost" if await run_workers(todo, config.judge.concurrency, one) else None


async def judge_game(game: Game, config: JudgeRunConfig, client: RemoteModel, spend: Spend) -> dict | None:
    """The finished game (what the cache keeps), a verdict that cannot be read asked for once more; None when
    --max-cost leaves no room for the request."""
    judge, pairwise = config.judge, bool(game.order)
    done = {"excluded": None, "error": None}

    def read(answer):
        if pairwise:
            verdict = parse_pairwise(answer.text)
            p_first = preference_first(verdict_probabilities(answer.text, answer.logprobs)) if verdict else None
            return {"verdict": verdict, "p_first": p_first, **(done if verdict else {})}, verdict is not None
        rating = parse_rating(answer.text)
        return {"rating": rating, **(done if rating is not None else {})}, rating is not None

    def failed(why, detail):  # an unreadable verdict leaves an earlier attempt's error as it was
        return {"excluded": why, "error": detail} if detail else {"excluded": why}

    return await ask_twice(client, spend, game.messages, read, failed, keep=20_000,  # a runaway explanation is cut
                           temperature=judge.temperature, max_tokens=judge.max_tokens,
                           top_logprobs=TOP_LOGPROBS if judge.logprobs else 0)

def _write(plan: Plan, results: dict, fresh: set, config: JudgeRunConfig, summary: JudgeSummary) -> None:
    records = []
    for item in plan.items:
        if not all(g.key in results for g in item.games):
            continue
        done = [results[g.key] for g in item.games]
        cached = [g.key not in fresh for g in item.games]
        if item.games[0].order:
            record = pairwise_record(item, done, cached)
            summary.inconsistent += record["inconsistent"]
        else:
            record = rating_record(item, done[0], cached[0])
        if record["excluded"]:
            summary.excluded[record["excluded"]] += 1
        records.append(record)
    summary.items = len(records)
    write_objects(records, config.out, as_lines=True)


def _progress(total: int, initial: int, enabled: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="game", file=sys.stderr, dynamic_ncols=True, desc="judged",
                disable=None if enabled is None else not enabled)

