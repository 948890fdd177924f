"""The strict JSON reader: what Python's json accepts beyond JSON, or crashes on, is a JSONInputError with a place."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.data import strict_json
from pacos.data.strict_json import JSONInputError, decode_at, loads


@pytest.mark.parametrize("text, reason, line", [
    ('{"t": NaN}', "NaN is not valid JSON", 1),
    ('{"t":\n -Infinity}', "-Infinity is not valid JSON", 2),
    ('{"t": 1e400}', "too large", 1),
    ('{"seed": ' + "9" * 5000 + "}", "integer of 5000 digits", 1),
    ("[" * 5000 + "]" * 5000, "nested more than 100 levels", 1),
    ("[" * 150 + "]" * 150, "nested more than 100 levels", 1),
    ('{"a": 1,\n "a": 2}', "duplicate key 'a'", None),
    ('{"content": "x\\ud800y"}', "lone UTF-16 surrogate", 1),
    ('{"\\udfff": 1}', "lone UTF-16 surrogate", 1),
    ('{"a": 1}\n{"b": 2}', "extra data", 2),
    ('{"a": [1, 2', "malformed JSON", 1),
])
def test_refused_with_reason_and_place(text, reason, line):
    with pytest.raises(JSONInputError) as e:
        loads(text)
    assert reason in e.value.reason
    assert e.value.lineno == line
    assert "\n" not in str(e.value)


def test_a_refused_value_is_placed_outside_the_strings_that_mention_it():
    text = '{"instruction": "NaN or 1e999 here", "output": NaN}'
    with pytest.raises(JSONInputError) as e:
        loads(text)
    assert e.value.colno == text.index("NaN}") + 1


def test_valid_json_reads_as_json_does():
    text = '{"a": [1, -2.5e3, "\\ud83d\\ude00 \\u00e9", null, true], "b": {"c": ""}, "big": ' + "9" * 100 + "}"
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)
    assert loads("\ufeff" + text) == json.loads(text)  # a UTF-8 BOM is tolerated, as files often carry one


def test_depth_limit_is_exact():
    ok = "[" * strict_json.MAX_DEPTH + "]" * strict_json.MAX_DEPTH
    assert loads(ok) is not None
    with pytest.raises(JSONInputError):
        loads("[" + ok + "]")


def test_bytes_that_are_not_utf8():
    with pytest.raises(JSONInputError, match="not UTF-8: byte 0xff"):
        loads(b'{"a": "\xff"}')


def test_decode_at_reads_items_in_place():
    text = '[{"a": 1}, {"b": NaN}]'
    obj, end = decode_at(text, 1)
    assert obj == {"a": 1} and text[end:].startswith(", ")
    with pytest.raises(JSONInputError, match="NaN"):
        decode_at(text, end + 2)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-10**30, 10**30)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20))
def test_any_standard_value_round_trips(value):
    # Text made by json.dumps from surrogate-free values is strict JSON; it must read back equal.
    text = json.dumps(value, ensure_ascii=True)
    try:
        text.encode("utf-8")
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # hypothesis' text() may hold lone surrogates: those must be refused
        with pytest.raises(JSONInputError, match="surrogate"):
            loads(text)
        return
    assert loads(text) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_a_value_or_a_one_line_error(text):
    try:
        loads(text)
    except JSONInputError as e:
        assert "\n" not in str(e)
