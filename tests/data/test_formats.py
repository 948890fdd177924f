"""Loading, detecting, converting and atomically saving every data format."""

import json
import os
from pathlib import Path

import pytest

from pacos.data.formats import FORMATS, detect_format, load_records, save_records
from pacos.data.records import Conversation, Example, Message
from pacos.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"  # real records, see fixtures/README.md

ALPACA = [
    {"instruction": "Reverse the word.", "input": "pacos", "output": "socap", "task": "reverse"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
]
SHAREGPT = [
    {"id": "c1", "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."},
        {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4", "weight": 1},
    ]},
]
MESSAGES = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}]
SELF_INSTRUCT = [
    {"id": "seed_task_0", "name": "add", "instruction": "Add the numbers.", "is_classification": False,
     "instances": [{"input": "1 2", "output": "3"}, {"input": "2 2", "output": "4"}]},
    {"id": "seed_task_1", "name": "joke", "instruction": "Tell a joke.", "is_classification": False,
     "instances": [{"input": "", "output": "A pun."}]},
]


def write_json(path: Path, objs) -> Path:
    path.write_text(json.dumps(objs, indent=2), encoding="utf-8")
    return path


def write_jsonl(path: Path, objs) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def test_real_seed_tasks_load_one_example_per_instance():
    path = FIXTURES / "seed_tasks_40.jsonl"
    tasks = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    records = load_records(path)
    assert detect_format(path) == "self-instruct"
    assert len(records) == sum(len(t["instances"]) for t in tasks)
    first = records[0]
    assert first.instruction == tasks[0]["instruction"] and first.output == tasks[0]["instances"][0]["output"]
    assert first.extra == {"id": "seed_task_0", "name": "breakfast_suggestion", "is_classification": False}


def test_real_alpaca_file_loads_every_record():
    path = FIXTURES / "alpaca_60.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    records = load_records(path)
    assert detect_format(path) == "alpaca"
    assert [(r.instruction, r.input, r.output) for r in records] == [
        (o["instruction"], o["input"], o["output"]) for o in raw]
    assert all(isinstance(r, Example) and r.extra == {} for r in records)
    assert 0 < sum(1 for r in records if r.input) < len(records)


def test_alpaca_array_and_jsonl(tmp_path):
    array = write_json(tmp_path / "a.json", ALPACA)
    lines = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    assert detect_format(array) == "alpaca" and detect_format(lines) == "jsonl"
    expected = [Example("Reverse the word.", "pacos", "socap", {"task": "reverse"}), Example("Name a colour.", "", "Blue.")]
    assert load_records(array) == expected == load_records(lines)


def test_input_is_optional(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Say hi.", "output": "hi"}])
    assert load_records(path) == [Example("Say hi.", "", "hi")]


def test_sharegpt_json_and_jsonl_with_aliases(tmp_path):
    expected = Conversation(
        [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello."),
         Message("user", "2+2?"), Message("assistant", "4")],
        {"id": "c1", "message_extra": [{}, {}, {}, {}, {"weight": 1}]},
    )
    assert detect_format(write_json(tmp_path / "s.json", SHAREGPT)) == "sharegpt"
    assert load_records(tmp_path / "s.json") == [expected]
    assert load_records(write_jsonl(tmp_path / "s.jsonl", SHAREGPT)) == [expected]
    aliased = [{"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello."}]}]
    assert load_records(write_jsonl(tmp_path / "alias.jsonl", aliased))[0].messages[1].role == "assistant"


def test_messages_json_and_jsonl(tmp_path):
    expected = [Conversation([Message("user", "Hi"), Message("assistant", "Hello.")])]
    assert detect_format(write_jsonl(tmp_path / "m.jsonl", MESSAGES)) == "messages"
    assert detect_format(write_json(tmp_path / "m.json", MESSAGES)) == "messages"
    assert load_records(tmp_path / "m.jsonl") == expected == load_records(tmp_path / "m.json")


def test_self_instruct_keeps_task_fields(tmp_path):
    records = load_records(write_jsonl(tmp_path / "seed.jsonl", SELF_INSTRUCT))
    assert [(r.instruction, r.input, r.output) for r in records] == [
        ("Add the numbers.", "1 2", "3"), ("Add the numbers.", "2 2", "4"), ("Tell a joke.", "", "A pun.")]
    assert records[2].extra == {"id": "seed_task_1", "name": "joke", "is_classification": False}


def test_detection_prefers_conversation_keys_over_leftover_instruction(tmp_path):
    # A converted one-turn chat keeps `instruction`/`input` as extra fields; it is still a messages file.
    obj = {**MESSAGES[0], "instruction": "Hi", "input": "x"}
    assert detect_format(write_jsonl(tmp_path / "m.jsonl", [obj])) == "messages"


def test_detection_skips_a_broken_first_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": \n' + json.dumps(ALPACA[0]) + "\n", encoding="utf-8")
    assert detect_format(path) == "jsonl"


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"\n  \n", "empty file"),
    (b"[]", "empty JSON array"),
    (b'{"prompt": "a", "completion": "b"}\n', "cannot tell the format from the record keys (completion, prompt)"),
    (b'{\n  "instruction": "a",\n  "output": "b"\n}\n', "one JSON object over several lines"),
])
def test_detection_errors_are_clear(tmp_path, content, reason):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        detect_format(path)
    assert str(e.value).startswith(str(path)) and reason in str(e.value)


def test_non_utf8_names_the_line_and_byte_offset(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not UTF-8: byte 0xe9 at byte offset 56;"):
        load_records(path)
    array = tmp_path / "bad.json"
    array.write_bytes(b'[\n{"instruction": "caf\xe9", "output": "x"}]')
    with pytest.raises(DataError, match=r"bad\.json:2: not UTF-8: byte 0xe9 at byte offset 22;"):
        load_records(array)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_records(tmp_path / "nope.json")
    with pytest.raises(DataError, match="unknown data format 'csv'"):
        load_records(write_json(tmp_path / "a.json", ALPACA), fmt="csv")


def test_load_names_the_first_bad_record_and_points_to_validate(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n\n" + '{"instruction": "x"}\n' + '{"output": 1}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_records(path)
    assert str(e.value) == (f"{path}:3: missing field 'output' "
                            f"(run `pacos data validate {path}` to see every bad record)")
    array = write_json(tmp_path / "a.json", [ALPACA[0], {"instruction": "x", "output": ""}])
    with pytest.raises(DataError, match=r"a\.json\[1\]: empty 'output'"):
        load_records(array)


def test_records_without_output_load_for_inference(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"instruction": "Say hi."}])
    assert load_records(path, require_output=False) == [Example("Say hi.", "", "")]
    chat = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "Hi"}]}])
    assert load_records(chat, require_output=False)[0].messages == [Message("user", "Hi")]


def test_blank_lines_and_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "a.jsonl"
    body = "\r\n".join(json.dumps(o) for o in ALPACA) + "\r\n\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert len(load_records(path)) == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_explicit_format_reads_its_records(tmp_path, fmt):
    data = {"alpaca": ALPACA, "jsonl": ALPACA, "sharegpt": SHAREGPT, "messages": MESSAGES,
            "self-instruct": SELF_INSTRUCT}[fmt]
    assert load_records(write_jsonl(tmp_path / "x.jsonl", data), fmt=fmt)


# --- saving and conversion ------------------------------------------------------------------------------------


def test_alpaca_writes_an_indented_json_array_and_jsonl_one_object_per_line(tmp_path):
    records = load_records(write_json(tmp_path / "in.json", ALPACA))
    save_records(records, tmp_path / "out.json", "alpaca")
    text = (tmp_path / "out.json").read_text(encoding="utf-8")
    assert text == json.dumps(ALPACA, indent=2, ensure_ascii=False) + "\n"
    save_records(records, tmp_path / "out.jsonl", "jsonl")
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == ALPACA


def test_non_ascii_is_written_as_is(tmp_path):
    save_records([Example("Traduis.", "chat", "猫 \u2028 é")], tmp_path / "o.jsonl", "jsonl")
    assert "猫 \u2028 é" in (tmp_path / "o.jsonl").read_text(encoding="utf-8")
    assert load_records(tmp_path / "o.jsonl")[0].output == "猫 \u2028 é"


@pytest.mark.parametrize("via", ["messages", "sharegpt"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_alpaca_to_chat_and_back_is_lossless(tmp_path, via, suffix):
    original = ALPACA + [{"instruction": "Be terse.", "input": "", "output": "ok", "system": "You are terse.",
                          "id": 7, "meta": {"source": "x"}}]
    records = load_records(write_json(tmp_path / "in.json", original))
    save_records(records, tmp_path / f"chat{suffix}", via)
    assert detect_format(tmp_path / f"chat{suffix}") == via
    chats = load_records(tmp_path / f"chat{suffix}")
    assert all(isinstance(c, Conversation) for c in chats)
    assert chats[2].system == "You are terse."
    save_records(chats, tmp_path / "back.json", "alpaca")
    assert load_records(tmp_path / "back.json") == records
    assert json.loads((tmp_path / "back.json").read_text(encoding="utf-8")) == original


def test_real_alpaca_round_trips_through_messages(tmp_path):
    records = load_records(FIXTURES / "alpaca_60.json")
    save_records(records, tmp_path / "m.jsonl", "messages")
    save_records(load_records(tmp_path / "m.jsonl"), tmp_path / "a.json", "alpaca")
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == json.loads(
        (FIXTURES / "alpaca_60.json").read_text(encoding="utf-8"))


def test_sharegpt_and_messages_round_trip_losslessly(tmp_path):
    records = load_records(write_jsonl(tmp_path / "s.jsonl", SHAREGPT))
    save_records(records, tmp_path / "m.jsonl", "messages")
    as_messages = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()]
    assert as_messages[0]["messages"][4] == {"role": "assistant", "content": "4", "weight": 1}
    assert load_records(tmp_path / "m.jsonl") == records
    save_records(load_records(tmp_path / "m.jsonl"), tmp_path / "s2.jsonl", "sharegpt")
    assert [json.loads(line) for line in (tmp_path / "s2.jsonl").read_text(encoding="utf-8").splitlines()] == SHAREGPT


def test_self_instruct_saves_as_jsonl_with_task_fields(tmp_path):
    records = load_records(write_jsonl(tmp_path / "seed.jsonl", SELF_INSTRUCT))
    save_records(records, tmp_path / "out.jsonl", "jsonl")
    assert load_records(tmp_path / "out.jsonl") == records
    with pytest.raises(DataError, match="read-only"):
        save_records(records, tmp_path / "x.jsonl", "self-instruct")


def test_multi_turn_to_alpaca_names_the_record_and_writes_nothing(tmp_path):
    records = load_records(write_jsonl(tmp_path / "m.jsonl", MESSAGES))
    records += load_records(write_jsonl(tmp_path / "s.jsonl", SHAREGPT))
    with pytest.raises(DataError, match="record 2 of 2: a conversation with 4 turns has no Alpaca form"):
        save_records(records, tmp_path / "out" / "a.json", "alpaca")
    assert not (tmp_path / "out").exists()


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    target = write_json(tmp_path / "a.json", ALPACA)
    before = target.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_records([Example("x", "", "y")], target, "alpaca")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_save_rejects_unknown_format(tmp_path):
    with pytest.raises(DataError, match="unknown data format 'csv'"):
        save_records([Example("x", "", "y")], tmp_path / "a.csv", "csv")
