"""Prompt building, answer parsing and Alpaca's filters: pure functions on known text."""

import pytest
from teacher_double import JUNK, SEEDS

from pacos.errors import DataError
from pacos.self_instruct.filters import rejection_reason
from pacos.self_instruct.parse import Candidate, parse_answer
from pacos.self_instruct.prompt import (
    REQUIREMENTS,
    STOP_SEQUENCES,
    SeedTask,
    build_prompt,
    load_seed_tasks,
    sample_examples,
)


def test_prompt_numbers_examples_and_ends_with_the_next_instruction():
    prompt = build_prompt([SeedTask("Sort the list:", "3, 1, 2", "1, 2, 3"), SeedTask("Tell me  a\nfact.", "", "Water is wet.")])
    assert prompt == REQUIREMENTS + (
        "###\n1. Instruction: Sort the list\n1. Input:\n3, 1, 2\n1. Output:\n1, 2, 3\n"
        "###\n2. Instruction: Tell me a fact.\n2. Input:\n<noinput>\n2. Output:\nWater is wet.\n"
        "###\n3. Instruction:"
    )
    assert "20" in REQUIREMENTS and any("20." in s for s in STOP_SEQUENCES)


def test_seed_tasks_load_and_sampling_is_fixed_by_seed_and_batch():
    seeds = load_seed_tasks(SEEDS)
    assert len(seeds) == 40 and any(s.is_classification for s in seeds)
    assert sample_examples(seeds, 3, 0, 5, 1) == sample_examples(seeds, 3, 0, 5, 1)
    assert sample_examples(seeds, 3, 0, 5, 1) != sample_examples(seeds, 3, 0, 6, 1)
    assert len(set(s.instruction for s in sample_examples(seeds, 3, 1, 0, 0))) == 3


def test_bad_seed_file_names_the_line(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"instruction": "Do it.", "instances": [{"input": "", "output": "ok"}]}\n{"instruction": "x"}\n')
    with pytest.raises(DataError, match="seeds.jsonl:2: seed task has no 'instances'"):
        load_seed_tasks(path)


COMPLETION = """ Name three fruits that are red.
4. Input:
<noinput>
4. Output:
Strawberry, cherry, raspberry.
###
5. Instruction: Summarize the paragraph in one sentence.
5. Input:
The cat sat on the mat. It was happy.
5. Output:
### Summary
A happy cat sat on a mat.
###
6. Instruction: Translate to French.
6. Input:
Hello
6. Outp"""


def test_completions_answer_continues_the_open_instruction():
    parsed = parse_answer(COMPLETION, 4, "stop")
    assert parsed.candidates[:2] == [
        Candidate("Name three fruits that are red.", "", "Strawberry, cherry, raspberry."),
        Candidate("Summarize the paragraph in one sentence.", "The cat sat on the mat. It was happy.",
                  "### Summary\nA happy cat sat on a mat."),  # a markdown heading is not a separator
    ]
    assert parsed.malformed == 1 and parsed.truncated == 0  # the cut third block


def test_length_cut_drops_the_last_block_even_if_it_parses():
    parsed = parse_answer(COMPLETION.rsplit("###", 1)[0], 4, "length")
    assert [c.instruction for c in parsed.candidates] == ["Name three fruits that are red."]
    assert parsed.truncated == 1 and parsed.malformed == 0


def test_chat_answer_may_repeat_the_number_after_a_preamble():
    chat = "Sure! Here are the tasks:\n\n4. Instruction:" + COMPLETION.rsplit("###", 1)[0]
    parsed = parse_answer(chat, 4, "stop")
    assert [c.instruction for c in parsed.candidates] == [
        "Name three fruits that are red.", "Summarize the paragraph in one sentence."]
    assert parsed.malformed == 0


def test_numbers_must_agree_within_a_block():
    parsed = parse_answer(" Do a thing well.\n5. Input:\n<noinput>\n4. Output:\nDone.", 4, "stop")
    assert parsed.candidates == [] and parsed.malformed == 1


@pytest.mark.parametrize("reason, instruction, output", JUNK)
def test_each_filter_names_its_reason(reason, instruction, output):
    assert rejection_reason(Candidate(instruction, "", output)) == reason


@pytest.mark.parametrize("instruction", [
    "Create a profile summary for a software engineer.",  # "file" inside a word
    "Explain the mapping between keys and values.",
    "Summarize the plot twist of a famous novel.".replace("plot", "story"),
    "Write a poem about programs and programmers.",
])
def test_clean_instructions_pass(instruction):
    assert rejection_reason(Candidate(instruction, "", "An answer.")) is None


@pytest.mark.parametrize("instruction", ["Please GO TO the store and buy milk.", "How do I read these Files quickly?",
                                         "write a program for sorting numbers"])
def test_blacklist_and_program_are_case_insensitive(instruction):
    assert rejection_reason(Candidate(instruction, "", "x")) in ("blacklisted", "write_a_program")
