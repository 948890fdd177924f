"""`validate_file` reports every bad record with its exact location; `pacos data validate` exits accordingly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pacos.data.validate import validate_file

FIXTURES = Path(__file__).parent / "fixtures"  # real records, see fixtures/README.md
GOOD = {"instruction": "Add.", "input": "1 2", "output": "3"}


def chat(*turns, key="messages", speaker="role", text="content"):
    return {key: [{speaker: role, text: content} for role, content in turns]}


def jsonl(tmp_path, *lines, name="data.jsonl") -> Path:
    """A JSONL file whose lines are given as objects (dumped) or raw strings (written as is)."""
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def problems(path, fmt=None) -> list[str]:
    return [str(p) for p in validate_file(path, fmt=fmt)]


# One bad record after a good one, so each location is line 2: (record, exact reason).
BAD_INSTRUCTION_RECORDS = [
    ('{"instruction": "x", "output": ', "malformed JSON: Expecting value (column 32)"),
    ([GOOD], "record is a list, not a JSON object"),
    ("42", "record is a number, not a JSON object"),
    ({"instruction": "x"}, "missing field 'output'"),
    ({"output": "x"}, "missing field 'instruction'"),
    ({"instruction": "x", "input": 3, "output": "y"}, "field 'input' is a number, expected a string"),
    ({"instruction": "x", "output": None}, "field 'output' is null, expected a string"),
    ({"instruction": "x", "output": "  "}, "empty 'output' (nothing to train on)"),
    ({"instruction": "", "output": "y"}, "empty 'instruction'"),
]


@pytest.mark.parametrize("record, reason", BAD_INSTRUCTION_RECORDS)
def test_instruction_record_problems(tmp_path, record, reason):
    path = jsonl(tmp_path, GOOD, record)
    assert problems(path) == [f"{path}:2: {reason}"]


BAD_CONVERSATIONS = [
    (chat(("user", "Hi"), ("tool", "x"), ("assistant", "ok")),
     "messages[1]: unknown role 'tool' (expected one of 'system', 'user', 'assistant')"),
    (chat(("user", "Hi"), ("user", "Again"), ("assistant", "ok")),
     "messages[1]: expected assistant after user, got user (turns must alternate user/assistant)"),
    (chat(("assistant", "Hello"), ("user", "Hi"), ("assistant", "ok")),
     "messages[0]: expected user first, got assistant (turns must alternate user/assistant)"),
    (chat(("user", "Hi"), ("assistant", "ok"), ("system", "late"), ("assistant", "x")),
     "messages[2]: a system message may only come first"),
    (chat(("user", "Hi"), ("assistant", "ok"), ("user", "Bye")),
     "conversation ends with a user turn; the last turn must be the assistant's"),
    (chat(), "empty conversation: 'messages' has no turns"),
    (chat(("system", "Be nice.")), "conversation has only a system message; it needs user and assistant turns"),
    (chat(("user", "Hi"), ("assistant", "")), "messages[1]: empty 'content'"),
    ({"messages": [{"role": "user"}]}, "missing field messages[0].'content'"),
    ({"messages": [{"role": "user", "content": ["a"]}]}, "field messages[0].'content' is a list, expected a string"),
    ({"messages": "Hi"}, "field 'messages' is a string, expected a list of turns"),
    ({"messages": ["Hi"]}, "messages[0] is a string, not a JSON object"),
    ({"id": 3}, "missing field 'messages'"),
]


@pytest.mark.parametrize("record, reason", BAD_CONVERSATIONS)
def test_messages_problems(tmp_path, record, reason):
    path = jsonl(tmp_path, chat(("user", "Hi"), ("assistant", "Hello")), record)
    assert problems(path) == [f"{path}:2: {reason}"]


def test_sharegpt_unknown_from_and_alternation(tmp_path):
    good = chat(("human", "Hi"), ("gpt", "Hello"), key="conversations", speaker="from", text="value")
    unknown = chat(("human", "Hi"), ("bot", "x"), key="conversations", speaker="from", text="value")
    twice = chat(("human", "Hi"), ("gpt", "a"), ("gpt", "b"), key="conversations", speaker="from", text="value")
    path = tmp_path / "s.json"
    path.write_text(json.dumps([good, unknown, twice]), encoding="utf-8")
    assert problems(path) == [
        f"{path}[1]: conversations[1]: unknown from 'bot' (expected one of 'human', 'user', 'gpt', 'assistant', "
        "'system')",
        f"{path}[2]: conversations[2]: expected user after assistant, got assistant "
        "(turns must alternate user/assistant)",
    ]


def test_self_instruct_problems(tmp_path):
    task = {"id": "t", "instruction": "Add.", "instances": [{"input": "1 2", "output": "3"}]}
    path = jsonl(tmp_path, task, {**task, "instances": []}, {"id": "t2", "instruction": "x"},
                 {**task, "instances": [{"input": "a", "output": "b"}, {"input": "c"}]})
    assert problems(path) == [
        f"{path}:2: no 'instances' (empty); a self-instruct task needs a list of {{input, output}}",
        f"{path}:3: no 'instances' (missing); a self-instruct task needs a list of {{input, output}}",
        f"{path}:4: missing field instances[1].'output'",
    ]


def test_every_bad_record_is_reported_in_file_order(tmp_path):
    path = jsonl(tmp_path, GOOD, "not json", "", {"instruction": "x"}, GOOD, {"instruction": "x", "output": ""})
    assert problems(path) == [
        f"{path}:2: malformed JSON: Expecting value (column 1)",
        f"{path}:4: missing field 'output'",
        f"{path}:6: empty 'output' (nothing to train on)",
    ]


def test_json_array_reports_indices(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([GOOD, {"instruction": "x"}, GOOD, "oops"]), encoding="utf-8")
    assert problems(path) == [f"{path}[1]: missing field 'output'", f"{path}[3]: record is a string, not a JSON object"]


def test_malformed_json_array_names_the_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "x", "output": "y"},\n  {"instruction": "x",}\n]\n', encoding="utf-8")
    assert problems(path) == [f"{path}:3: malformed JSON: Expecting property name enclosed in double quotes "
                              "(column 23)"]


def test_not_utf8_jsonl_reports_the_line_and_keeps_checking(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"instruction": "caf\xe9", "output": "x"}\n{"instruction": "x"}\n')
    assert problems(path) == [
        f"{path}:1: not UTF-8: byte 0xe9 at byte offset 20; re-save the file as UTF-8",
        f"{path}:2: missing field 'output'",
    ]


def test_empty_file_and_unknown_shape(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert problems(empty) == [f"{empty}: empty file: no records"]
    odd = jsonl(tmp_path, {"question": "q", "answer": "a"})
    assert problems(odd)[0].startswith(f"{odd}: cannot tell the format from the record keys (answer, question)")


def test_explicit_format_checks_every_record_against_it(tmp_path):
    path = jsonl(tmp_path, GOOD, chat(("user", "Hi"), ("assistant", "Hello")))
    assert problems(path, fmt="messages") == [f"{path}:1: missing field 'messages'"]
    assert problems(path) == [f"{path}:2: missing field 'instruction'"]


def test_clean_files_have_no_problems(tmp_path):
    for name in ("seed_tasks_40.jsonl", "alpaca_60.json"):
        assert validate_file(FIXTURES / name) == []
    assert validate_file(jsonl(tmp_path, GOOD)) == []


# --- the CLI end to end -----------------------------------------------------------------------------------------


def pacos(*args):
    return subprocess.run([sys.executable, "-m", "pacos.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def test_cli_validate_clean_file_exits_0(tmp_path):
    result = pacos("data", "validate", jsonl(tmp_path, GOOD))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok")


def test_cli_validate_bad_files_exit_non_zero_without_traceback(tmp_path):
    bad = jsonl(tmp_path, GOOD, "{", {"instruction": "x"})
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'[{"instruction": "caf\xe9", "output": "x"}]')
    empty = tmp_path / "empty.json"
    empty.write_text("", encoding="utf-8")
    for path, lines in ((bad, 2), (latin1, 1), (empty, 1), (tmp_path / "missing.json", 0)):
        result = pacos("data", "validate", path)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert len(result.stdout.splitlines()) == lines
        assert all(line.startswith(str(path)) for line in result.stdout.splitlines())
    assert pacos("data", "validate", bad).stdout.splitlines()[0] == f"{bad}:2: malformed JSON: " \
        "Expecting property name enclosed in double quotes (column 2)"


def test_cli_convert_and_stats(tmp_path):
    src = jsonl(tmp_path, GOOD)
    out = tmp_path / "out.json"
    result = pacos("data", "convert", src, out, "--to", "messages")
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8"))[0]["messages"][0] == {"role": "user", "content": "Add.\n\n1 2"}
    result = pacos("data", "convert", jsonl(tmp_path, GOOD, {"instruction": "x"}, name="bad.jsonl"), out, "--to", "jsonl")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "bad.jsonl:2: missing field 'output'" in result.stderr
    result = pacos("data", "stats", src, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 1
