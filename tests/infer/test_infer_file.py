"""`pacos infer` streams a file through the engine: answers in input order, a bounded window in flight, and a
rerun after kill -9 (even mid-line) answers only what is missing and ends with the same file."""

from __future__ import annotations

import json

import pytest

from pacos.data.formats import save_records
from pacos.data.records import Example
from pacos.infer.engine import complete_many
from pacos.infer.files import answer_records
from pacos.infer.hf_engine import TransformersEngine
from pacos.infer.params import SamplingParams

from ..conftest import kill_pacos_after, run_pacos

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def make_records(n: int) -> list[Example]:
    # Prompts of varied length, so sequences finish (and free their slots) out of input order.
    return [Example(f"Repeat {i}: " + " ".join(WORDS[: 1 + i % len(WORDS)]), "" if i % 3 else "with input",
                    extra={"id": i}) for i in range(n)]


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    with TransformersEngine.load(str(tiny_model_dir), kind="instruction", max_batch=4, max_waiting=4) as engine:
        yield engine


def test_the_window_bounds_what_is_in_flight_and_slots_refill(engine):
    """Prompts are pulled lazily: never more than the window ahead of the results handed back."""
    window, pulled_at = 4, []
    yielded = 0
    recs = make_records(24)

    def prompts():
        for r in recs:
            pulled_at.append(yielded)
            yield engine.encode(r)

    order = []
    for index, done in complete_many(engine, prompts(), SamplingParams(max_new_tokens=6), window=window):
        yielded += 1
        order.append(index)
        assert done.finish_reason in ("stop", "length")
    assert sorted(order) == list(range(24))
    assert all(k - pulled_at[k] <= window for k in range(24)), pulled_at


def test_infer_writes_input_order_and_equals_in_memory_answers(tiny_model_dir, engine, tmp_path):
    recs = make_records(12)
    save_records(recs, tmp_path / "in.jsonl", "jsonl")
    run_pacos("infer", tiny_model_dir, "--data", tmp_path / "in.jsonl", "--out", tmp_path / "out.jsonl",
              "--max-new-tokens", "10", "--batch-size", "4", check=True)
    rows = lines(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == list(range(12))
    assert [r["generated"] for r in rows] == answer_records(engine, recs, SamplingParams(max_new_tokens=10))


def test_json_output_is_written_whole_and_a_rerun_has_nothing_left(tiny_model_dir, tmp_path):
    save_records(make_records(5), tmp_path / "in.jsonl", "jsonl")
    args = ("infer", tiny_model_dir, "--data", tmp_path / "in.jsonl", "--out", tmp_path / "out.json",
            "--max-new-tokens", "4")
    run_pacos(*args, check=True)
    array = json.loads((tmp_path / "out.json").read_text())
    assert [r["id"] for r in array] == list(range(5)) and all("generated" in r for r in array)
    assert not (tmp_path / "out.json.partial.jsonl").exists()
    again = run_pacos(*args, check=True)
    assert "5 were already there" in again.stdout
    assert json.loads((tmp_path / "out.json").read_text()) == array


def test_kill_9_then_rerun_answers_only_the_rest(tiny_model_dir, tmp_path):
    save_records(make_records(48), tmp_path / "in.jsonl", "jsonl")
    out = tmp_path / "out.jsonl"
    args = ["infer", str(tiny_model_dir), "--data", str(tmp_path / "in.jsonl"), "--out", str(out),
            "--max-new-tokens", "24", "--batch-size", "4"]
    kill_pacos_after(*args, path=out, lines=6)
    before = out.read_text().splitlines(keepends=True)
    assert 6 <= len(before) < 48, "the run was not interrupted mid-file"
    with open(out, "a") as f:  # as if killed in the middle of a line
        f.write('{"instruction": "Repeat 99: alp')
    again = run_pacos(*args, check=True)
    assert f"({len([b for b in before if b.endswith(chr(10))])} were already there)" in again.stdout
    resumed = out.read_text().splitlines(keepends=True)
    assert resumed[: len(before)] == before  # nothing written before the kill was rewritten
    fresh = tmp_path / "fresh.jsonl"
    run_pacos(*args[:5], str(fresh), *args[6:], check=True)
    assert lines(out) == lines(fresh)


def test_an_output_of_another_input_is_refused_in_one_line(tiny_model_dir, tmp_path):
    save_records(make_records(3), tmp_path / "a.jsonl", "jsonl")
    save_records(make_records(4)[1:], tmp_path / "b.jsonl", "jsonl")
    run_pacos("infer", tiny_model_dir, "--data", tmp_path / "a.jsonl", "--out", tmp_path / "out.jsonl",
              "--max-new-tokens", "2", check=True)
    proc = run_pacos("infer", tiny_model_dir, "--data", tmp_path / "b.jsonl", "--out", tmp_path / "out.jsonl",
                     "--max-new-tokens", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "record 1 is not record 1 of the input" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
