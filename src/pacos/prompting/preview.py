"""`pacos data preview`: what the model trains on, token for token, with the trained span marked."""

from __future__ import annotations

import json
import sys
from typing import Iterator

from pacos.prompting.encode import IGNORE_INDEX, SkippedRecord, encode_record

OPEN, CLOSE = "⟦", "⟧"  # marks trained text when colour is off


def preview_file(path: str, model: str, template: str | None = None, limit: int = 3, max_len: int = 512,
                 train_on_inputs: bool = False, as_json: bool = False, color: bool | None = None) -> Iterator[str]:
    """One block (text) or one JSON line per record, for the first `limit` records."""
    from pacos.data.formats import load_records
    from pacos.models.loading import load_tokenizer
    from pacos.prompting.templates import get_template, record_kind

    records = load_records(path)
    tokenizer = load_tokenizer(model)
    tmpl = get_template(template, tokenizer, record_kind(records))
    color = sys.stdout.isatty() if color is None else color
    for i, record in enumerate(records[: max(0, limit)]):
        try:
            enc = encode_record(record, tokenizer, tmpl, max_len=max_len, train_on_inputs=train_on_inputs)
        except SkippedRecord as e:
            yield json.dumps({"skipped": f"{path}[{i}]: {e}"}) if as_json else f"--- {path}[{i}]: skipped: {e}"
            continue
        text = tokenizer.decode(enc.input_ids, skip_special_tokens=False)
        if as_json:
            yield json.dumps({"text": text, "input_ids": enc.input_ids, "labels": enc.labels}, ensure_ascii=False)
            continue
        trained = sum(label != IGNORE_INDEX for label in enc.labels)
        head = (f"--- {path}[{i}] template={tmpl.name} tokens={len(enc.input_ids)} trained={trained}"
                + (" (truncated)" if enc.truncated else ""))
        yield head + "\n" + mark_trained(tokenizer, enc.input_ids, enc.labels, color)


def mark_trained(tokenizer, input_ids: list[int], labels: list[int], color: bool = False) -> str:
    """The decoded sequence with each run of trained tokens wrapped in markers (or shown in green)."""
    out, run, run_trained = [], [], None
    for tok, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if run and trained != run_trained:
            out.append(_span(tokenizer, run, run_trained, color))
            run = []
        run.append(tok)
        run_trained = trained
    if run:
        out.append(_span(tokenizer, run, run_trained, color))
    return "".join(out)


def _span(tokenizer, ids: list[int], trained: bool, color: bool) -> str:
    text = tokenizer.decode(ids, skip_special_tokens=False)
    if not trained:
        return text
    return f"\x1b[1;32m{text}\x1b[0m" if color else f"{OPEN}{text}{CLOSE}"
