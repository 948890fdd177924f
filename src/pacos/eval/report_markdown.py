"""The evaluation report (pacos.eval.report's dict) as Markdown: tables of what the dict holds, nothing more."""

from __future__ import annotations


def _pct(e: dict) -> str:
    return f"{100 * e['value']:.1f}% [{100 * e['low']:.1f}, {100 * e['high']:.1f}]"


def _num(e: dict, digits: int = 2) -> str:
    return f"{e['value']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def format_report(report: dict, plots: list[str] = ()) -> str:
    src, method = report["source"], report["method"]
    what = "human votes" if src["kind"] == "human" else "judgements"
    lines = ["# Evaluation report", ""]
    if src["kind"] != "none":
        lines.append(f"From {what} in {', '.join(src['files'])}: {src['pairwise']} pairwise comparisons, "
                     f"{src['grades']} single grades, {sum(src['excluded'].values())} excluded.")
        if src["judges"]:
            lines.append(f"Judge: {', '.join(src['judges'])}" + (
                f"; prompt version {', '.join(src['prompt_versions'])}." if src["prompt_versions"] else "."))
        lines += ["", f"Intervals: {method['interval']}; {method['resamples']} resamples, seed {method['seed']}.", ""]
    if report["pairwise"]:
        lines += _pairwise(report)
    if report["bradley_terry"]:
        bt = report["bradley_terry"]
        lines += ["## Bradley-Terry leaderboard", "", f"{method['bradley_terry']}.", ""]
        lines += _table(["rank", "model", "rating [95% CI]", "comparisons"],
                        [[i, r["model"], "1000 (anchor)" if r["model"] == bt["anchor"] else _num(r["rating"], 0),
                          r["comparisons"]] for i, r in enumerate(bt["ratings"], 1)])
    if report["grades"]:
        lines += ["## Single grades", "", "Mean rating (1-10) per model and turn, with its 95% CI.", ""]
        lines += _table(["model", "mode", "turn", "grades", "mean [95% CI]"],
                        [[g["model"], g["mode"], "all" if g["turn"] is None else g["turn"], g["rating"]["n"],
                          _num(g["rating"])] for g in report["grades"]])
    if report["lengths"]:
        lines += ["## Answer lengths", "", "Characters per answer, each answer counted once.", ""]
        lines += _table(["model", "answers", "mean", "median"],
                        [[x["model"], x["answers"], f"{x['mean']:.0f}", f"{x['median']:.0f}"]
                         for x in report["lengths"]])
    lines += _extras(report)
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if report["caveats"]:
        lines += ["## Caveats", ""] + [f"- {c}" for c in report["caveats"]] + [""]
    return "\n".join(lines)


def _pairwise(report: dict) -> list[str]:
    human = report["source"]["kind"] == "human"
    lines = [f"## Against {report['baseline']}", "",
             f"Win rate: {report['method']['win_rate']}. Length-controlled (LC): {report['method']['length_controlled']}.",
             ""]
    header = ["model", "n", "wins", "ties", "losses"] + (["both bad"] if human else []) + \
        ["win rate [95% CI]", "LC win rate [95% CI]", "mean length (baseline)", "verdict"]
    rows = []
    for p in report["pairwise"]:
        lc = p["length_controlled"]
        rows.append([p["model"], p["n"], p["wins"], p["ties"], p["losses"]] + ([p["both_bad"]] if human else []) +
                    [_pct(p["win_rate"]), _pct(lc["win_rate"]) if lc else "n < 10",
                     f"{p['mean_length']:.0f} ({p['baseline_mean_length']:.0f})", p["verdict"]])
    lines += _table(header, rows)
    for p in report["pairwise"]:
        for name, one in (("categories", "category"), ("turns", "turn")):
            groups = p[name]
            if len(groups) > 1:
                lines += [f"### {p['model']} by {one}", ""]
                lines += _table([one, "n", "wins", "ties", "losses", "win rate [95% CI]"],
                                [["(none)" if g[one] is None else g[one], g["n"], g["wins"], g["ties"], g["losses"],
                                  _pct(g["win_rate"])] for g in groups])
    pos = report["position"]
    if pos:
        lines += ["### Position consistency", "",
                  f"{pos['flipped']} of {pos['checked']} comparisons judged in both orders ({100 * pos['flip_share']:.1f}%) "
                  f"flipped with the order (each counted as a tie); in {pos['first_position_won_both']} of them the "
                  f"answer shown first won both games, in {pos['second_position_won_both']} the one shown second.", ""]
    return lines


def _extras(report: dict) -> list[str]:
    lines = []
    if report.get("tasks"):
        lines += ["## Task accuracy", "", "Exact match (after stripping surrounding whitespace; case and punctuation count) from "
                  "`pacos eval tasks --json`, with a 95% Wilson score interval.", ""]
        names = sorted({t["task"] for row in report["tasks"] for t in row["per_task"]})
        per = [{t["task"]: t for t in row["per_task"]} for row in report["tasks"]]
        lines += _table(["model", "records", "correct", "accuracy [95% CI]"] + names,
                        [[row["model"], row["n"], row["correct"], _pct(row["accuracy"])]
                         + [f"{100 * p[n]['accuracy']['value']:.1f}% (n={p[n]['n']})" if n in p else "-" for n in names]
                         for row, p in zip(report["tasks"], per)])
    if report.get("perplexity"):
        ref = any(p["reference"] for p in report["perplexity"])
        lines += ["## Perplexity", "", "From `pacos perplexity --json`: exp(mean negative log-likelihood) over the "
                  "scored tokens" + ("; against a reference: KL(reference || model) per token and top-1 agreement"
                                     if ref else "") + ".", ""]
        lines += _table(["model", "data", "tokens", "perplexity"] + (["reference", "KL", "top-1"] if ref else []),
                        [[p["model"], p["data"], p["tokens"], f"{p['perplexity']:.4f}"]
                         + ([p["reference"] or "-", f"{p['kl_divergence']:.4g}" if p["reference"] else "-",
                             f"{100 * p['top1_agreement']:.2f}%" if p["reference"] else "-"] if ref else [])
                         for p in report["perplexity"]])
    return lines
