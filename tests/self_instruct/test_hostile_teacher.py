"""Teachers that answer garbage, nothing, too much or too slowly: every run ends within its bound, in one line.

Each run goes through `pacos.cli.main` against the loopback double in one of its hostile modes, with small
bounds (--max-bad-answers, --timeout, --max-response-bytes) so each ends in about a second.
"""

import subprocess
import sys
import time

import pytest
from teacher_double import PROSE, answer_for
from test_loop import cli_args, read_jsonl

from pacos.cli import main
from pacos.self_instruct.store import RAW_TEXT_CAP, raw_log_path

MAX_BAD, BATCH, CONCURRENCY = 6, 2, 2
BOUND_FLAGS = ["--max-bad-answers", str(MAX_BAD), "--batch-size", str(BATCH), "--concurrency", str(CONCURRENCY),
               "--max-retries", "1", "--timeout", "5", "--max-response-bytes", "200000"]


def run_cli(teacher, out, *extra, n=20):
    return main(cli_args(teacher, out, n, *BOUND_FLAGS, *extra))


def stopped_for_bad_answers(teacher, tmp_path, capsys, *extra, n=20):
    """Run against the hostile teacher; check the one-line message, the bounded requests and raw log."""
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    assert run_cli(teacher, out, *extra, n=n) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pacos: error: ")
    assert f"the teacher's last {MAX_BAD} answers had no usable tasks (" in err and "rerun the same command" in err
    log = read_jsonl(raw_log_path(out))
    # Exactly the batches holding those MAX_BAD answers are committed (batches answered later are not), and
    # at most 2 x concurrency more batches were in flight when it stopped.
    assert len(log) == MAX_BAD // BATCH
    assert len(teacher.requests) <= (MAX_BAD // BATCH + 2 * CONCURRENCY) * (BATCH if "chat" in extra else 1)
    return err, log


@pytest.mark.parametrize("fault, reason, hint", [
    ("html", "(last: not JSON (malformed JSON: Expecting value): '<html>gateway", "an OpenAI-compatible server?"),
    ("choices_empty", "(last: 0 choices for 2 prompt(s))", "--teacher-url"),
    ("choices_null", "(last: no list of choices (choices: 'None'))", "--teacher-url"),
    ("truncated", "(last: not JSON (malformed JSON: Unterminated string", "--teacher-url"),
    ("not_object", "(last: JSON but not an object: '[{\"id\"", "--teacher-url"),
    ("prose", "(last: no numbered tasks in it: 'I am sorry", "does the model follow the prompt's format?"),
    ("gzip", "(last: a compressed response (gzip)", "--teacher-url"),
    ("huge_declared", f"(last: a response of {100 * 2**30} bytes, over --max-response-bytes 200000)",
     "--teacher-url"),
])
def test_useless_answers_end_the_run_with_the_reason(teacher, tmp_path, capsys, fault, reason, hint):
    teacher.always = fault
    err, log = stopped_for_bad_answers(teacher, tmp_path, capsys)
    assert reason in err and hint in err
    assert not (tmp_path / "out.jsonl").read_text()  # nothing kept, nothing invented


def test_an_endless_body_is_refused_while_it_streams_in(teacher, tmp_path, capsys):
    teacher.always = "huge"  # chunked, no length: only counting while reading can stop it
    err, _ = stopped_for_bad_answers(teacher, tmp_path, capsys)
    assert "over --max-response-bytes 200000 (stopped reading there)" in err
    # Each refused body was read to about the cap, never to its end (1 GiB each).
    assert teacher.huge_sent < len(teacher.requests) * 8 * 2**20


def test_the_chat_api_is_bounded_the_same_way(teacher, tmp_path, capsys):
    teacher.always = "choices_null"
    err, _ = stopped_for_bad_answers(teacher, tmp_path, capsys, "--api", "chat")
    assert "(last: no list of choices (choices: 'None'))" in err


def test_long_useless_answers_keep_the_raw_log_bounded(teacher, tmp_path, capsys):
    teacher.always = "long_prose"  # valid JSON, ~330 KB of prose per answer
    _, log = stopped_for_bad_answers(teacher, tmp_path, capsys, "--max-response-bytes", str(2 * 2**20))
    for entry in log:
        for answer in entry["answers"]:
            assert len(answer["text"]) == RAW_TEXT_CAP
            assert answer["cut_chars"] == len(PROSE * 4000) - RAW_TEXT_CAP
    line_bytes = max(len(line) for line in raw_log_path(tmp_path / "out.jsonl").read_bytes().splitlines())
    assert line_bytes < BATCH * RAW_TEXT_CAP + 20_000  # the answers' capped text, prompts and counts


def test_a_teacher_trickling_bytes_times_out_at_the_deadline_and_gives_up(teacher, tmp_path, capsys):
    teacher.always, teacher.trickle_interval = "trickle", 0.3  # each byte well inside httpx's read timeout
    started = time.monotonic()
    assert run_cli(teacher, tmp_path / "out.jsonl", "--timeout", "1", "--concurrency", "1") == 2
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert "still failing after 2 attempts (no complete answer within --timeout 1 s)" in err
    assert err.count("\n") == 1
    assert 2.0 <= elapsed < 6  # two attempts of 1 s each, a short backoff, start-up


def test_a_teacher_repeating_itself_ends_the_run_once_nothing_new_comes(teacher, tmp_path, capsys):
    fixed = answer_for("x\n###\n4. Instruction:", False)  # one answer continuing task 4, whatever was asked
    teacher.answer = lambda prompt, chat: fixed
    out = tmp_path / "out.jsonl"
    assert run_cli(teacher, out, n=1000) == 2
    err = capsys.readouterr().err
    assert "tasks was new (similar " in err and "raise --temperature or --threshold" in err
    kept = read_jsonl(out)
    assert kept and len({r["instruction"] for r in kept}) == len(kept)  # the first answer's tasks were kept


def test_good_answers_between_bad_ones_reset_the_count(teacher, tmp_path, capsys):
    teacher.fail_next(*["html"] * 2)  # 4 bad answers, fewer than MAX_BAD; then good ones
    out = tmp_path / "out.jsonl"
    assert run_cli(teacher, out, "--concurrency", "1", n=30) == 0
    assert len(read_jsonl(out)) == 30


def test_committed_batches_stay_and_a_rerun_resumes_once_the_teacher_is_fixed(teacher, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run_cli(teacher, out, "--concurrency", "1", n=25) == 0
    reference = read_jsonl(out)
    teacher.always = "html"  # the teacher breaks: the next run stops, keeping what it had
    assert run_cli(teacher, out, "--concurrency", "1", n=60) == 2
    assert "no usable tasks" in capsys.readouterr().err
    assert read_jsonl(out) == reference
    teacher.always = None  # fixed: the same command resumes past the bad batches
    assert run_cli(teacher, out, "--concurrency", "1", n=60) == 0
    records = read_jsonl(out)
    assert len(records) == 60 and records[:25] == reference
    assert "resumed after" in capsys.readouterr().out


def test_two_stage_pipeline_obeys_the_same_bound(teacher, tmp_path, capsys):
    teacher.always = "truncated"
    err, log = stopped_for_bad_answers(teacher, tmp_path, capsys, "--pipeline", "self-instruct")
    assert "(last: not JSON (malformed JSON" in err and all(e["pipeline"] == "self-instruct" for e in log)


def test_two_stage_teacher_that_never_writes_an_instance_ends_the_run(teacher, tmp_path, capsys):
    real = teacher.answer
    teacher.answer = lambda prompt, chat: (" no labels here", "stop") if prompt.endswith(("Input:", "Class label:")) \
        else real(prompt, chat)
    out = tmp_path / "out.jsonl"
    assert run_cli(teacher, out, "--pipeline", "self-instruct", n=50) == 2
    err = capsys.readouterr().err
    assert "new instructions got a usable instance" in err and "instance prompts" in err
    assert not out.read_text()


def test_no_traceback_reaches_the_user_from_a_subprocess(teacher, tmp_path):
    teacher.always = "truncated"
    args = cli_args(teacher, tmp_path / "out.jsonl", 10, *BOUND_FLAGS)
    result = subprocess.run([sys.executable, "-m", "pacos.cli", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "had no usable tasks" in result.stderr


@pytest.mark.parametrize("flag", ["--max-bad-answers", "--max-response-bytes", "--timeout"])
def test_bound_flags_must_be_positive(teacher, tmp_path, capsys, flag):
    assert main(cli_args(teacher, tmp_path / "out.jsonl", 10, flag, "0")) == 2
    assert flag in capsys.readouterr().err
    assert not teacher.requests

