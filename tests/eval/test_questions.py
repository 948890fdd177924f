"""pacos.eval.questions: every question format of the field read into one shape, matched by a whitespace-blind
key; bad records are one-line DataErrors naming FILE:LINE, whatever the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacos.errors import DataError
from pacos.eval.questions import answer_record, load_answers, load_questions, question_key

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write_lines(path: Path, *objects) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects))
    return path


def test_mt_bench_questions_keep_their_turns_category_and_references():
    fmt, questions, repeats = load_questions(FIXTURES / "mt_bench.jsonl")
    assert fmt == "mt-bench" and not repeats
    assert [q.question_id for q in questions] == ["81", "103", "111"]
    assert [q.category for q in questions] == ["writing", "reasoning", "math"]
    assert all(len(q.turns) == 2 for q in questions)
    assert questions[0].reference is None
    assert questions[1].reference == ("Thomas may work at a hospital.", "")  # an empty turn-2 reference is fine
    assert questions[2].where.endswith("mt_bench.jsonl:3")


def test_vicuna_questions_are_single_turn_mt_bench_records():
    fmt, questions, _ = load_questions(FIXTURES / "vicuna_bench.jsonl")
    assert fmt == "mt-bench"
    assert [(q.question_id, q.category, len(q.turns)) for q in questions] == [
        ("1", "generic", 1), ("21", "roleplay", 1), ("68", "math", 1)]
    assert questions[0].instruction == questions[0].turns[0]


def test_self_instruct_questions_keep_instruction_and_input_apart():
    fmt, questions, _ = load_questions(FIXTURES / "user_oriented.jsonl")
    assert fmt == "self-instruct"
    first = questions[0]
    assert first.question_id == "user_oriented_task_0" and first.category == "Grammarly"
    assert first.input.startswith("If you have any questions about my rate")
    assert first.turns == (f"{first.instruction.strip()}\n\n{first.input.strip()}",)
    assert first.reference[0].startswith("If you have any questions about my rate or find it")


def test_alpaca_and_alpaca_eval_records():
    fmt, questions, _ = load_questions(FIXTURES / "alpaca.json")
    assert fmt == "instruction" and len(questions) == 3
    assert questions[1].input and questions[0].reference  # Alpaca's output is the reference
    fmt, questions, _ = load_questions(FIXTURES / "alpaca_eval.json")
    assert fmt == "alpaca-eval" and questions[0].category == "alpaca_en_1k"
    fmt, baseline = load_answers(FIXTURES / "alpaca_eval.json")
    assert baseline[0].model == "text-davinci-003" and baseline[0].answers[0].startswith("Making crepes")


def test_published_predictions_match_their_questions_despite_whitespace():
    """text-davinci-003's instructions end in "\\n" and " " where the question file's do not: same keys."""
    _, questions, _ = load_questions(FIXTURES / "user_oriented.jsonl")
    fmt, answers = load_answers(FIXTURES / "user_oriented_text-davinci-003.jsonl", model="text-davinci-003")
    assert fmt == "self-instruct-predictions"
    raw = [json.loads(line)["instruction"] for line in (FIXTURES / "user_oriented_text-davinci-003.jsonl").open()]
    assert all(r != r.strip() for r in raw)  # the fixture does exercise the difference
    assert [a.question.key for a in answers] == [q.key for q in questions]
    assert all(a.model == "text-davinci-003" and a.answers[0] for a in answers)
    assert question_key(["  a \n"], " s ") == question_key(["a"], "s") != question_key(["a"])


def test_a_question_asked_twice_is_left_out_and_its_place_listed(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", {"instruction": "Name a colour."}, {"instruction": "Add 2 and 3."},
                       {"instruction": "  Name a colour.\n"})
    _, questions, repeats = load_questions(path)
    assert [q.turns[0] for q in questions] == ["Name a colour.", "Add 2 and 3."]
    assert repeats == [f"{path}:3"]


def test_answer_records_read_back_with_their_metadata(tmp_path):
    _, questions, _ = load_questions(FIXTURES / "mt_bench.jsonl")
    records = [answer_record(q, ["one", "two"], "m", template="alpaca", sampling={"temperature": 0.0})
               for q in questions]
    path = write_lines(tmp_path / "answers.jsonl", *records)
    fmt, answers = load_answers(path)
    assert fmt == "pacos-answers"
    assert [(a.question.key, a.answers, a.model) for a in answers] == [(q.key, ["one", "two"], "m") for q in questions]
    assert answers[1].question.reference == questions[1].reference
    assert answers[0].meta["template"] == "alpaca" and answers[0].meta["sampling"] == {"temperature": 0.0}


MT, SI, INS = '{"turns": ["Fine?"]}', '{"instruction": "Do.", "instances": [{"input": "", "output": "ok"}]}', \
    '{"instruction": "Do."}'


@pytest.mark.parametrize("first, line, reason", [
    (MT, '{"turns": []}', "`turns` must be a non-empty list"),
    (MT, '{"turns": ["hi"], "reference": [3]}', "`reference` must be a list of strings"),
    (SI, '{"instruction": "x", "instances": []}', "`instances` must be a non-empty list"),
    (SI, '{"instruction": "x", "instances": [{"input": 3}]}', "instance 0: `input` must be a string"),
    (INS, '{"instruction": ""}', "`instruction` must be a non-empty string"),
    (INS, '{"input": "x"}', "not a question record"),
    (INS, '[1, 2]', "expected a JSON object"),
    (INS, '{"instruction": "x", ', ""),
    (MT, SI, "a self-instruct record in a mt-bench file"),
])
def test_a_bad_record_is_one_line_naming_file_and_line(tmp_path, first, line, reason):
    path = write_lines(tmp_path / "q.jsonl", first, line)
    with pytest.raises(DataError) as e:
        load_questions(path)
    message = str(e.value)
    assert message.startswith(f"{path}:2") and reason in message and "\n" not in message


def test_an_edited_answer_record_and_a_questions_only_file_are_refused(tmp_path):
    _, questions, _ = load_questions(FIXTURES / "vicuna_bench.jsonl")
    record = answer_record(questions[0], ["an answer"], "m")
    path = write_lines(tmp_path / "a.jsonl", {**record, "turns": ["another question"]})
    with pytest.raises(DataError, match=r"a\.jsonl:1: `key` does not match"):
        load_answers(path)
    with pytest.raises(DataError, match="holds questions, not answers"):
        load_answers(FIXTURES / "mt_bench.jsonl")


FIELDS = ["turns", "instruction", "input", "output", "instances", "question_id", "category", "reference", "system",
          "response", "target", "generator", "dataset", "key", "answers", "model", "id", "motivation_app"]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS + ["x"]),
                                                                                inner, max_size=4), max_leaves=12)
RECORD = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6) | JSON


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(RECORD, min_size=1, max_size=4))
def test_random_json_raises_nothing_but_data_errors(tmp_path, records):
    path = write_lines(tmp_path / "fuzz.jsonl", *[json.dumps(r) for r in records])
    for load in (load_questions, load_answers):
        try:
            load(path)
        except DataError as e:
            assert "\n" not in str(e)
