"""`pacos self-instruct --language zh` end to end through the CLI, against the loopback teacher answering in Chinese."""

import json
import shutil

import pytest
from teacher_double import SEEDS, ZH_JUNK, ZH_SEEDS, ZH_TASKS
from test_loop import read_jsonl

from pacos.cli import main
from pacos.self_instruct.config import SelfInstructConfig
from pacos.self_instruct.filters import rejection_reason
from pacos.self_instruct.languages import CHINESE
from pacos.self_instruct.parse import Candidate
from pacos.self_instruct.store import raw_log_path
from pacos.options import ConfigError


def zh_args(teacher, out, n, seeds=ZH_SEEDS, *extra):
    return ["self-instruct", "--language", "zh", "--teacher-url", teacher.url, "--teacher-model", "teacher-double",
            "--seed-tasks", str(seeds), "--out", str(out), "--num-instructions", str(n), "--no-progress",
            "--batch-size", "2", "--max-bad-answers", "200", *extra]


def test_chinese_run_writes_clean_chinese_records_logs_language_and_resumes(teacher, tmp_path, capsys):
    full = tmp_path / "full.jsonl"
    assert main(zh_args(teacher, full, 25)) == 0
    assert "language zh (prompt pacos-zh-1)" in capsys.readouterr().out
    records, log = read_jsonl(full), read_jsonl(raw_log_path(full))
    assert len(records) == 25
    for r in records:
        assert rejection_reason(Candidate(r["instruction"], r["input"], r["output"]), CHINESE) is None
        assert r["input"] not in ("<无输入>", "<noinput>")
    assert all(e["language"] == "zh" and e["prompt"] == "pacos-zh-1" for e in log)
    assert all(p.startswith(CHINESE.requirements) and p.endswith("指令：") for e in log for p in e["prompts"])
    assert all(r["body"]["stop"] == CHINESE.stop_sequences for r in teacher.requests)
    discards = {reason for e in log for reason in e["discards"]}
    assert {reason for reason, _, _ in ZH_JUNK} | {"similar", "truncated"} <= discards
    assert main(["self-instruct", "report", str(full), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "- language: zh (prompt pacos-zh-1)" in md and "## Lengths (characters)" in md
    assert "openings (first two characters)" in md and "| 判断 |" in md

    # Killed after batch 2 while writing batch 3: the rerun continues to the same file.
    out = tmp_path / "out.jsonl"
    kept = [r for r in records if r["batch"] <= 2]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept) + '{"instruction": "半条')
    raw_log_path(out).write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in log if e["batch"] <= 2))
    assert main(zh_args(teacher, out, 25)) == 0
    assert read_jsonl(out) == records

    # The same file in another language is refused in one line.
    shutil.copy(raw_log_path(out), tmp_path / "log.bak")
    english = [a for a in zh_args(teacher, out, 30) if a not in ("--language", "zh")]
    assert main(english) == 2
    assert "was generated with --language zh: rerun with --language zh" in capsys.readouterr().err
    assert raw_log_path(out).read_bytes() == (tmp_path / "log.bak").read_bytes()


def test_english_seeds_with_language_zh_ask_for_chinese_tasks_over_chat(teacher, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(zh_args(teacher, out, 10, SEEDS, "--api", "chat")) == 0
    prompt = read_jsonl(raw_log_path(out))[0]["prompts"][0]
    assert "1. 指令：" in prompt and "简体中文" in prompt
    assert teacher.requests[0]["path"].endswith("/chat/completions")
    assert all(any("\u4e00" <= c <= "\u9fff" for c in r["instruction"]) for r in read_jsonl(out))


def test_other_codes_fall_back_or_fail_in_one_line(teacher, tmp_path, capsys):
    out = tmp_path / "fr.jsonl"
    args = ["self-instruct", "--teacher-url", teacher.url, "--teacher-model", "teacher-double", "--seed-tasks",
            str(SEEDS), "--out", str(out), "--num-instructions", "5", "--no-progress"]
    assert main([*args, "--language", "fr"]) == 0
    entry = read_jsonl(raw_log_path(out))[0]
    assert entry["language"] == "fr" and entry["prompt"] == "pacos-en-1+fr"
    assert "in French" in entry["prompts"][0]
    assert main([*args[:-5], "--out", str(tmp_path / "x.jsonl"), "--language", "xx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--language 'xx' is not supported: use en, zh" in err
    with pytest.raises(ConfigError, match="--pipeline self-instruct has English prompts only"):
        SelfInstructConfig(seed_tasks="s", out="o", pipeline="self-instruct", language="zh")


def test_chinese_novelty_keeps_every_distinct_task_and_drops_near_duplicates(teacher, tmp_path):
    """Every ZH_TASKS instruction is distinct (pairwise character ROUGE-L F <= 0.61, several sharing a digit
    or a few characters); the teacher also writes each with one character dropped. Asking for exactly
    len(ZH_TASKS) records must give exactly ZH_TASKS: nothing distinct dropped, no near duplicate kept."""
    out = tmp_path / "out.jsonl"
    assert main(zh_args(teacher, out, len(ZH_TASKS))) == 0
    assert sorted(r["instruction"] for r in read_jsonl(out)) == sorted(t[0] for t in ZH_TASKS)
