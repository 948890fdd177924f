"""Exact-match accuracy of a model on verifiable task records: greedy answers through the engine, scored per task."""

from __future__ import annotations

from pacos.errors import PacosError


def evaluate_tasks(model_ref, data, out=None, batch_size: int = 32, max_new_tokens: int = 32,
                   template: str | None = None, engine=None, records=None, threads: int | None = None) -> dict:
    """Greedy-decode every record of `data` (or `records`) and score it against its `output`.
    `engine`: an engine already loaded on the model (else one is loaded on `model_ref`, with `threads`, and
    closed after)."""
    from pacos.data.formats import load_records, save_records
    from pacos.eval.tasks import score_records
    from pacos.infer.backends import load_engine
    from pacos.infer.files import answer_records
    from pacos.infer.params import SamplingParams
    from pacos.prompting.templates import record_kind

    records = load_records(data) if records is None else records
    if not records:
        raise PacosError(f"{data}: no records to evaluate")
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    own = engine is None
    if own:
        engine = load_engine(model_ref, template=template, kind=record_kind(records), max_batch=batch_size,
                             max_waiting=2 * batch_size, threads=threads)
    try:
        answers = answer_records(engine, records, params, progress=True, desc="eval")
    finally:
        if own:
            engine.close()
    for record, answer in zip(records, answers):
        record.extra["generated"] = answer
    if out:
        save_records(records, out, fmt="alpaca" if str(out).endswith(".json") else "jsonl")
    return score_records(records)
