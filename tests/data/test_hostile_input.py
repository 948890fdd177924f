"""Hostile and unlucky data files: each refusal is one FILE:LINE / FILE[index] line and a non-zero exit, never a
traceback; non-regular files are refused at once; atomic writes get normal modes and leave no temp files."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from pacos.cli import INTERNAL_ERROR_EXIT, main
from pacos.data.atomic_write import write_objects
from pacos.data.formats import load_records
from pacos.data.raw_files import read_raw
from pacos.data.validate import validate_file
from pacos.errors import DataError

GOOD = '{"instruction": "Add.", "input": "1 2", "output": "3"}'
# Each hostile record (one JSON line) and the reason the loaders give; each parses with Python's json module
# (or fails in it with something other than a clean JSONDecodeError).
HOSTILE = {
    "deep nesting": ('{"instruction": "a", "output": "b", "x": ' + "[" * 5000 + "]" * 5000 + "}",
                     "nested more than 100 levels deep"),
    "5000-digit integer": ('{"instruction": "a", "output": "b", "n": ' + "7" * 5000 + "}",
                           "an integer of 5000 digits (at most 100 are accepted)"),
    "NaN": ('{"instruction": "a", "output": NaN}', "NaN is not valid JSON"),
    "Infinity": ('{"instruction": "a", "output": "b", "w": -Infinity}', "-Infinity is not valid JSON"),
    "huge float": ('{"instruction": "a", "output": "b", "w": 1e400}', "the number 1e400 is too large"),
    "duplicate key": ('{"instruction": "a", "output": "b", "output": "c"}', "duplicate key 'output' in one object"),
    "lone surrogate": ('{"instruction": "\\ud800", "output": "b"}', "a lone UTF-16 surrogate escape"),
}


def write(tmp_path, name, lines, array):
    path = tmp_path / name
    body = "[\n" + ",\n".join(lines) + "\n]\n" if array else "\n".join(lines) + "\n"
    path.write_text(body, encoding="utf-8")
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("array", [False, True], ids=["jsonl", "array"])
@pytest.mark.parametrize("kind", HOSTILE)
def test_each_hostile_record_is_one_located_line_in_every_command(tmp_path, capsys, kind, array):
    record, reason = HOSTILE[kind]
    path = write(tmp_path, "in.json" if array else "in.jsonl", [GOOD, record, GOOD], array)
    where = f"{path}[1]: " if array else f"{path}:2: "

    code, out, err = run(capsys, "data", "validate", path)
    assert code == 1 and "Traceback" not in out + err
    assert out.splitlines() == [out.splitlines()[0]] and out.startswith(where + reason)
    if array:  # an array item names its line too, so it can be found in an indented file
        assert "(line 3" in out

    for argv in (["convert", path, tmp_path / "out.json", "--to", "messages"], ["stats", path],
                 ["dedup", path, tmp_path / "out.json"]):
        code, out, err = run(capsys, "data", *argv)
        assert code == 2, argv
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"pacos: error: {where}{reason}")
    assert not (tmp_path / "out.json").exists()


def test_array_keeps_reading_after_bad_items(tmp_path):
    lines = [GOOD, HOSTILE["NaN"][0], GOOD, HOSTILE["duplicate key"][0],
             "[" * 100_000 + "]" * 100_000, '{"instruction": "x"}', GOOD]  # deeper than Python's recursion limit
    path = write(tmp_path, "a.json", lines, array=True)
    problems = [str(p) for p in validate_file(path)]
    assert [p.split(":")[0] for p in problems] == [f"{path}[1]", f"{path}[3]", f"{path}[4]", f"{path}[5]"]
    assert "NaN is not valid JSON" in problems[0] and "(line 3, column" in problems[0]
    assert "duplicate key" in problems[1] and "(line 5)" in problems[1]
    assert "nested more than 100 levels deep" in problems[2]
    assert problems[3] == f"{path}[5]: missing field 'output'"
    assert [e.obj for e in read_raw(path).entries if e.error is None][-1] == json.loads(GOOD)


@pytest.mark.parametrize("body, line, reason", [
    (f"[\n{GOOD}\n{GOOD}\n]", 3, "malformed JSON: Expecting ',' delimiter (column 1)"),
    (f"[\n{GOOD},\n]", 3, "malformed JSON: Illegal trailing comma before end of array (column 1)"),
    (f"[\n{GOOD},\n{GOOD}", 3, "malformed JSON: the array is not closed (expecting ']')"),
    (f"[\n{GOOD}\n] []", 3, "malformed JSON: Extra data after the array (column 3)"),
    (f'[\n{GOOD},\n{{"instruction": NaN, "output": }}\n]', 3, "malformed JSON: Expecting value"),
])
def test_array_syntax_errors_are_file_level_with_the_line(tmp_path, body, line, reason):
    # Past a syntax error nothing says where the next item starts, so the file is refused at that line.
    path = tmp_path / "a.json"
    path.write_text(body, encoding="utf-8")
    problems = [str(p) for p in validate_file(path)]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:{line}: {reason}")


def test_pretty_printed_object_with_hostile_content_is_not_mistaken_for_one_record(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{\n  "instruction": "a",\n  "output": NaN\n}\n', encoding="utf-8")
    problems = [str(p) for p in validate_file(path)]
    assert problems and all(p.startswith(f"{path}:") for p in problems)


def test_a_lone_surrogate_validate_misses_would_crash_convert(tmp_path, capsys):
    # Before strict reading, validate said "ok" here and convert crashed writing UTF-8.
    path = write(tmp_path, "in.jsonl", ['{"instruction": "a", "output": "b\\udfff"}'], array=False)
    assert run(capsys, "data", "validate", path)[0] == 1
    with pytest.raises(DataError, match="lone UTF-16 surrogate"):
        load_records(path)
    # A valid pair of escapes is one character and loads.
    pair = write(tmp_path, "pair.jsonl", ['{"instruction": "a", "output": "\\ud83d\\ude00"}'], array=False)
    assert load_records(pair)[0].output == "\U0001F600"


def test_system_field_is_checked_because_templates_and_conversion_use_it(tmp_path, capsys):
    path = write(tmp_path, "in.jsonl", [GOOD, '{"instruction": "a", "output": "b", "system": 5}',
                                        '{"instruction": "a", "output": "b", "system": "  "}',
                                        '{"instruction": "a", "output": "b", "system": ""}'], array=False)
    assert [str(p) for p in validate_file(path)] == [
        f"{path}:2: field 'system' is a number, expected a string",
        f"{path}:3: blank 'system' (write a system prompt or remove the field)"]


@pytest.mark.parametrize("record, to, reason", [
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "output": 5},
     "alpaca", "record 1 of 1: the conversation has its own 'output' field"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "system": []},
     "jsonl", "record 1 of 1: the conversation has its own 'system' field"),
    ({"conversations": [{"from": "human", "value": "Hi", "role": "system"}, {"from": "gpt", "value": "Yo"}]},
     "messages", "record 1 of 1: messages[0]: extra field 'role' has the name of a field this format writes"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}], "messages": 1},
     "messages", "record 1 of 1: extra field 'messages' has the name of a field this format writes"),
    # Found by the fuzz test: an extra field named like another format's key changed the written file's format.
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}], "messages": None},
     "jsonl", "record 1 of 1: its extra field 'messages' would make the written record read as messages"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "instances": []},
     "alpaca", "record 1 of 1: its extra field 'instances' would make the written record read as self-instruct"),
])
def test_conversion_refuses_fields_that_would_overwrite_the_converted_record(tmp_path, capsys, record, to, reason):
    # Written as is, these made files that the next `pacos data validate` rejects.
    path = write(tmp_path, "in.jsonl", [json.dumps(record)], array=False)
    assert validate_file(path) == []
    code, _, err = run(capsys, "data", "convert", path, tmp_path / "out.jsonl", "--to", to)
    assert code == 2 and err.startswith(f"pacos: error: {reason}") and err.count("\n") == 1
    assert not (tmp_path / "out.jsonl").exists()


# --- files that are not regular files ---------------------------------------------------------------------------


def pacos(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "pacos.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", [["validate"], ["convert", "--to", "jsonl"], ["stats"], ["dedup"]])
def test_fifo_is_refused_at_once(tmp_path, command):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would block forever
    name, *flags = command
    outputs = [tmp_path / "out.jsonl"] if name in ("convert", "dedup") else []
    result = pacos("data", name, fifo, *outputs, *flags, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"pacos: error: {fifo}: is a FIFO (named pipe), not a regular file; save the data " \
                            "to a file first\n"


def test_devices_and_directories_are_refused(tmp_path, capsys):
    code, _, err = run(capsys, "data", "validate", "/dev/zero")
    assert code == 2 and err == "pacos: error: /dev/zero: is a character device, not a regular file; " \
                                "save the data to a file first\n"
    code, _, err = run(capsys, "data", "stats", tmp_path)
    assert code == 2 and err == f"pacos: error: {tmp_path}: is a directory, expected a data file\n"


# --- writing ------------------------------------------------------------------------------------------------------


@pytest.fixture
def umask():
    def set_umask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


def test_written_files_get_the_umask_mode_or_keep_the_replaced_files_mode(tmp_path, umask):
    umask(0o022)
    write_objects([{"a": 1}], tmp_path / "new.jsonl", as_lines=True)
    assert stat.S_IMODE(os.stat(tmp_path / "new.jsonl").st_mode) == 0o644
    umask(0o027)
    write_objects([{"a": 1}], tmp_path / "private.json", as_lines=False)
    assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o640
    os.chmod(tmp_path / "new.jsonl", 0o604)
    write_objects([{"a": 2}], tmp_path / "new.jsonl", as_lines=True)
    assert stat.S_IMODE(os.stat(tmp_path / "new.jsonl").st_mode) == 0o604
    assert (tmp_path / "new.jsonl").read_text() == '{"a": 2}\n'


CRASHING_WRITER = textwrap.dedent("""
    import os, signal, sys
    from pacos.data import atomic_write
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die after writing, before the rename
    atomic_write.write_objects([{"instruction": "x", "output": "y"}] * 1000, sys.argv[1], as_lines=True)
""")


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text('{"old": true}\n')
    killed = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(target)], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".out.jsonl.")
    assert target.read_text() == '{"old": true}\n'  # the crash never touched the target
    # Temp files of a live writer (this process) and of another target sharing the prefix are not ours to remove.
    live = tmp_path / f".out.jsonl.{os.getpid()}.0123abcd.tmp"
    dead_pid = leftovers[0].split(".")[3]
    other = tmp_path / f".out.jsonl.5.{dead_pid}.0123abcd.tmp"  # the temp file of target "out.jsonl.5"
    live.write_text("")
    other.write_text("")
    write_objects([{"new": True}], target, as_lines=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.jsonl", live.name, other.name])
    assert target.read_text() == '{"new": true}\n'


def test_unwritable_output_is_one_line(tmp_path, capsys):
    src = write(tmp_path, "in.jsonl", [GOOD], array=False)
    (tmp_path / "out.json").mkdir()
    code, _, err = run(capsys, "data", "convert", src, tmp_path / "out.json", "--to", "alpaca")
    assert code == 2 and err.startswith(f"pacos: error: {tmp_path / 'out.json'}: cannot write (") and \
        err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --- the top-level safety net -------------------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_with_a_pointer_to_debug(tmp_path, capsys, monkeypatch):
    # A bug (not a user error) stands in for whatever the suite has not found yet.
    import pacos.data.validate

    def buggy(*args, **kwargs):
        raise KeyError("something internal\nover two lines")

    monkeypatch.setattr(pacos.data.validate, "validate_file", buggy)
    path = write(tmp_path, "in.jsonl", [GOOD], array=False)
    code, _, err = run(capsys, "data", "validate", path)
    assert code == INTERNAL_ERROR_EXIT and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("pacos: internal error: KeyError: 'something internal") and "pacos --debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "data", "validate", str(path)])
