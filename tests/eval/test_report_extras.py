"""`pacos eval report --tasks/--perplexity`: exact-match accuracy and perplexity in the same report as win rates."""

import json
import math

import pytest

from pacos.cli import main
from pacos.data.formats import save_records
from pacos.data.records import Example
from pacos.data.synth import synth_records

from .test_report import alpaca_vote, report


def wilson(correct: int, n: int, z: float = 1.959963984540054):
    """The Wilson score interval, written out (Wilson 1927)."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.fixture(scope="module")
def results(tiny_model_dir, tmp_path_factory):
    """Real `pacos eval tasks --json` and `pacos perplexity --json` output of the tiny model, as users save them."""
    root = tmp_path_factory.mktemp("extras")
    tasks = root / "tasks.jsonl"
    save_records([Example("Reverse the word.", "abc", "cba", {"task": "reverse_word"}),
                  Example("Write 'xy' in all caps.", "", "XY", {"task": "uppercase"}),
                  Example("Write 'ab' in all caps.", "", "AB", {"task": "uppercase"})], tasks, "jsonl")
    heldout = root / "heldout.jsonl"
    save_records(synth_records(4, seed=5), heldout, "jsonl")
    return root, tasks, heldout


def _run_json(capsys, *args) -> str:
    assert main([*map(str, args), "--json"]) == 0
    return capsys.readouterr().out


def test_tasks_and_perplexity_join_the_win_rates(results, tiny_model_dir, tmp_path, capsys):
    root, tasks, heldout = results
    (tmp_path / "tasks.json").write_text(_run_json(capsys, "eval", "tasks", tiny_model_dir, "--data", tasks,
                                                   "--max-new-tokens", "4"))
    (tmp_path / "ppl.json").write_text(_run_json(capsys, "perplexity", tiny_model_dir, "--data", heldout,
                                                 "--responses", "--no-progress"))
    scored = json.loads((tmp_path / "tasks.json").read_text())
    # A second model's results, as another run of the same commands would give them.
    (tmp_path / "other.json").write_text(json.dumps({**scored, "correct": 3, "accuracy": 1.0,
                                                     "per_task": {"reverse_word": {"n": 1, "correct": 1},
                                                                  "uppercase": {"n": 2, "correct": 2}}}))
    r = report(capsys, alpaca_vote(tmp_path), "--tasks", f"alpaca={tmp_path / 'tasks.json'}",
               "--tasks", tmp_path / "other.json", "--perplexity", f"alpaca={tmp_path / 'ppl.json'}")
    assert r["pairwise"][0]["model"] == "alpaca"  # the win rates are still there
    mine, other = r["tasks"]
    assert (mine["model"], mine["n"], mine["correct"]) == ("alpaca", 3, scored["correct"])
    assert mine["accuracy"]["value"] == pytest.approx(scored["accuracy"])
    low, high = wilson(scored["correct"], 3)
    assert (mine["accuracy"]["low"], mine["accuracy"]["high"]) == pytest.approx((low, high), abs=1e-9)
    assert other["model"] == "other" and other["accuracy"]["high"] == pytest.approx(1.0)
    assert other["accuracy"]["low"] == pytest.approx(wilson(3, 3)[0])  # 3 of 3 is not "certainly 100%"
    assert [t["task"] for t in mine["per_task"]] == ["reverse_word", "uppercase"]
    (ppl,) = r["perplexity"]
    measured = json.loads((tmp_path / "ppl.json").read_text())
    assert ppl["model"] == "alpaca" and ppl["perplexity"] == measured["perplexity"] > 1
    assert ppl["tokens"] == measured["tokens"]

    out = tmp_path / "report.md"
    assert main(["eval", "report", str(alpaca_vote(tmp_path)), "--tasks", f"alpaca={tmp_path / 'tasks.json'}",
                 "--perplexity", str(tmp_path / "ppl.json"), "--out", str(out), "--plots", str(tmp_path / "plots"),
                 "--resamples", "300"]) == 0
    text = out.read_text()
    assert "## Task accuracy" in text and "## Perplexity" in text and "## Against text-davinci-003" in text
    row = next(line for line in text.splitlines() if line.startswith("| alpaca | 3 |"))
    assert f"{100 * low:.1f}, {100 * high:.1f}]" in row
    assert f"{measured['perplexity']:.4f}" in text
    assert (tmp_path / "plots" / "task_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_of_task_accuracy_alone(tmp_path, capsys):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"accuracy": 0.25, "n": 40, "correct": 10, "per_task": {"x": {"n": 40, "correct": 10}}}))
    r = report(capsys, "--tasks", f"base={path}")
    assert r["pairwise"] == [] and r["tasks"][0]["accuracy"]["value"] == 0.25
    assert main(["eval", "report", "--tasks", f"base={path}"]) == 0
    text = capsys.readouterr().out
    assert "## Task accuracy" in text and "From judgements" not in text


@pytest.mark.parametrize("content, flag, message", [
    (None, "--tasks", "--tasks {path}: no such file"),
    ("{\"n\": 3,", "--tasks", "{path}:1: not JSON"),
    ('{"n": 3, "correct": NaN}', "--tasks", "NaN is not valid JSON"),
    ('[1]', "--tasks", "a JSON object is needed, not list"),
    ('{"n": 3, "correct": 4}', "--tasks", "`correct` (4) is more than `n` (3)"),
    ('{"n": -1, "correct": 0}', "--tasks", "`n` must be a number >= 0"),
    ('{"n": 3, "correct": "2"}', "--tasks", "`correct` is missing or not a number"),
    ('{"n": 3, "correct": 2, "per_task": {"a": {"n": 1, "correct": 1}}}', "--tasks", "add up to 1 records, not"),
    ('{"model": "m", "data": "d", "tokens": 10, "perplexity": 0.5}', "--perplexity", "`perplexity` must be"),
    ('{"model": "m", "data": "d", "tokens": 10, "perplexity": 5, "reference": "r"}', "--perplexity",
     "`kl_divergence` is missing"),
    ('{"accuracy": 0.5, "n": 2, "correct": 1}', "--perplexity", "`model` is missing or not text"),
])
def test_bad_results_files_are_one_line_errors(tmp_path, capsys, content, flag, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    assert main(["eval", "report", flag, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(path=path) in err, err


def test_two_results_with_one_name_are_refused(tmp_path, capsys):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"n": 2, "correct": 1}))
    assert main(["eval", "report", "--tasks", f"m={path}", "--tasks", f"m={path}"]) == 2
    assert "are both named 'm'; name them with NAME=FILE" in capsys.readouterr().err


def test_a_reader_that_leaves_early_ends_the_report_quietly(tmp_path):
    # `pacos eval report ... | head`: more output than a pipe holds, and the reader closes after a few bytes.
    import subprocess
    import sys

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"n": 4000, "correct": 0, "per_task": {f"task{i:05d}": {"n": 1, "correct": 0}
                                                                      for i in range(4000)}}))
    proc = subprocess.Popen([sys.executable, "-m", "pacos", "eval", "report", "--tasks", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(20) == b"# Evaluation report\n"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err
