"""`pacos data score`'s flow: rate every record with the judge (pacos's score prompt; the judge's client, cache
and budget shared with `pacos eval judge`), write the records with their `quality` field atomically, and say
what happened.

Every finished judgement is committed to the SQLite cache at once, keyed by judge model, prompt version and
the record's content: a rerun sends no request for a record already judged, and a kill -9 loses only the
requests in flight. A reply that is not a score is asked for once more, then the record is left unscored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pacos.data.formats import detect_format, load_records, save_records
from pacos.data.quality import (QUALITY_FIELD, SCORE_PROMPT, Rated, describe_histogram, parse_score, rated_of,
                                score_messages)
from pacos.options import check_fields, option
from pacos.remote.cache import JudgementCache
from pacos.remote.client import RemoteModel
from pacos.remote.config import JudgeConfig
from pacos.remote.jobs import ask_twice, run_workers
from pacos.remote.spend import Prices, Spend

KEPT_TEXT = 20_000  # of a judge's reply, what the cache keeps for reading


@dataclass
class ScoreConfig:
    data: str = option(help="the records to score: any format `pacos data validate` reads", path=True)
    out: str = option(help="the records with their scores, in the input's format (written atomically; "
                           "a self-instruct file is written as jsonl)", path=True)
    judge: JudgeConfig = option(help="the judge's settings")
    max_chars: int = option(50_000, "a record longer than this (instruction, input and response, in characters) "
                                    "is not sent and stays unscored (too_long)", ge=1)
    cache: str | None = option(None, "SQLite cache of every judgement (default: OUT's name + .cache.sqlite)")
    progress: bool | None = option(None, "no progress bar (default: a bar only on a terminal)")
    prices: Prices = option(default_factory=Prices, help="prices and the cost limit")  # noqa: RUF009

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def cache_path(self) -> Path:
        out = Path(self.out)
        return Path(self.cache) if self.cache else out.with_name(out.stem + ".cache.sqlite")


@dataclass
class ScoreSummary:
    out: str
    records: int = 0
    distinct: int = 0  # distinct records judged (identical records share one judgement)
    sent: int = 0  # judged by requests in this run
    cached: int = 0  # found in the cache
    unscored: Counter = field(default_factory=Counter)  # records without a score, by reason
    not_judged: int = 0  # records left when --max-cost stopped the run
    stopped: str | None = None  # "max-cost"
    scores: list[float] = field(default_factory=list)
    spend: Spend | None = None
    seconds: float = 0.0

    def describe(self) -> str:
        unscored = ", ".join(f"{why} {n}" for why, n in self.unscored.most_common()) or "none"
        line = (f"scored {len(self.scores)} of {self.records} record(s) into {self.out} in {self.seconds:.1f} s "
                f"| judgements: {self.sent} sent, {self.cached} cached | unscored: {unscored}")
        if self.spend is not None:
            line += f" | requests {self.spend.requests} | {self.spend.describe()}"
        lines = [line, describe_histogram(self.scores)]
        if self.stopped == "max-cost":
            lines.append(f"stopped at --max-cost: {self.not_judged} record(s) not judged (written without a "
                         "score); rerun with a higher --max-cost to judge them (the cache keeps what is done)")
        return "\n".join(lines)


def score_key(judge_model: str, prompt_version: str, rated: Rated) -> str:
    """sha256 over what makes the judge's request (the prompt text follows from its version)."""
    parts = [judge_model, prompt_version, rated.instruction, rated.input, rated.response]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def score(config: ScoreConfig, client: RemoteModel | None = None) -> ScoreSummary:
    """Score as `config` says; `client` replaces the one built from config.judge (tests, other transports)."""
    return asyncio.run(score_async(config, client))


async def score_async(config: ScoreConfig, client: RemoteModel | None = None) -> ScoreSummary:
    started = time.monotonic()
    fmt = detect_format(config.data)
    records = load_records(config.data, fmt)
    summary = ScoreSummary(str(config.out), records=len(records), spend=Spend(config.prices))
    judge = config.judge
    rated = [rated_of(r) for r in records]
    skipped = [_skipped(x, config.max_chars) for x in rated]  # why a record is not sent, or None
    keys = [None if why else score_key(judge.model, SCORE_PROMPT.version, x) for x, why in zip(rated, skipped)]
    todo = {k: x for k, x in zip(keys, rated) if k is not None}
    summary.distinct = len(todo)
    cache = JudgementCache(config.cache_path)
    results: dict[str, dict] = {}
    try:
        for key in todo:
            if (found := cache.get(key)) is not None:
                results[key] = {**found, "cached": True}
        summary.cached = len(results)
        queue = [(k, x) for k, x in todo.items() if k not in results]
        own_client = client is None
        client = client or RemoteModel(judge)
        bar = _progress(len(todo), summary.cached, config.progress)
        try:
            summary.stopped = await _score_all(queue, judge, client, summary.spend, cache, results, bar)
        finally:
            bar.close()
            if own_client:
                await client.close()
            _write(records, keys, skipped, results, fmt, config, summary)  # also when the judge failed
    finally:
        cache.close()
    summary.sent = sum(1 for k in results if not results[k].get("cached"))
    summary.seconds = time.monotonic() - started
    return summary


def _skipped(rated: Rated | None, max_chars: int) -> str | None:
    if rated is None:
        return "multi_turn"
    if len(rated.instruction) + len(rated.input) + len(rated.response) > max_chars:
        return "too_long"  # a judge would refuse it (HTTP 400) and stop the run, on every rerun
    return None


async def _score_all(queue: list, judge: JudgeConfig, client: RemoteModel, spend: Spend, cache: JudgementCache,
                     results: dict, bar) -> str | None:
    """Judge `queue` ((key, Rated) pairs) with --concurrency workers; 'max-cost' when the budget stopped them."""

    async def one(item) -> bool:
        key, rated = item
        result = await score_one(rated, judge, client, spend)
        if result is None:
            return False
        if result.get("error") != "bad_response":  # a gateway's page is asked again on the next run
            cache.put(key, result)  # one commit per judgement: a kill loses only those in flight
        results[key] = {**result, "cached": False}
        bar.set_postfix_str(spend.describe(), refresh=False)
        bar.update(1)
        return True

    return "max-cost" if await run_workers(queue, judge.concurrency, one) else None


async def score_one(rated: Rated, judge: JudgeConfig, client: RemoteModel, spend: Spend) -> dict | None:
    """{score, reason} or {score: None, error}, with the tokens spent; a reply that is not a score is asked
    for once more. None when --max-cost leaves no room for the request."""
    def read(answer):
        parsed = parse_score(answer.text)
        fields = {"score": parsed[0], "reason": parsed[1], "error": None, "detail": None} if parsed else {}
        return fields, parsed is not None

    result = await ask_twice(client, spend, score_messages(rated), read,
                             lambda why, detail: {"error": why, "detail": detail}, keep=KEPT_TEXT,
                             temperature=judge.temperature, max_tokens=judge.max_tokens)
    return None if result is None else {"score": None, **result}


def _write(records: list, keys: list, skipped: list, results: dict, fmt: str, config: ScoreConfig,
           summary: ScoreSummary) -> None:
    """Every record, in order, with its `quality` field: a score, an error, or none (not sent, not judged yet)."""
    for record, key, why in zip(records, keys, skipped):
        record.extra.pop(QUALITY_FIELD, None)  # an earlier run's score is not this judge's
        if why:
            summary.unscored[why] += 1
            continue
        result = results.get(key)
        if result is None:
            summary.not_judged += 1
            summary.unscored["not_judged"] += 1
            continue
        quality = {"score": result["score"]}
        if result["score"] is None:
            summary.unscored[result["error"]] += 1
            quality["error"] = result["error"]
        else:
            summary.scores.append(result["score"])
            quality["reason"] = result["reason"]
        record.extra[QUALITY_FIELD] = {**quality, "judge": config.judge.model, "prompt": SCORE_PROMPT.version}
    save_records(records, config.out, fmt="jsonl" if fmt == "self-instruct" else fmt)


def _progress(total: int, initial: int, enabled: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="record", file=sys.stderr, dynamic_ncols=True, desc="scored",
                disable=None if enabled is None else not enabled)
