"""The generation loop end to end against the loopback teacher: filters, novelty, determinism, resume, cost."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from rouge_score import rouge_scorer
from teacher_double import SEEDS

from pacos.cli import main
from pacos.remote.config import TeacherConfig
from pacos.self_instruct.config import SelfInstructConfig
from pacos.self_instruct.filters import rejection_reason
from pacos.self_instruct.loop import generate
from pacos.self_instruct.parse import Candidate
from pacos.self_instruct.prompt import load_seed_tasks
from pacos.self_instruct.store import raw_log_path


def run_config(teacher, out, n=40, **overrides):
    teacher_cfg = TeacherConfig(url=teacher.url, model="teacher-double", concurrency=overrides.pop("concurrency", 3),
                                api=overrides.pop("api", "completions"), max_retries=5, backoff_base=0.05,
                                timeout=overrides.pop("timeout", 10))
    return SelfInstructConfig(seed_tasks=str(SEEDS), out=str(out), num_instructions=n, teacher=teacher_cfg,
                              progress=False, **overrides)


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def cli_args(teacher, out, n, *extra):
    return ["self-instruct", "--teacher-url", teacher.url, "--teacher-model", "teacher-double", "--seed-tasks",
            str(SEEDS), "--out", str(out), "--num-instructions", str(n), "--no-progress", *extra]


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_run_keeps_clean_novel_records_and_logs_every_batch(teacher, tmp_path, api):
    summary = generate(run_config(teacher, tmp_path / "out.jsonl", n=40, api=api))
    records = read_jsonl(tmp_path / "out.jsonl")
    assert len(records) == 40 == summary.totals.kept and summary.stopped == "target"
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    seen = [s.instruction for s in load_seed_tasks(SEEDS)]
    for r in records:
        assert set(r) >= {"instruction", "input", "output", "similarity", "nearest", "batch"}
        assert rejection_reason(Candidate(r["instruction"], r["input"], r["output"])) is None
        assert r["input"] != "<noinput>"
        best = max(scorer.score(r["instruction"], s)["rougeL"].fmeasure for s in seen)
        assert best <= 0.7 and best == r["similarity"]
        seen.append(r["instruction"])
    log = read_jsonl(raw_log_path(tmp_path / "out.jsonl"))
    assert [e["batch"] for e in log] == list(range(len(log)))
    assert sum(e["kept"] for e in log) == 40
    assert all(e["prompts"] and e["answers"] and e["usage"]["completion_tokens"] > 0 for e in log)
    discards = summary.totals.discards
    assert {"similar", "too_short", "blacklisted", "non_ascii_start", "empty_output"} <= set(discards)


def test_same_seed_and_answers_give_the_same_output_whatever_the_concurrency(teacher, tmp_path):
    generate(run_config(teacher, tmp_path / "a.jsonl", n=50, concurrency=1, batch_size=2))
    teacher.fail_next("500", "429", "drop")
    generate(run_config(teacher, tmp_path / "b.jsonl", n=50, concurrency=6, batch_size=2))
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl")
    generate(run_config(teacher, tmp_path / "c.jsonl", n=50, concurrency=1, batch_size=2, seed=1))
    assert read_jsonl(tmp_path / "a.jsonl") != read_jsonl(tmp_path / "c.jsonl")


def test_resume_drops_torn_line_and_uncommitted_records_and_continues_exactly(teacher, tmp_path):
    full = tmp_path / "full.jsonl"
    generate(run_config(teacher, full, n=60, batch_size=1))
    out = tmp_path / "out.jsonl"
    generate(run_config(teacher, out, n=60, batch_size=1))
    records, log = read_jsonl(out), read_jsonl(raw_log_path(out))
    # Pretend the run died after committing batch 3 and while writing batch 4's records.
    kept = [r for r in records if r["batch"] <= 3]
    orphan = next(r for r in records if r["batch"] > 3)
    out.write_text("".join(json.dumps(r) + "\n" for r in kept + [orphan]) + json.dumps(orphan)[:25])
    raw_log_path(out).write_text("".join(json.dumps(e) + "\n" for e in log if e["batch"] <= 3) + '{"batch": 4, "pro')
    summary = generate(run_config(teacher, out, n=60, batch_size=1))
    assert summary.resumed_batches == 4 and summary.torn_lines == 2 and summary.orphans == 1
    assert read_jsonl(out) == read_jsonl(full)
    assert "resumed after 4 batches" in str(summary)
    assert generate(run_config(teacher, out, n=60, batch_size=1)).totals.kept == 60  # done: nothing to do
    assert read_jsonl(out) == read_jsonl(full)


def test_unparseable_responses_are_counted_and_logged(teacher, tmp_path):
    teacher.fail_next("junk")
    summary = generate(run_config(teacher, tmp_path / "out.jsonl", n=30, concurrency=1))
    assert summary.totals.discards["unparseable_response"] == 5  # a batch of 5 prompts in one request
    log = read_jsonl(raw_log_path(tmp_path / "out.jsonl"))
    assert all(a["error"].startswith("not JSON (malformed JSON") for a in log[0]["answers"])


def test_max_cost_stops_cleanly_and_counts_across_resume(teacher, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    args = cli_args(teacher, out, 1000, "--price-in", "100", "--price-out", "100", "--max-cost", "1.0",
                    "--concurrency", "1", "--batch-size", "1")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "stopped at --max-cost" in printed and "cost $" in printed
    log = read_jsonl(raw_log_path(out))
    spent = sum(e["usage"]["prompt_tokens"] + e["usage"]["completion_tokens"] for e in log) * 100 / 1e6
    assert spent >= 1.0 and 0 < len(read_jsonl(out)) < 1000
    assert main(args) == 0 and len(read_jsonl(raw_log_path(out))) == len(log)  # still over budget: no request
    assert "stopped at --max-cost" in capsys.readouterr().out


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("case", ["unreachable", "bad key"])
def test_unusable_teacher_is_one_line_and_nonzero(teacher, tmp_path, case):
    args = cli_args(teacher, tmp_path / "out.jsonl", 10, "--max-retries", "1", "--api-key", "sk-wrong")
    if case == "unreachable":
        args[args.index(teacher.url)] = closed_port_url()
    else:
        teacher.api_key = "sk-right"
    result = subprocess.run([sys.executable, "-m", "pacos.cli", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert ("still failing" if case == "unreachable" else "rejected the API key") in result.stderr


def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(teacher, tmp_path):
    reference = tmp_path / "reference.jsonl"
    assert main(cli_args(teacher, reference, 150, "--batch-size", "1", "--concurrency", "2")) == 0
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "pacos.cli", *cli_args(teacher, out, 150, "--batch-size", "1", "--concurrency", "2")]
    teacher.delay = 0.03
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 40):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < len(read_jsonl(out)) < 150
    with open(out, "a") as f:
        f.write('{"instruction": "half a rec')  # what a write cut by the kill looks like
    teacher.delay = 0.0
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert records == read_jsonl(reference)
    assert len({r["instruction"] for r in records}) == 150
