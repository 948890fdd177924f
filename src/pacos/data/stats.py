"""Dataset statistics: record kinds, input share, turn counts, length percentiles in words and tokens."""

from __future__ import annotations

import math

from pacos.data.records import Conversation, Example, Record

PERCENTILES = (50, 90, 99)


def percentiles(values: list[int]) -> dict | None:
    """p50/p90/p99/max by the nearest-rank method (always a value that occurs); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    summary = {f"p{q}": ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] for q in PERCENTILES}
    summary["max"] = ordered[-1]
    return summary


def _words(text: str) -> int:
    return len(text.split())


def compute_stats(records: list[Record], tokenizer=None, template: str | None = None, max_len: int = 512) -> dict:
    """JSON-serialisable statistics of `records`; token lengths of the full training sequence when a tokenizer is given."""
    examples = [r for r in records if isinstance(r, Example)]
    conversations = [r for r in records if isinstance(r, Conversation)]
    with_input = sum(1 for e in examples if e.input.strip())
    stats: dict = {
        "records": len(records),
        "kinds": {"instruction": len(examples), "conversation": len(conversations)},
        "with_input": with_input,
        "with_input_share": round(with_input / len(examples), 4) if examples else None,
    }
    words = {
        "instruction": [_words(e.instruction) for e in examples],
        # Only records that have an input: the many empty ones would hide the length of real inputs.
        "input": [_words(e.input) for e in examples if e.input.strip()],
        "output": [_words(e.output) for e in examples],
    }
    if conversations:
        stats["turns"] = percentiles([len(c.turns) for c in conversations])
        stats["with_system"] = sum(1 for c in conversations if c.system is not None)
        for role in ("system", "user", "assistant"):
            words[f"{role} turn"] = [_words(m.content) for c in conversations for m in c.messages if m.role == role]
    stats["words"] = {name: percentiles(values) for name, values in words.items() if values}
    if tokenizer is not None:
        stats["tokens"] = _token_stats(records, tokenizer, template, max_len)
    return stats


def _token_stats(records: list[Record], tokenizer, template: str | None, max_len: int) -> dict:
    """Lengths of the whole rendered training sequence (prompt + response + EOS), untruncated."""
    from pacos.prompting.encode import encode_record  # lazy: needs the training stack

    lengths = [len(encode_record(r, tokenizer, template=template, max_len=None).input_ids) for r in records]
    over = sum(1 for n in lengths if n > max_len)
    return {
        "template": template,
        "length": percentiles(lengths),
        "max_len": max_len,
        "over_max_len": over,
        "over_max_len_share": round(over / len(lengths), 4) if lengths else None,
    }


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.1f}%)" if total else str(count)


def format_stats(stats: dict) -> str:
    """`compute_stats` output as a readable text table."""
    kinds, width = stats["kinds"], 26
    lines = [f"{'records':<{width}}{stats['records']}",
             f"{'  instruction':<{width}}{kinds['instruction']}",
             f"{'  conversation':<{width}}{kinds['conversation']}"]
    if kinds["instruction"]:
        lines.append(f"{'with input':<{width}}{_share(stats['with_input'], kinds['instruction'])}")
    if stats.get("turns"):
        lines.append(f"{'with system prompt':<{width}}{_share(stats['with_system'], kinds['conversation'])}")
    rows = [(f"words: {name}", summary) for name, summary in stats["words"].items()]
    if stats.get("turns"):
        rows.append(("turns per conversation", stats["turns"]))
    tokens = stats.get("tokens")
    if tokens and tokens["length"]:
        rows.append((f"tokens: {tokens['template'] or 'default template'}", tokens["length"]))
    columns = ("p50", "p90", "p99", "max")
    lines += ["", " " * width + "".join(f"{c:>8}" for c in columns)]
    lines += [f"{name:<{width}}" + "".join(f"{summary[c]:>8}" for c in columns) for name, summary in rows]
    if tokens:
        over = _share(tokens["over_max_len"], stats["records"])
        lines.append(f"{'over max_len ' + str(tokens['max_len']):<{width}}{over} would be truncated")
    return "\n".join(lines)
