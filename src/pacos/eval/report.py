"""`pacos eval report`: judgements (or human votes) into win rates, grades, length control and ratings, as one dict.

Every number in the report comes from pacos.eval.stats on the rows of pacos.eval.report_rows; the Markdown
(report_markdown) and the plots (report_plots) only show this dict.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from pacos.errors import DataError
from pacos.eval.report_rows import Judgements, Pairwise
from pacos.options import check_fields, option

FEW = 30  # below this many comparisons (or grades) a number gets a caveat: its interval is wide and rough
MIN_FIT = 10  # fewest comparisons the length-control regression is fitted on


@dataclass
class ReportConfig:
    """`pacos eval report`: what is compared with what, and how the intervals are drawn."""

    human: str | None = option(None, "report human A/B votes from this feedback database (pacos serve "
                                     "--feedback-db) instead of judgements files", metavar="DB", path=True)
    baseline: str | None = option(None, "the model the others are compared with (default: the most frequent "
                                        "model_b of the judgements)", metavar="NAME")
    out: str | None = option(None, "write the Markdown report here (default: print it)", path=True)
    plots: str | None = option(None, "write PNG plots (win rates with CIs, length against preference) into "
                                     "this folder", metavar="DIR", path=True)
    tasks: tuple[str, ...] = option((), "also report exact-match accuracy (95% Wilson CI) from `pacos eval tasks "
                                        "--json` output: [NAME=]FILE, the flag repeated for each model",
                                    metavar="[NAME=]FILE", path=True)
    perplexity: tuple[str, ...] = option((), "also report perplexity from `pacos perplexity --json` output: "
                                             "[NAME=]FILE, the flag repeated for each model",
                                         metavar="[NAME=]FILE", path=True)
    json: bool = option(False, "print every number as one JSON object instead of Markdown")
    seed: int = option(0, "seed of the bootstrap resamples", ge=0)
    resamples: int = option(2000, "bootstrap resamples per interval", ge=100, le=100000)

    def __post_init__(self):
        check_fields(self)


METHOD = {
    "interval": "95% percentile bootstrap over questions (all turns and comparisons of a question are drawn "
                "together)",
    "win_rate": "(wins + ties / 2) / comparisons, from the candidate's side",
    "length_controlled": "logistic regression of the preference for the candidate (the judge's probability when "
                         "it gave one, else 1 / 0.5 / 0) on tanh(length difference / its standard deviation) with "
                         "an intercept, predicted at zero difference (AlpacaEval 2's GLM without its "
                         "instruction-difficulty term)",
    "bradley_terry": "maximum-likelihood Bradley-Terry from every pairwise comparison (a tie is half a win each "
                     "way), on Chatbot Arena's scale: 400 points = 10:1 odds, the baseline at 1000",
    "position": "share of comparisons judged in both orders whose verdict flipped with the order",
}


def build_report(rows: Judgements | None, config: ReportConfig) -> dict:
    """The whole report as plain data (fractions in 0..1, lengths in characters).

    `rows` None: no judgements or votes, only the --tasks/--perplexity results."""
    from pacos.eval.report_extras import extras_caveats, read_perplexities, read_tasks

    tasks, perplexities = read_tasks(config.tasks), read_perplexities(config.perplexity)
    if rows is None:
        if not tasks and not perplexities:
            raise DataError("nothing to report: give judgements files, --human DB, --tasks or --perplexity")
        rows = Judgements(kind="none")
    elif not rows.pairwise and not rows.grades:
        left = f" ({_excluded_text(rows.excluded)})" if rows.excluded else ""
        raise DataError(f"{', '.join(rows.sources)}: no usable judgements to report on{left}")
    caveats: list[str] = []
    seed, resamples = config.seed, config.resamples
    report = {
        "source": {"kind": rows.kind, "files": rows.sources, "judges": sorted(rows.judges),
                   "prompt_versions": sorted(rows.prompt_versions), "pairwise": len(rows.pairwise),
                   "grades": len(rows.grades), "excluded": dict(sorted(rows.excluded.items()))},
        "method": {**METHOD, "resamples": resamples, "seed": seed},
        "baseline": None, "pairwise": [], "bradley_terry": None, "position": None,
        "grades": _grades(rows, seed, resamples, caveats), "lengths": _lengths(rows), "tasks": tasks,
        "perplexity": perplexities, "caveats": caveats,
    }
    caveats.extend(extras_caveats(tasks, perplexities))
    if len(rows.judges) > 1 or len(rows.prompt_versions) > 1:
        caveats.append("the judgements mix judges or prompt versions "
                       f"({', '.join(sorted(rows.judges | rows.prompt_versions))}); their verdicts are pooled")
    if rows.excluded:
        n = sum(rows.excluded.values())
        caveats.append(f"{n} record{'s' if n > 1 else ''} excluded: {_excluded_text(rows.excluded)}")
    if rows.pairwise:
        baseline = _baseline(rows.pairwise, config.baseline)
        report["baseline"] = baseline
        models = sorted({r.model_a for r in rows.pairwise} | {r.model_b for r in rows.pairwise} - {baseline})
        for model in models:
            oriented = [orient(r, model) for r in rows.pairwise if {r.model_a, r.model_b} == {model, baseline}]
            if oriented:
                report["pairwise"].append(_against_baseline(model, baseline, oriented, rows.kind, seed, resamples,
                                                            caveats))
        report["position"] = _position(rows.pairwise) if rows.kind == "judge" else None
        if len(models) + 1 >= 3:
            report["bradley_terry"] = _bradley_terry(rows.pairwise, baseline, seed, resamples, caveats)
    elif config.baseline:
        caveats.append(f"--baseline {config.baseline} is unused: there are no pairwise judgements")
    return report


def _excluded_text(excluded: Counter) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(excluded.items()))


def _baseline(pairwise: list[Pairwise], chosen: str | None) -> str:
    models = sorted({r.model_a for r in pairwise} | {r.model_b for r in pairwise})
    if chosen is not None:
        if chosen not in models:
            raise DataError(f"--baseline {chosen}: no pairwise judgement has that model; models: {', '.join(models)}")
        return chosen
    counts = Counter(r.model_b for r in pairwise).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        raise DataError(f"no single baseline ({counts[0][0]} and {counts[1][0]} are model_b equally often); name "
                        f"it with --baseline (models: {', '.join(models)})")
    return counts[0][0]


@dataclass(frozen=True)
class _Oriented:
    """A comparison seen from the candidate's side."""

    row: Pairwise
    score: float
    preference: float
    length: int
    baseline_length: int


def orient(r: Pairwise, model: str) -> _Oriented:
    preference = r.score_a if r.preference_a is None else r.preference_a
    if r.model_a == model:
        return _Oriented(r, r.score_a, preference, r.len_a, r.len_b)
    return _Oriented(r, 1 - r.score_a, 1 - preference, r.len_b, r.len_a)


def _tally(oriented: list[_Oriented], seed: int, resamples: int) -> dict:
    from pacos.eval.stats import bootstrap_mean

    scores = [o.score for o in oriented]
    rate = bootstrap_mean(scores, [o.row.question_id for o in oriented], resamples=resamples, seed=seed)
    return {"n": len(scores), "wins": scores.count(1.0), "ties": scores.count(0.5), "losses": scores.count(0.0),
            "win_rate": rate.as_dict()}


def verdict(win_rate: dict, baseline: str) -> str:
    """What the interval says: better, worse, or not told apart from the baseline."""
    if win_rate["low"] > 0.5:
        return f"better than {baseline} (the 95% CI is above 50%)"
    if win_rate["high"] < 0.5:
        return f"worse than {baseline} (the 95% CI is below 50%)"
    return f"a tie with {baseline} within the 95% CI (it contains 50%)"


def _against_baseline(model: str, baseline: str, oriented: list[_Oriented], kind: str, seed: int, resamples: int,
                      caveats: list[str]) -> dict:
    from pacos.eval.stats import length_controlled_win_rate

    out = {"model": model, "baseline": baseline, **_tally(oriented, seed, resamples)}
    out["verdict"] = verdict(out["win_rate"], baseline)
    if kind == "human":
        out["both_bad"] = sum(o.row.both_bad for o in oriented)
    if out["n"] < FEW:
        caveats.append(f"{model} vs {baseline}: only {out['n']} comparisons; the interval is wide and the "
                       "bootstrap itself is rough at this size")
    for name, one in (("categories", "category"), ("turns", "turn")):
        groups: dict = defaultdict(list)
        for o in oriented:
            groups[getattr(o.row, one)].append(o)
        if name == "categories" and set(groups) == {None}:
            out[name] = []
            continue
        out[name] = [{one: k, **_tally(g, seed, resamples)}
                     for k, g in sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0])))]
    if out["n"] >= MIN_FIT:
        lc = length_controlled_win_rate([o.preference for o in oriented], [o.length for o in oriented],
                                        [o.baseline_length for o in oriented], [o.row.question_id for o in oriented],
                                        resamples=resamples, seed=seed)
        out["length_controlled"] = {"win_rate": lc.win_rate.as_dict(), "intercept": lc.intercept,
                                    "length_coef": lc.length_coef, "sigma": lc.sigma,
                                    "soft_targets": sum(o.row.preference_a is not None for o in oriented)}
    else:
        out["length_controlled"] = None
        caveats.append(f"{model} vs {baseline}: no length-controlled win rate from fewer than {MIN_FIT} comparisons")
    out["mean_length"] = statistics.fmean(o.length for o in oriented)
    out["baseline_mean_length"] = statistics.fmean(o.baseline_length for o in oriented)
    return out


def _position(pairwise: list[Pairwise]) -> dict | None:
    """Order effects, over the comparisons judged in both orders. Verdicts name models (a = model_a), so the
    model shown first won a game when (order, verdict) is (ab, a) or (ba, b)."""
    both = [r for r in pairwise if len([v for _, v in r.games if v is not None]) >= 2]
    if not both:
        return None

    def first_won_both(r: Pairwise, first: bool) -> bool:
        wins = [(v == "a") == (o == "ab") for o, v in r.games if v in ("a", "b")]  # True: the first shown won
        return len(wins) >= 2 and all(w == first for w in wins)
    flipped = [r for r in both if r.inconsistent]
    return {"checked": len(both), "flipped": len(flipped), "flip_share": len(flipped) / len(both),
            "first_position_won_both": sum(first_won_both(r, True) for r in flipped),
            "second_position_won_both": sum(first_won_both(r, False) for r in flipped)}


def _bradley_terry(pairwise: list[Pairwise], baseline: str, seed: int, resamples: int,
                   caveats: list[str]) -> dict | None:
    from pacos.eval.stats import bradley_terry, connected

    model_i, model_j = [r.model_a for r in pairwise], [r.model_b for r in pairwise]
    if not connected(model_i, model_j):
        caveats.append("no Bradley-Terry leaderboard: the models do not all connect through comparisons")
        return None
    points: Counter = Counter()
    played: Counter = Counter()
    for r in pairwise:
        points[r.model_a] += r.score_a
        points[r.model_b] += 1 - r.score_a
        played[r.model_a] += 1
        played[r.model_b] += 1
    for m in sorted(played):
        if points[m] in (0, played[m]):
            caveats.append(f"Bradley-Terry: {m} {'won' if points[m] else 'lost'} every comparison, so its rating "
                           "is only bounded by the fit's tiny regularisation")
    ratings = bradley_terry(model_i, model_j, [r.score_a for r in pairwise], [r.question_id for r in pairwise],
                            anchor=baseline, resamples=resamples, seed=seed)
    return {"anchor": baseline, "ratings": [{"model": r.model, "rating": r.rating.as_dict(),
                                             "comparisons": r.comparisons} for r in ratings]}


def _grades(rows: Judgements, seed: int, resamples: int, caveats: list[str]) -> list[dict]:
    from pacos.eval.stats import bootstrap_mean

    groups: dict = defaultdict(list)
    for g in rows.grades:
        groups[(g.mode, g.model, g.turn)].append(g)
        groups[(g.mode, g.model, None)].append(g)
    if len({k[2] for k in groups if k[2] is not None}) == 1:  # one turn: the "all turns" row says nothing more
        groups = {k: v for k, v in groups.items() if k[2] is None}
    out = []
    for (mode, model, turn), gs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        mean = bootstrap_mean([g.rating for g in gs], [g.question_id for g in gs], resamples=resamples, seed=seed)
        out.append({"mode": mode, "model": model, "turn": turn, "rating": mean.as_dict()})
        if turn is None and len(gs) < FEW:
            caveats.append(f"{model} ({mode} grades): only {len(gs)} grades; the interval is wide")
    return out


def _lengths(rows: Judgements) -> list[dict]:
    """Characters per answer and model, each answer once (a model compared with several shares its answers)."""
    answers: dict = defaultdict(dict)
    for r in rows.pairwise:
        answers[r.model_a][(r.question_id, r.turn)] = r.len_a
        answers[r.model_b][(r.question_id, r.turn)] = r.len_b
    for g in rows.grades:
        if g.length is not None:
            answers[g.model][(g.question_id, g.turn)] = g.length
    return [{"model": m, "answers": len(a), "mean": statistics.fmean(a.values()),
             "median": statistics.median(a.values())} for m, a in sorted(answers.items())]
