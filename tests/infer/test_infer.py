"""Inference commands: infer, ask, eval tasks, preview; bad input gets one line and a non-zero exit."""

import json

import pytest

from pacos.data.formats import save_records
from pacos.data.records import Example
from pacos.infer.files import answer_records
from pacos.infer.hf_engine import TransformersEngine
from pacos.infer.params import SamplingParams
from pacos.prompting.encode import IGNORE_INDEX

from ..conftest import run_pacos


@pytest.fixture()
def records_file(tmp_path):
    path = tmp_path / "recs.jsonl"
    save_records([Example("Reverse the word.", "abc", "cba", {"task": "reverse_word"}),
                  Example("Write 'xy' in all caps.", "", "XY", {"task": "uppercase"})], path, "jsonl")
    return path


def test_greedy_is_deterministic_and_batching_agrees(tiny_model_dir):
    recs = [Example("Say hi.", ""), Example("Reverse the word.", "abcdef"), Example("Q", "long " * 10)]
    params = SamplingParams(max_new_tokens=8)
    with TransformersEngine.load(str(tiny_model_dir), kind="instruction", max_batch=3) as engine:
        a = answer_records(engine, recs, params)
        assert a == answer_records(engine, recs, params)
    with TransformersEngine.load(str(tiny_model_dir), kind="instruction", max_batch=1) as engine:
        assert a == answer_records(engine, recs, params)
    assert any(a)  # a random model still writes something, so the equality means something


def test_sampling_seed_reproduces(tiny_model_dir):
    recs = [Example("Say hi.", ""), Example("Say hi.", "")]
    p = SamplingParams(max_new_tokens=12, temperature=1.0, seed=3)
    with TransformersEngine.load(str(tiny_model_dir), kind="instruction") as engine:
        first = answer_records(engine, recs, p)
        assert first == answer_records(engine, recs, SamplingParams(max_new_tokens=12, temperature=1.0, seed=3))
    assert first[0] != first[1]  # each record has its own stream (seed + index), even for the same prompt


def test_infer_writes_generated_field(tiny_model_dir, records_file, tmp_path):
    run_pacos("infer", tiny_model_dir, "--data", records_file, "--out", tmp_path / "o.jsonl",
              "--max-new-tokens", "4", check=True)
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("generated" in r and r["task"] for r in rows)


def test_ask_and_eval_tasks(tiny_model_dir, records_file):
    proc = run_pacos("ask", tiny_model_dir, "Say hi.", "--max-new-tokens", "3", check=True)
    assert "Traceback" not in proc.stderr
    proc = run_pacos("eval", "tasks", tiny_model_dir, "--data", records_file, "--json", check=True)
    scores = json.loads(proc.stdout)
    assert scores["n"] == 2 and set(scores["per_task"]) == {"reverse_word", "uppercase"}


def test_preview_json_marks_exactly_the_response(tiny_model_dir, records_file, tiny_tokenizer):
    proc = run_pacos("data", "preview", records_file, "--model", tiny_model_dir, "--json", check=True)
    first = json.loads(proc.stdout.splitlines()[0])
    trained = [i for i, label in zip(first["input_ids"], first["labels"]) if label != IGNORE_INDEX]
    assert tiny_tokenizer.decode(trained) == "cba</s>"
    assert first["text"].endswith("### Response:cba</s>")
    text = run_pacos("data", "preview", records_file, "--model", tiny_model_dir, check=True).stdout
    assert "### Response:⟦cba</s>⟧" in text


@pytest.mark.parametrize("args,message", [
    (["infer", "{model}", "--data", "{tmp}/nope.jsonl", "--out", "{tmp}/o.jsonl"], "nope.jsonl"),
    (["infer", "{model}", "--data", "{data}", "--out", "{tmp}/o.jsonl", "--top-p", "0"], "top_p"),
    (["infer", "{model}", "--data", "{data}", "--out", "{tmp}/o.jsonl", "--max-new-tokens", "5000"], "context"),
    (["ask", "{tmp}/no-such-model", "hi"], "no such directory"),
    (["data", "preview", "{data}", "--model", "{model}", "--template", "nope"], "unknown template"),
])
def test_bad_input_one_line(tiny_model_dir, records_file, tmp_path, args, message):
    args = [a.format(model=tiny_model_dir, tmp=tmp_path, data=records_file) for a in args]
    proc = run_pacos(*args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr
