"""Data files <-> records: format detection, loading with FILE:LINE / FILE[index] errors, atomic saving."""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pacos.data.parse import RecordError, conversation_to_object, example_to_object, parse_object
from pacos.data.records import Conversation, Example, Record, conversation_to_example, example_to_conversation
from pacos.errors import DataError

FORMATS = ("alpaca", "jsonl", "sharegpt", "messages", "self-instruct")
WRITABLE_FORMATS = ("alpaca", "jsonl", "sharegpt", "messages")

# The first key of a record that says which format the file is in, most specific first: a converted
# conversation keeps `instruction`/`input` as extra fields, so the conversation keys must win.
_FORMAT_KEYS = (("conversations", "sharegpt"), ("messages", "messages"), ("instances", "self-instruct"),
                ("instruction", None), ("output", None))


@dataclass(frozen=True)
class Problem:
    """One bad record (or a bad file): `where` is FILE:LINE, FILE[index] or FILE."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class DataFileError(DataError):
    """A file that cannot be read as records at all (empty, not UTF-8, malformed JSON array...)."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class Entry:
    """One raw record of a file: where it is, and its parsed JSON or why it is not JSON."""

    where: str
    obj: object = None
    error: str | None = None


@dataclass
class RawFile:
    """A data file split into raw records; `array` tells a JSON array from JSONL."""

    path: str
    array: bool
    entries: list[Entry] = field(default_factory=list)


def read_raw(path) -> RawFile:
    """Split a file into raw JSON records; raises DataFileError when the file as a whole is unreadable.

    JSONL is decoded line by line so one bad line (bad JSON or bad bytes) is reported without hiding the rest.
    """
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if not data[offset:].strip():
        raise DataFileError(Problem(path, "empty file: no records"))
    if data[offset:].lstrip()[:1] == b"[":
        return RawFile(path, True, _array_entries(path, data, offset))
    return RawFile(path, False, _jsonl_entries(path, data, offset))


def _array_entries(path: str, data: bytes, offset: int) -> list[Entry]:
    text = _decode(path, data, offset)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFileError(Problem(f"{path}:{e.lineno}", f"malformed JSON: {e.msg} (column {e.colno})")) from None
    if not items:
        raise DataFileError(Problem(path, "empty JSON array: no records"))
    return [Entry(f"{path}[{i}]", item) for i, item in enumerate(items)]


def _jsonl_entries(path: str, data: bytes, offset: int) -> list[Entry]:
    entries = []
    # Split on b"\n" only: str.splitlines would also split on U+2028 etc., which JSON strings may hold raw.
    lines = data[offset:].split(b"\n")
    next_offset = offset  # byte offsets of lines in the file, to point at bad bytes
    for lineno, raw in enumerate(lines, 1):
        line_offset, next_offset = next_offset, next_offset + len(raw) + 1
        if not raw.strip():
            continue  # blank lines carry no record
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            entries.append(Entry(where, error=_not_utf8(raw[e.start], line_offset + e.start)))
            continue
        try:
            entries.append(Entry(where, json.loads(line)))
        except json.JSONDecodeError as e:
            entries.append(Entry(where, error=f"malformed JSON: {e.msg} (column {e.colno})"))
    if not entries:
        raise DataFileError(Problem(path, "empty file: no records"))
    if entries[0].error and len(lines) > 1:
        _reject_pretty_object(path, data, offset)
    return entries


def _reject_pretty_object(path: str, data: bytes, offset: int) -> None:
    """A single JSON object spread over lines reads as JSONL garbage; say what it really is instead."""
    try:
        whole = json.loads(data[offset:].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    if isinstance(whole, dict):
        raise DataFileError(Problem(path, "one JSON object over several lines; expected a JSON array of records "
                                          "or one record per line (JSONL)"))


def _decode(path: str, data: bytes, offset: int) -> str:
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as e:
        start = offset + e.start
        line = data[:start].count(b"\n") + 1
        raise DataFileError(Problem(f"{path}:{line}", _not_utf8(data[start], start))) from None


def _not_utf8(byte: int, offset: int) -> str:
    return f"not UTF-8: byte 0x{byte:02x} at byte offset {offset}; re-save the file as UTF-8"


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
        if fmt in ("alpaca", "jsonl"):
            if isinstance(record, Conversation):
                record = conversation_to_example(record, where=f"record {i + 1} of {len(records)}")
            objects.append(example_to_object(record))
        else:
            if isinstance(record, Example):
                record = example_to_conversation(record)
            objects.append(conversation_to_object(record, fmt))
    return objects


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


def write_objects(objects: list[dict], path, as_lines: bool) -> None:
    """Write JSON objects atomically, one per line or as an indented array: a temp file in the same folder
    replaces `path` only when complete, so a failed write never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            if as_lines:
                for obj in objects:
                    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            else:
                json.dump(objects, f, indent=2, ensure_ascii=False)
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
