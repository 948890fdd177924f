"""The original two-stage Self-Instruct pipeline: its prompts and parsers, and a run against the double."""


from test_loop import read_jsonl, run_config

from pacos.self_instruct.loop import generate
from pacos.self_instruct.prompt import SeedTask
from pacos.self_instruct.store import raw_log_path
from pacos.self_instruct.two_stage import (
    bootstrap_prompt,
    classify_prompt,
    instance_prompt,
    parse_bootstrap,
    parse_instance,
)


def test_bootstrap_prompt_and_parse():
    assert bootstrap_prompt(["Sort  numbers.", "Name a\ncolour."]).endswith(
        "Task 1: Sort numbers.\nTask 2: Name a colour.\nTask 3:")
    assert parse_bootstrap(" Add two numbers.\nTask 4: Name a river.\nTask 5: Give", "length") == (
        ["Add two numbers.", "Name a river."], 1)
    assert parse_bootstrap("Task 3: Add two numbers.\nTask 4: Name a river.", "stop") == (
        ["Add two numbers.", "Name a river."], 0)


def test_instance_prompts_are_output_first_for_classification():
    seeds = [SeedTask("Is the review positive?", "Great film", "Positive", True)]
    assert classify_prompt(seeds, "Detect spam.").endswith(
        "Task: Is the review positive?\nIs it classification? Yes\n\nTask: Detect spam.\nIs it classification?")
    assert instance_prompt(seeds, "Detect spam.", True).endswith(
        "Class label: Positive\nInput: Great film\n\nTask: Detect spam.\nClass label:")
    assert instance_prompt(seeds, "Say hi.", False).endswith("Task: Say hi.\nInput:")
    assert parse_instance(" Spam\nInput: WIN A PRIZE now", True) == ("WIN A PRIZE now", "Spam")
    assert parse_instance(" <noinput>\nOutput: Hi!\n\nTask: other", False) == ("", "Hi!")
    assert parse_instance(" just text", False) is None


def test_two_stage_run_is_deterministic_and_labels_classification(teacher, tmp_path):
    a = generate(run_config(teacher, tmp_path / "a.jsonl", n=20, pipeline="self-instruct", concurrency=1))
    generate(run_config(teacher, tmp_path / "b.jsonl", n=20, pipeline="self-instruct", concurrency=5))
    records = read_jsonl(tmp_path / "a.jsonl")
    assert records == read_jsonl(tmp_path / "b.jsonl") and len(records) == 20
    assert {r["is_classification"] for r in records} == {True, False}
    assert all(r["output"] for r in records)
    assert a.totals.discards["no_instance"] > 0
    log = read_jsonl(raw_log_path(tmp_path / "a.jsonl"))
    assert all(e["pipeline"] == "self-instruct" and "stage2" in e for e in log)
