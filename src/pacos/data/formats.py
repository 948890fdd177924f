"""Data files <-> records: format detection, loading with FILE:LINE / FILE[index] errors, saving in any format."""

from __future__ import annotations

from pathlib import Path

from pacos.data.atomic_write import write_objects
from pacos.data.parse import (
    RecordError,
    conversation_to_object,
    example_to_object,
    parse_object,
)
from pacos.data.raw_files import DataFileError, Problem, RawFile, read_raw
from pacos.data.records import (
    Conversation,
    Example,
    Record,
    conversation_to_example,
    example_to_conversation,
)
from pacos.errors import DataError

FORMATS = ("alpaca", "jsonl", "sharegpt", "messages", "self-instruct")
WRITABLE_FORMATS = ("alpaca", "jsonl", "sharegpt", "messages")

# The first key of a record that says which format the file is in, most specific first: a converted
# conversation keeps `instruction`/`input` as extra fields, so the conversation keys must win.
_FORMAT_KEYS = (("conversations", "sharegpt"), ("messages", "messages"), ("instances", "self-instruct"),
                ("instruction", None), ("output", None))


def detect_raw(raw: RawFile) -> str:
    """The format of a split file, from the keys of its first recognisable record."""
    keys_seen = None
    for entry in raw.entries:
        if not isinstance(entry.obj, dict):
            continue
        for key, fmt in _FORMAT_KEYS:
            if key in entry.obj:
                return fmt or ("alpaca" if raw.array else "jsonl")
        if keys_seen is None:
            keys_seen = entry.obj
    if keys_seen is not None:
        keys = ", ".join(sorted(keys_seen)) or "no keys"
        raise DataFileError(Problem(raw.path, (
            f"cannot tell the format from the record keys ({keys}); expected instruction/input/output (alpaca), "
            "instances (self-instruct), conversations (sharegpt) or messages; fix the keys or pass --format"
        )))
    # No record is a JSON object, so nothing decides: the extension is the user's best hint.
    suffix = Path(raw.path).suffix.lower()
    return "jsonl" if suffix == ".jsonl" else "alpaca" if suffix == ".json" or raw.array else "jsonl"


def detect_format(path) -> str:
    """One of FORMATS, by content: JSON array or JSONL, then the keys of the first record."""
    return detect_raw(read_raw(path))


def check_format(fmt: str | None, allowed=FORMATS) -> None:
    if fmt is not None and fmt not in allowed:
        raise DataError(f"unknown data format {fmt!r}; expected one of {', '.join(allowed)}")


def scan_records(raw: RawFile, fmt: str, require_output: bool = True):
    """Yield (records, problem) for each raw record: its records when it is good, a Problem when bad."""
    for entry in raw.entries:
        if entry.error:
            yield [], Problem(entry.where, entry.error)
            continue
        try:
            yield parse_object(entry.obj, fmt, require_output), None
        except RecordError as e:
            yield [], Problem(entry.where, str(e))


def load_records(path, fmt: str | None = None, require_output: bool = True) -> list[Record]:
    """Every record of a data file; raises DataError naming the first bad record.

    The container (JSON array or JSONL) is always read from the content; `fmt` fixes the record shape.
    `require_output=False` also accepts records with no answer yet (inputs for inference).
    """
    check_format(fmt)
    raw = read_raw(path)
    fmt = fmt or detect_raw(raw)
    records: list[Record] = []
    for found, problem in scan_records(raw, fmt, require_output):
        if problem:
            raise DataError(f"{problem} (run `pacos data validate {raw.path}` to see every bad record)")
        records += found
    return records


def to_objects(records: list[Record], fmt: str) -> list[dict]:
    """Records as JSON objects of `fmt`, converting instruction records <-> one-turn conversations."""
    objects = []
    for i, record in enumerate(records):
        where = f"record {i + 1} of {len(records)}"
        try:
            if fmt in ("alpaca", "jsonl"):
                if isinstance(record, Conversation):
                    record = conversation_to_example(record, where=where)
                objects.append(example_to_object(record))
            else:
                if isinstance(record, Example):
                    record = example_to_conversation(record)
                objects.append(conversation_to_object(record, fmt))
        except RecordError as e:
            raise DataError(f"{where}: {e}") from None
        _check_detectable(objects[-1], fmt, where)
    return objects


def _check_detectable(obj: dict, fmt: str, where: str) -> None:
    """An extra field named like another format's key (a chat's leftover `messages`...) would make the written
    file read as that format, so it cannot be written as is."""
    written = "alpaca" if fmt == "jsonl" else fmt
    for key, found in _FORMAT_KEYS:
        if key in obj:
            if (found or "alpaca") != written:
                raise DataError(f"{where}: its extra field {key!r} would make the written record read as {found} "
                                f"instead of {fmt}; rename the field or convert to another format")
            return


def save_records(records: list[Record], path, fmt: str) -> None:
    """Write records as `fmt` atomically (see write_objects), converting each record to the format's kind.

    alpaca is a JSON array; jsonl one object per line; sharegpt/messages are JSONL when `path` ends in .jsonl,
    else a JSON array.
    """
    if fmt == "self-instruct":
        raise DataError("self-instruct files are read-only in pacos; save as alpaca or jsonl (task fields are kept)")
    check_format(fmt, WRITABLE_FORMATS)
    path = Path(path)
    as_lines = fmt == "jsonl" or (fmt in ("sharegpt", "messages") and path.suffix.lower() == ".jsonl")
    write_objects(to_objects(records, fmt), path, as_lines)  # conversion errors surface before any file is touched

