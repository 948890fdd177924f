"""`pacos self-instruct report`: what a run kept and dropped, as PNG plots and a markdown summary."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from pacos.data.dedup import RougeDeduper, read_objects
from pacos.errors import DataError, PacosError
from pacos.self_instruct.accounting import Totals
from pacos.self_instruct.languages import ENGLISH, Language, get_language
from pacos.self_instruct.store import raw_log_path, read_appended_jsonl


def summarize(records: list[dict], log: list[dict]) -> dict:
    """Counts, discard reasons, lengths, nearest-neighbour ROUGE-L and leading verbs of a run (pure)."""
    language = _run_language(log)
    totals = Totals()
    for entry in log:
        totals.add_entry(entry)
    if records and all(isinstance(r.get("similarity"), (int, float)) for r in records):
        similarity = [float(r["similarity"]) for r in records]  # to the nearest seed or earlier kept one
    else:  # a file from elsewhere: the nearest earlier record
        deduper = RougeDeduper(threshold=1.0)
        similarity = [d.score for d in deduper.add_batch([r.get("instruction", "") for r in records])]
    verbs = Counter(_leading_word(r.get("instruction", ""), language) for r in records)
    verbs.pop("", None)
    return {
        "records": len(records),
        "language": language.code,
        "prompt": next((e["prompt"] for e in log if e.get("prompt")), None),
        "unit": language.unit,
        "with_input": sum(bool(str(r.get("input", "")).strip()) for r in records),
        "lengths": {name: [language.length(str(r.get(name, ""))) for r in records]
                    for name in ("instruction", "input", "output")},
        "similarity": similarity,
        "verbs": verbs.most_common(20),
        "batches": totals.batches,
        "requests": totals.requests,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "discards": totals.discards.most_common(),
    }


def _run_language(log: list[dict]) -> Language:
    """The language a run's raw log records (English for older logs and plain files)."""
    code = next((e["language"] for e in log if e.get("language")), "en")
    try:
        return get_language(code)
    except PacosError:
        return ENGLISH


def _leading_word(text: str, language: Language = ENGLISH) -> str:
    """The first word; in Chinese, which has no spaces, the first two characters after a polite 请."""
    if language.unit == "characters":
        match = re.match(r"[\W\d_]*(?:请)?(\w{1,2})", text)
        return match.group(1) if match else ""
    match = re.match(r"\W*([A-Za-z][A-Za-z'-]*)", text)
    return match.group(1).lower() if match else ""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def render_markdown(path: str, summary: dict, plots: list[str]) -> str:
    n = summary["records"]
    candidates = n + sum(count for _, count in summary["discards"])
    lines = [
        f"# Self-Instruct run report: {path}", "",
        f"- kept records: **{n}**" + (f" of {candidates} candidates ({n / candidates:.0%})" if candidates else ""),
        f"- language: {summary['language']}" + (f" (prompt {summary['prompt']})" if summary["prompt"] else ""),
        f"- with input: {summary['with_input']} ({summary['with_input'] / n:.0%})" if n else "- with input: 0",
        f"- batches: {summary['batches']}, HTTP requests: {summary['requests']}",
        f"- tokens: {summary['prompt_tokens']} prompt, {summary['completion_tokens']} completion", "",
        "## Discards by reason", "", "| reason | count |", "|---|---:|",
        *(f"| {reason} | {count} |" for reason, count in summary["discards"]), "",
        f"## Lengths ({summary['unit']})", "", "| field | median | p90 | max |", "|---|---:|---:|---:|",
        *(f"| {name} | {_percentile(v, 0.5):.0f} | {_percentile(v, 0.9):.0f} | {max(v, default=0)} |"
          for name, v in summary["lengths"].items()), "",
        "## ROUGE-L to the nearest neighbour", "",
        f"median {_percentile(summary['similarity'], 0.5):.3f}, p90 {_percentile(summary['similarity'], 0.9):.3f}, "
        f"max {max(summary['similarity'], default=0):.3f}", "",
        f"## Most common {_verbs_title(summary['unit'])}", "", "| verb | count |", "|---|---:|",
        *(f"| {verb} | {count} |" for verb, count in summary["verbs"]), "",
        "## Plots", "", *(f"![{Path(p).stem}]({Path(p).name})" for p in plots), "",
    ]
    return "\n".join(lines)


def plot(summary: dict, out_dir: Path) -> list[str]:
    """lengths.png, similarity.png, verbs.png, discards.png in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, (name, values) in zip(axes, summary["lengths"].items()):
        ax.hist(values, bins=30, color="tab:blue")
        ax.set(title=f"{name} length", xlabel=summary["unit"], ylabel="records")
    paths.append(_save(fig, out_dir / "lengths.png"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(summary["similarity"], bins=[i / 20 for i in range(21)], color="tab:green")
    ax.set(title="ROUGE-L to the most similar instruction", xlabel="ROUGE-L F", ylabel="instructions")
    paths.append(_save(fig, out_dir / "similarity.png"))
    for name, pairs, color in (("verbs", summary["verbs"], "tab:purple"), ("discards", summary["discards"], "tab:red")):
        labels, counts = [p[0] for p in pairs][::-1], [p[1] for p in pairs][::-1]
        font = _font_for(labels)
        if font is None:  # e.g. Chinese openings and no CJK font installed: the table in report.md has them
            continue
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(pairs) + 1.2))
        ax.barh(labels, counts, color=color)
        for label in ax.get_yticklabels():
            label.set_fontproperties(font)
        ax.set(title=_verbs_title(summary["unit"]) if name == "verbs" else "discards by reason", xlabel="count")
        paths.append(_save(fig, out_dir / f"{name}.png"))
    return paths


def _font_for(labels: list[str]):
    """FontProperties of a font with every character of `labels` (matplotlib's default if it has), or None."""
    from matplotlib import font_manager, ft2font

    wanted = {ord(c) for label in labels for c in label}
    default = font_manager.findfont(font_manager.FontProperties())
    # Last Resort maps every code point to a placeholder box: it "has" everything and shows nothing.
    fonts = sorted({f.fname for f in font_manager.fontManager.ttflist if "Last Resort" not in f.name})
    for path in [default, *fonts]:
        try:
            if wanted <= ft2font.FT2Font(path).get_charmap().keys():
                return font_manager.FontProperties(fname=path)
        except (OSError, RuntimeError):
            continue
    return None


def _verbs_title(unit: str) -> str:
    return "leading verbs" if unit == "words" else "openings (first two characters)"


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def write_report(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> str:
    """Write report.md and the PNGs for a run's output file; returns a one-line note of where."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    records = [obj for obj, _ in read_objects(path)] if path.stat().st_size else []
    log = [obj for obj, _ in read_appended_jsonl(raw_log_path(path))[0]]
    out_dir = Path(out_dir) if out_dir else path.with_name(f"{path.name.split('.')[0]}_report")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, log)
    plots = plot(summary, out_dir)
    (out_dir / "report.md").write_text(render_markdown(str(path), summary, plots))
    return f"report of {summary['records']} records written to {out_dir / 'report.md'} with {len(plots)} plots"
