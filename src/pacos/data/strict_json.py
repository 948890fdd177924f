"""The one JSON reading path for data files and request bodies: standard JSON only, bounded, every string valid.

Python's `json` accepts more than JSON and fails badly on some of it: `NaN`/`Infinity` become floats that
turn sampling probabilities into NaN, `1e400` becomes inf, integers over 4,300 digits raise a ValueError
that is no JSONDecodeError, nesting past ~1,000 levels raises RecursionError, a duplicate key silently
keeps the last value, and `"\\ud800"` yields a lone surrogate that later crashes whatever encodes the text
as UTF-8. Here every one of those is a `JSONInputError` with a reason (and, where known, the line and
column), which the loaders turn into `FILE:LINE: reason` and the server into an OpenAI-shaped 400.
"""

from __future__ import annotations

import json
import math
import re

MAX_DEPTH = 100  # arrays/objects nested in each other; a chat request or a ShareGPT record needs about 5
MAX_INT_DIGITS = 100  # no count, id or seed is longer; Python refuses past 4,300 digits anyway

_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACE = re.compile(r"[ \t\r\n]*")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # the only way a lone surrogate gets into parsed text


class JSONInputError(ValueError):
    """Text that is not acceptable JSON; `reason` says why, `lineno`/`colno` where (1-based) when known."""

    def __init__(self, reason: str, lineno: int | None = None, colno: int | None = None):
        where = f" (line {lineno}, column {colno})" if lineno is not None else ""
        super().__init__(reason + where)
        self.reason, self.lineno, self.colno = reason, lineno, colno


def _reject_constant(name: str):
    raise JSONInputError(f"{name} is not valid JSON (write a number, or null)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError(f"the number {_clip(text)} is too large (out of the range of a 64-bit float)")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JSONInputError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(text)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONInputError(f"duplicate key {_clip(repr(key))} in one object (keep one of them)")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=_finite_float, parse_int=_bounded_int,
                            parse_constant=_reject_constant)


def loads(text: str | bytes) -> object:
    """One whole JSON document (bytes must be UTF-8); raises JSONInputError for anything not strict JSON."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONInputError(f"not UTF-8: byte 0x{text[e.start]:02x} at byte offset {e.start}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    obj, end = decode_at(text, skip_space(text, 0))
    end = skip_space(text, end)
    if end != len(text):
        raise JSONInputError("extra data after the JSON value", *line_col(text, end))
    return obj


def decode_at(text: str, pos: int) -> tuple[object, int]:
    """The JSON value starting at `pos` and the index just after it (for reading array items one at a time)."""
    try:
        obj, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        raise JSONInputError(f"malformed JSON: {e.msg}", e.lineno, e.colno) from None
    except RecursionError:
        raise JSONInputError(f"nested more than {MAX_DEPTH} levels deep", *_deep_position(text, pos)) from None
    except JSONInputError as e:  # from a hook, which does not know where it is: find the first such spot
        raise JSONInputError(e.reason, *_locate(e.reason, text, pos)) from None
    except ValueError as e:  # anything else json refuses (e.g. a number it cannot convert)
        raise JSONInputError(f"malformed JSON: {e}", *line_col(text, pos)) from None
    check_value(obj, might_have_surrogates=_ESCAPED_SURROGATE.search(text, pos, end) is not None,
                text=text, pos=pos)
    return obj, end


def check_value(obj, might_have_surrogates: bool = True, text: str | None = None, pos: int = 0) -> None:
    """Depth and string checks on a parsed value (iterative: no recursion to exhaust)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise JSONInputError(f"nested more than {MAX_DEPTH} levels deep",
                                     *(_deep_position(text, pos) if text is not None else (None, None)))
            for key, item in value.items():
                if might_have_surrogates and _SURROGATE.search(key):
                    raise _surrogate_error(text, pos)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise JSONInputError(f"nested more than {MAX_DEPTH} levels deep",
                                     *(_deep_position(text, pos) if text is not None else (None, None)))
            stack.extend((item, depth + 1) for item in value)
        elif might_have_surrogates and isinstance(value, str) and _SURROGATE.search(value):
            raise _surrogate_error(text, pos)


def line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _surrogate_error(text: str | None, pos: int) -> JSONInputError:
    where = (None, None)
    if text is not None:
        for m in re.finditer(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?", text[pos:]):
            if len(m.group()) == 6:  # a high or low surrogate escape with no partner
                where = line_col(text, pos + m.start())
                break
    return JSONInputError("a lone UTF-16 surrogate escape (like \\ud800) is not a character: "
                          "encode the text as valid UTF-8", *where)


def _deep_position(text: str, pos: int) -> tuple[int | None, int | None]:
    """Where nesting first exceeds MAX_DEPTH (a slow scan, on the error path only)."""
    depth, in_string, escaped = 0, False, False
    for i in range(pos, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line_col(text, i)
        elif c in "]}":
            depth -= 1
            if depth <= 0:
                break
    return None, None


def _locate(reason: str, text: str, pos: int) -> tuple[int | None, int | None]:
    """Best-effort position of what a hook refused: the first long integer, non-finite constant, or big float."""
    patterns = {"integer of": r"-?\d{%d,}" % (MAX_INT_DIGITS + 1), "not valid JSON": r"-?Infinity|NaN",
                "too large": r"-?\d+(?:\.\d+)?[eE]\+?\d{3,}"}
    for key, pattern in patterns.items():
        if key in reason:
            # Strings are matched too, and passed over, so a "NaN" inside one is not taken for the value.
            for m in re.compile(r'"(?:[^"\\]|\\.)*"|' + pattern).finditer(text, pos):
                if not m.group().startswith('"'):
                    return line_col(text, m.start())
    return None, None


def skip_space(text: str, pos: int) -> int:
    """The index of the first non-whitespace character (JSON's whitespace) at or after `pos`."""
    return _SPACE.match(text, pos).end()


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
