"""Property-based fuzzing of the data loaders through the real CLI: whatever the file holds, every command exits
with a verdict (0, 1 or 2) and at most a line or two of error, never a traceback; what `validate` accepts,
`convert` writes as a file that validates again."""

import contextlib
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacos.cli import main

# Keys the loaders give meaning to, so generated objects often look like (or almost like) real records.
KEYS = ["instruction", "input", "output", "system", "messages", "conversations", "instances", "role",
        "content", "from", "value", "id", "message_extra"]
ROLES = ["user", "assistant", "system", "human", "gpt", "tool"]
# What a hostile or broken file holds: each is spliced into otherwise valid JSON text.
SPLICES = ["NaN", "-Infinity", "1e400", "9" * 150, '"\\ud800"', '"\\udc00x"', "[" * 1200, "]", "}", ",", '"',
           "\\", "\n", "\r", "\u2028", "\x00", "\ufeff", '"output": "x", "output": "y"', "{}", "[]", "null"]

scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.sampled_from(ROLES + ["", " ", "Hi", "x\x00y", "é 猫 \u2028"]) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4),
                      max_leaves=12)
texts = st.sampled_from(["Hi", "Add 1 and 2.", "x\x00y", "é 猫 \u2028", "a\nb"]) | st.text(min_size=1, max_size=8)
# Mostly valid records (so `convert` is reached and checked), with extra fields and near-misses mixed in.
alpaca = st.fixed_dictionaries({"instruction": texts, "output": texts},
                               optional={"input": texts | st.just(""), "system": texts | scalars, "id": values,
                                         "messages": values})


@st.composite
def chats(draw) -> dict:
    speaker, text, user, assistant = draw(st.sampled_from([("role", "content", "user", "assistant"),
                                                           ("from", "value", "human", "gpt")]))
    turns = [{speaker: "system", text: draw(texts)}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        turns += [{speaker: user, text: draw(texts)}, {speaker: assistant, text: draw(texts)}]
    if draw(st.integers(0, 4)) == 0:  # a per-turn field, as axolotl's "weight"
        turns[-1][draw(st.sampled_from(["weight", "role", "value", "name"]))] = draw(scalars)
    key = "messages" if speaker == "role" else "conversations"
    record = {key: turns}
    if draw(st.integers(0, 3)) == 0:
        record[draw(st.sampled_from(["id", "output", "system", "instruction", "input", "messages"]))] = draw(values)
    return record


self_instruct = st.fixed_dictionaries({"instruction": texts, "instances": st.lists(
    st.fixed_dictionaries({"input": texts | st.just(""), "output": texts}), min_size=1, max_size=3)},
    optional={"id": values, "is_classification": st.booleans()})
anything = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
records = st.one_of(st.lists(alpaca, min_size=1, max_size=4), st.lists(chats(), min_size=1, max_size=4),
                    st.lists(self_instruct, min_size=1, max_size=3),
                    st.lists(alpaca | chats() | anything, min_size=1, max_size=4))


@st.composite
def json_ish_files(draw) -> bytes:
    """Records as a JSON array or JSONL, then up to three random splices or deletions."""
    objects = draw(records)
    ascii_only = draw(st.booleans())
    if draw(st.booleans()):
        text = json.dumps(objects, indent=draw(st.sampled_from([None, 2])), ensure_ascii=ascii_only)
    else:
        text = "".join(json.dumps(o, ensure_ascii=ascii_only) + "\n" for o in objects)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(SPLICES)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 5)):]
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:  # a stray byte that is not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + bytes([draw(st.integers(0x80, 0xFF))]) + data[at:]
    return data


def pacos(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def check_verdict(code: int, err: str, allowed=(0, 2)) -> None:
    assert code in allowed, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.count("\n") <= 2, err


def check_all_commands(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        code, out, err = pacos("data", "validate", path)
        check_verdict(code, err, (0, 1, 2))
        assert "Traceback" not in out
        accepted = code == 0
        for to in ("messages", "jsonl"):
            out_path = Path(tmp) / f"out-{to}.jsonl"
            code, _, err = pacos("data", "convert", path, out_path, "--to", to)
            check_verdict(code, err)
            if accepted and code != 0:
                # Only a conversion refusal (e.g. a multi-turn chat has no Alpaca form), never a read failure.
                assert err.startswith("pacos: error: record "), err
            if code == 0:
                assert accepted, "convert read a file that validate rejected"
                code, out, err = pacos("data", "validate", out_path)
                assert code == 0, f"convert wrote a file that does not validate: {out}{err}"
        code, _, err = pacos("data", "stats", path)
        check_verdict(code, err)
        assert (code == 0) == accepted
        code, _, err = pacos("data", "dedup", path, Path(tmp) / "dedup.jsonl")
        check_verdict(code, err)
        assert sorted(p.name for p in Path(tmp).iterdir() if p.name.startswith(".")) == []  # no temp left


FUZZ = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=json_ish_files(), name=st.sampled_from(["data.jsonl", "data.json"]))
def test_json_ish_files_get_a_verdict_never_a_traceback(data, name):
    check_all_commands(data, name)


@settings(FUZZ, max_examples=40)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_get_a_verdict_never_a_traceback(data):
    check_all_commands(data, "data.jsonl")
