"""Answering records through the engine: `pacos infer` on files (streaming, resumable), and in memory for
`ask` and `eval`.

`infer_file` streams: prompts are encoded as the engine has room for them, a finished record frees its
slot at once, and each answer is appended to the output as soon as every record before it is out (input
order). The output grows one complete JSON line at a time and is flushed after each, so a process killed
at any point (kill -9 included) leaves only whole records and perhaps one torn last line; rerunning the same
command drops the torn line, checks the records already there against the input, and answers the rest.
An Alpaca `.json` array output is streamed into `OUT.partial.jsonl` beside it and written atomically once
complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from pacos.data.records import Record
from pacos.errors import PacosError
from pacos.infer.engine import Engine, complete_many, in_input_order
from pacos.infer.params import SamplingParams


@dataclass
class InferResult:
    total: int  # records in the input
    already: int  # found answered in --out from an earlier run
    answered: int  # answered by this run


def prompts_for(engine: Engine, records: list[Record], params: SamplingParams, where: str = "record",
                start: int = 0) -> Iterator[list[int]]:
    """Prompt ids of records[start:], encoded lazily; a prompt that leaves no room for the answer is an error
    naming its record."""
    for i in range(start, len(records)):
        yield check_fits(engine, engine.encode(records[i]), params, f"{where} {i + 1}")


def check_fits(engine: Engine, ids: list[int], params: SamplingParams, where: str) -> list[int]:
    """`ids`, if the prompt leaves room in the model's context for the answer; else an error naming `where`."""
    context = engine.context_length
    if context and len(ids) + params.max_new_tokens > context:
        raise PacosError(f"{where}: its prompt of {len(ids)} tokens + {params.max_new_tokens} new tokens "
                         f"exceeds the model's context of {context}; lower --max-new-tokens or shorten the input")
    return ids


def record_sampling(params: SamplingParams, index: int) -> SamplingParams:
    """Record `index`'s sampling: a seed is offset by the index, so each record has its own reproducible stream
    whatever the batching and however often the run was resumed."""
    return params if params.seed is None else replace(params, seed=params.seed + index)


def answer_records(engine: Engine, records: list[Record], params: SamplingParams, progress: bool = False,
                   desc: str = "generate") -> list[str]:
    """The answer to every record, in order (kept in memory: for `ask`, `eval` and other in-process callers)."""
    params.check()
    answers = [""] * len(records)
    with progress_bar(len(records), 0, progress, desc) as bar:
        for index, done in _answers(engine, records, params, 0):
            answers[index] = done.text
            bar.update(1)
    return answers


def read_inputs(data: str) -> list[Record]:
    """The records of an inference input (answers not needed); an empty file is an error."""
    from pacos.data.formats import load_records

    records = load_records(data, require_output=False)
    if not records:
        raise PacosError(f"{data}: no records")
    return records


def infer_file(engine: Engine, data: str, out: str, params: SamplingParams, progress: bool = True,
               records: list[Record] | None = None) -> InferResult:
    """Answer every record of `data` (already read: `records`) into `out` (records + a `generated` field),
    resuming a previous run of the same command."""
    from pacos.prompting.templates import record_kind

    params.check()
    records = read_inputs(data) if records is None else records
    out_path = Path(out)
    fmt, as_lines = output_format(record_kind(records), out_path)
    stream_path = out_path if as_lines else out_path.with_name(out_path.name + ".partial.jsonl")
    if not as_lines and out_path.exists() and not stream_path.exists():
        already = _check_done(records, _read_array(out_path), fmt, out_path)
        if already == len(records):
            return InferResult(len(records), already, 0)
        raise PacosError(f"{out}: holds {already} of the {len(records)} records and no {stream_path.name} to resume "
                         "from; delete it to start again")
    already = _check_done(records, read_output_lines(stream_path), fmt, stream_path)
    answered = 0
    if already < len(records):
        with open(stream_path, "a", encoding="utf-8", newline="\n") as f, \
                progress_bar(len(records), already, progress, "infer") as bar:
            for index, done in _answers(engine, records, params, already):
                if done.finish_reason == "error":
                    raise PacosError(f"{data}: record {index + 1}: {done.error}")
                f.write(json.dumps(_answered_object(records[index], done.text, fmt), ensure_ascii=False) + "\n")
                f.flush()
                answered += 1
                bar.update(1)
    if not as_lines:
        from pacos.data.atomic_write import write_objects

        write_objects(read_output_lines(stream_path), out_path, as_lines=False)
        stream_path.unlink()
    return InferResult(len(records), already, answered)


def output_format(kind: str, out: Path) -> tuple[str, bool]:
    """(format, one JSON object per line?) of an infer output: Alpaca records (JSONL, or an array for .json)
    for instructions, messages records for conversations (JSONL for .jsonl, else an array)."""
    if kind == "instruction":
        return ("alpaca", False) if out.suffix.lower() == ".json" else ("jsonl", True)
    return "messages", out.suffix.lower() == ".jsonl"


def _answers(engine: Engine, records, params: SamplingParams, start: int):
    """(index, Completion) for records[start:], in input order, each as soon as those before it are out."""
    results = complete_many(engine, prompts_for(engine, records, params, start=start), params,
                            template=engine.template, sampling_for=lambda i: record_sampling(params, start + i))
    return in_input_order(((start + i, done) for i, done in results), first=start)


def _answered_object(record: Record, answer: str, fmt: str) -> dict:
    from pacos.data.formats import to_objects

    obj = to_objects([record], fmt)[0]
    obj["generated"] = answer
    return obj


def _check_done(records: list[Record], done: list[dict], fmt: str, path: Path) -> int:
    """How many records `path` already answers, after checking each is the input's record at its place."""
    if len(done) > len(records):
        raise PacosError(f"{path}: holds {len(done)} records, more than the {len(records)} of the input; it is the "
                         "output of another input: delete it or choose another --out")
    for i, obj in enumerate(done):
        expected = _answered_object(records[i], obj.get("generated", ""), fmt)
        if obj != expected:
            raise PacosError(f"{path}: record {i + 1} is not record {i + 1} of the input, so this is not an earlier "
                             "run of the same command; delete it or choose another --out")
    return len(done)


def read_output_lines(path: Path, writer: str = "pacos infer") -> list[dict]:
    """The whole JSON lines of an output `writer` streams; a torn last line (the run was killed mid-write) is
    cut off."""
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        with open(path, "r+b") as f:
            f.truncate(len(whole))
    objects = []
    for n, line in enumerate(whole.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise PacosError(f"{path}:{n}: not a record written by {writer}; delete the file or choose another --out")
        objects.append(obj)
    return objects


def _read_array(path: Path) -> list[dict]:
    try:
        objects = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PacosError(f"{path}: can't read it as an earlier output ({e}); delete it or choose another --out") from None
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise PacosError(f"{path}: not an output of pacos infer; delete it or choose another --out")
    return objects


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def progress_bar(total: int, initial: int, progress: bool, desc: str):
    """tqdm's bar (rate and ETA) on stderr, or one that shows nothing."""
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="rec", dynamic_ncols=True)
