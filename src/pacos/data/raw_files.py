"""A data file split into raw JSON records (JSON array or JSONL), each parsed strictly or with why it is bad."""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from dataclasses import dataclass, field

from pacos.data import strict_json
from pacos.data.strict_json import skip_space
from pacos.errors import DataError


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
    pos = skip_space(text, text.index("[") + 1)
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
        pos = skip_space(text, pos)
        if text[pos:pos + 1] == ",":
            pos = skip_space(text, pos + 1)
            if text[pos:pos + 1] == "]":
                raise _syntax_error(path, text, pos, "Illegal trailing comma before end of array")
        elif text[pos:pos + 1] == "]":
            break
        else:
            raise _syntax_error(path, text, pos, "Expecting ',' delimiter" if pos < len(text) else
                                "the array is not closed (expecting ']')")
    if skip_space(text, pos + 1) != len(text):
        raise _syntax_error(path, text, skip_space(text, pos + 1), "Extra data after the array")
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



def _decode(path: str, data: bytes, offset: int) -> str:
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as e:
        start = offset + e.start
        line = data[:start].count(b"\n") + 1
        raise DataFileError(Problem(f"{path}:{line}", _not_utf8(data[start], start))) from None


def _not_utf8(byte: int, offset: int) -> str:
    return f"not UTF-8: byte 0x{byte:02x} at byte offset {offset}; re-save the file as UTF-8"
