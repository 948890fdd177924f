"""Exact-match accuracy of a model on verifiable task records: greedy answers, scored per task."""

from __future__ import annotations

from pacos.errors import PacosError


def evaluate_tasks(model_ref, data, out=None, batch_size: int = 32, max_new_tokens: int = 32,
                   template: str | None = None, generator=None, records=None) -> dict:
    """Greedy-decode every record of `data` (or `records`) and score it against its `output`."""
    from pacos.data.formats import load_records, save_records
    from pacos.eval.tasks import score_records
    from pacos.infer.generate import Generator, SamplingParams

    records = load_records(data) if records is None else records
    if not records:
        raise PacosError(f"{data}: no records to evaluate")
    gen = generator or Generator.load(model_ref, template, records)
    answers = gen.generate(records, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0),
                           batch_size=batch_size, progress=True)
    for record, answer in zip(records, answers):
        record.extra["generated"] = answer
    if out:
        save_records(records, out, fmt="alpaca" if str(out).endswith(".json") else "jsonl")
    return score_records(records)
