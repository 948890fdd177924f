"""Data files <-> records: format detection, loading with FILE:LINE / FILE[index] errors, atomic saving."""

from __future__ import annotations

import codecs
import glob
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pacos.data import strict_json
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

    Records are parsed strictly (pacos.data.strict_json): NaN, huge integers, deep nesting, duplicate keys
    and lone surrogates are problems of their record, reported at its place while the others are still read.
    """
    path = str(path)
    data = _read_regular_file(path)
    offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if not data[offset:].strip():
        raise DataFileError(Problem(path, "empty file: no records"))
    if data[offset:].lstrip()[:1] == b"[":
        return RawFile(path, True, _array_entries(path, data, offset))
    return RawFile(path, False, _jsonl_entries(path, data, offset))


def _read_regular_file(path: str) -> bytes:
    """The bytes of a regular file; anything else is refused before it is opened (opening a FIFO blocks)."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise DataError(f"{path}: is a directory, expected a data file")
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: is a {_file_kind(mode)}, not a regular file; save the data to a file first")
        # O_NONBLOCK: should the path become a FIFO after the check, opening it still returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DataError(f"{path}: not a regular file; save the data to a file first")
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _array_entries(path: str, data: bytes, offset: int) -> list[Entry]:
    """Items of a JSON array, decoded one at a time so a bad item is that item's problem, not the file's.

    A syntax error is the file's problem: past it, where the next item starts is unknown.
    """
    text = _decode(path, data, offset)
    try:  # the common case, a clean file, at the speed of one strict parse (item by item is ~2x slower)
        items = strict_json.loads(text)
        if items:
            return [Entry(f"{path}[{i}]", item) for i, item in enumerate(items)]
    except strict_json.JSONInputError:
        pass  # find each bad item below (the whole array also counts one level more of nesting)
    pos = _skip_space(text, text.index("[") + 1)
    entries: list[Entry] = []
    if text[pos:pos + 1] == "]":
        raise DataFileError(Problem(path, "empty JSON array: no records"))
    while True:
        where, start = f"{path}[{len(entries)}]", pos
        try:
            obj, pos = strict_json.decode_at(text, pos)
            entries.append(Entry(where, obj))
        except strict_json.JSONInputError as e:
            pos = _skip_value(path, text, start, e)
            line = e.lineno or strict_json.line_col(text, start)[0]
            column = f", column {e.colno}" if e.colno else ""
            entries.append(Entry(where, error=f"{e.reason} (line {line}{column})"))
        pos = _skip_space(text, pos)
        if text[pos:pos + 1] == ",":
            pos = _skip_space(text, pos + 1)
            if text[pos:pos + 1] == "]":
                raise _syntax_error(path, text, pos, "Illegal trailing comma before end of array")
        elif text[pos:pos + 1] == "]":
            break
        else:
            raise _syntax_error(path, text, pos, "Expecting ',' delimiter" if pos < len(text) else
                                "the array is not closed (expecting ']')")
    if _skip_space(text, pos + 1) != len(text):
        raise _syntax_error(path, text, _skip_space(text, pos + 1), "Extra data after the array")
    return entries


def _syntax_error(path: str, text: str, pos: int, reason: str) -> DataFileError:
    line, column = strict_json.line_col(text, pos)
    return DataFileError(Problem(f"{path}:{line}", f"malformed JSON: {reason} (column {column})"))


# Python's own reader with every conversion switched off: it accepts what strict_json refuses for its
# content (NaN, huge numbers, duplicate keys, surrogates) and so finds where such a value ends.
_LENIENT = json.JSONDecoder(parse_int=lambda s: None, parse_float=lambda s: None,
                            parse_constant=lambda s: None, object_pairs_hook=lambda pairs: None)
# A string, or one structural character: for skipping values nested too deep for the lenient reader.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')


def _skip_value(path: str, text: str, pos: int, refused: strict_json.JSONInputError) -> int:
    """The end of the value at `pos` that strict_json `refused`; DataFileError when it is not JSON even leniently."""
    try:
        return _LENIENT.raw_decode(text, pos)[1]
    except json.JSONDecodeError as e:
        raise DataFileError(Problem(f"{path}:{e.lineno}", f"malformed JSON: {e.msg} (column {e.colno})")) from None
    except RecursionError:
        pass  # nested too deep for Python's reader: match brackets instead
    depth = 0
    for m in _TOKEN.finditer(text, pos):
        c = m.group()
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return m.end()
        if depth <= 0:
            break
    line, column = refused.lineno, refused.colno
    if line is None:
        line, column = strict_json.line_col(text, pos)
    raise DataFileError(Problem(f"{path}:{line}", f"{refused.reason} (column {column})"))


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
            entries.append(Entry(where, strict_json.loads(line)))
        except strict_json.JSONInputError as e:
            entries.append(Entry(where, error=e.reason + (f" (column {e.colno})" if e.colno else "")))
    if not entries:
        raise DataFileError(Problem(path, "empty file: no records"))
    if entries[0].error and len(lines) > 1:
        _reject_pretty_object(path, data, offset)
    return entries


def _reject_pretty_object(path: str, data: bytes, offset: int) -> None:
    """A single JSON object spread over lines reads as JSONL garbage; say what it really is instead."""
    try:
        whole = strict_json.loads(data[offset:])
    except strict_json.JSONInputError:
        return
    if isinstance(whole, dict):
        raise DataFileError(Problem(path, "one JSON object over several lines; expected a JSON array of records "
                                          "or one record per line (JSONL)"))


def _skip_space(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()


_SPACE = re.compile(r"[ \t\r\n]*")


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


def write_objects(objects: list[dict], path, as_lines: bool) -> None:
    """Write JSON objects atomically, one per line or as an indented array.

    The objects go to a temp file `.NAME.PID.RANDOM.tmp` in the same folder, which replaces `path` only when
    complete, so a failed write never leaves a partial file. The result has the mode a plain open() would
    give (0666 less the umask), or keeps the mode of the file it replaces. A writer killed mid-write leaves
    its temp file behind; the next write to the same path removes the temp files of writers no longer
    running. Liveness is by pid: a reused pid keeps a stale file until a later write, and writers in other
    pid namespaces (containers) must not share the folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        # os.open applies the umask, as open() would; mkstemp would make the file 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as f:
            try:
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass  # a new file: the umask decided
            if as_lines:
                for obj in objects:
                    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            else:
                json.dump(objects, f, indent=2, ensure_ascii=False)
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.strerror:
            raise DataError(f"{path}: cannot write ({e.strerror})") from None
        raise


def _remove_stale_temps(path: Path) -> None:
    """Delete `path`'s temp files whose writer process has died (see write_objects)."""
    prefix = f".{path.name}."
    ours = re.compile(re.escape(prefix) + r"(\d+)\.[0-9a-f]{8}\.tmp")  # not another target's (".NAME.x....")
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        m = ours.fullmatch(tmp.name)
        if m and not _process_alive(int(m.group(1))):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but not ours, or not a pid we can ask about: leave its file alone
    return True
