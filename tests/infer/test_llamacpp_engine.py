"""The llama.cpp engine on a GGUF file: the transformers engine's greedy tokens, continuous batching over one
context, pacos's sampler and stops, and the commands on FILE.gguf; a missing library or a bad file is one line."""

import json
import os
import subprocess
import sys
import threading

import pytest

pytest.importorskip("llama_cpp")

import httpx

from pacos.cli import main
from pacos.data.formats import save_records
from pacos.data.records import Example
from pacos.infer.backends import load_engine
from pacos.infer.continuous import Sequence
from pacos.infer.engine import QueueFull
from pacos.infer.hf_engine import TransformersEngine
from pacos.infer.llamacpp_engine import LlamaCppBatch, LlamaCppEngine
from pacos.infer.params import SamplingParams

from ..serve.conftest import start_server, stop_server

TEXTS = ("Name three colours.", "Translate 'cat' into French.", "x", "Sort these numbers: 9 2 7 4 1 and explain why")
GREEDY = SamplingParams(max_new_tokens=20)


@pytest.fixture(scope="module")
def gguf_engine(tiny_gguf):
    with LlamaCppEngine(tiny_gguf, kind="instruction", max_batch=4, threads=2) as engine:
        yield engine


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    with TransformersEngine.load(str(tiny_model_dir), kind="instruction", max_batch=4) as engine:
        yield engine


def generate(engine, ids, params=GREEDY, **start):
    """(output ids, text, finish reason) of one generation through the engine interface."""
    stream = engine.start(ids, params, **start)
    events = list(stream.events())
    return stream.seq.output_ids, "".join(e.delta for e in events), events[-1].finish_reason


def test_greedy_tokens_equal_the_transformers_engines(gguf_engine, hf_engine):
    for text in TEXTS:
        ids = hf_engine.encode(Example(text))
        assert gguf_engine.encode(Example(text)) == ids  # the tokenizer embedded in the file
        ours = generate(gguf_engine, ids, template=gguf_engine.template, ignore_eos=True)
        assert ours == generate(hf_engine, ids, template=hf_engine.template, ignore_eos=True)
        assert len(ours[0]) == 20 and ours[2] == "length"
    assert gguf_engine.template.name == hf_engine.template.name == "alpaca"


def step_through(batch, seqs, stagger: bool = False) -> int:
    """Submit `seqs` to `batch` (with a few steps between them when `stagger`), step until all are done, free
    the batch; returns the most sequences that ran together."""
    busiest = 0
    try:
        for i, seq in enumerate(seqs):
            batch.submit(seq)
            for _ in range(i % 3 if stagger else 0):  # the others are mid-generation when the next one arrives
                batch.step()
        while batch.has_work:
            batch.step()
            busiest = max(busiest, len(batch.running))
    finally:
        batch.free()
    return busiest


def test_concurrent_sequences_joining_and_leaving_equal_one_at_a_time(gguf_engine, tiny_gguf):
    prompts = [gguf_engine.encode(Example(t)) for t in TEXTS * 2]
    lengths = [12, 5, 16, 3, 9, 14, 4, 7]
    alone = [generate(gguf_engine, ids, SamplingParams(max_new_tokens=n))[0] for ids, n in zip(prompts, lengths)]
    seqs = [Sequence(ids, SamplingParams(max_new_tokens=n), lambda d, f: None) for ids, n in zip(prompts, lengths)]
    batch = LlamaCppBatch(tiny_gguf, gguf_engine.tokenizer, max_batch=3, max_waiting=8)
    # three sequences shared each llama_decode; freed slots were taken by the next
    assert step_through(batch, seqs, stagger=True) == 3
    assert [s.output_ids for s in seqs] == alone
    assert all(s.finish_reason == "length" for s in seqs)


def test_a_bounded_cache_admits_only_sequences_whose_ends_fit(gguf_engine, tiny_gguf, monkeypatch):
    import pacos.infer.llamacpp_engine as module

    monkeypatch.setattr(module, "KV_BUDGET", 1024 * 4 * 2 * 192 * 2)  # one tiny context of f16 keys and values
    sampling = SamplingParams(max_new_tokens=400)  # two such sequences fit 1024 cells, three do not
    seqs = [Sequence(gguf_engine.encode(Example(t)), sampling, lambda d, f: None) for t in TEXTS[:3]]
    batch = LlamaCppBatch(tiny_gguf, gguf_engine.tokenizer, max_batch=3)
    assert batch.cells == 1024
    assert step_through(batch, seqs) == 2
    assert all(s.finish_reason == "length" and len(s.output_ids) == 400 for s in seqs)


def test_a_failed_decode_fails_only_the_row_that_fails_alone(gguf_engine, tiny_gguf):
    prompts = [gguf_engine.encode(Example(t)) for t in TEXTS[:3]]
    alone = [generate(gguf_engine, ids, SamplingParams(max_new_tokens=10))[0] for ids in prompts]
    batch = LlamaCppBatch(tiny_gguf, gguf_engine.tokenizer, max_batch=3)
    seqs = [Sequence(ids, SamplingParams(max_new_tokens=10), lambda d, f: None) for ids in prompts]
    decode = batch._decode

    def failing(entries):  # the middle sequence's 4th token: llama.cpp finds no room for it
        if any(batch.rows[slot] is seqs[1] and len(seqs[1].output_ids) == 3 for slot, _ in entries):
            decode(entries)  # written, as a decode that fails part way leaves cells behind
            return 1
        return decode(entries)

    batch._decode = failing
    step_through(batch, seqs)
    assert seqs[1].finish_reason == "error" and "no room in the KV cache" in seqs[1].error
    assert seqs[1].output_ids == alone[1][:3]
    assert [seqs[0].output_ids, seqs[2].output_ids] == [alone[0], alone[2]]


def test_seeded_sampling_reproduces_and_penalties_apply(gguf_engine):
    ids = gguf_engine.encode(Example(TEXTS[0]))
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.9, top_k=50, seed=7)
    first = generate(gguf_engine, ids, sampled)[0]
    assert generate(gguf_engine, ids, sampled)[0] == first
    assert generate(gguf_engine, ids, SamplingParams(max_new_tokens=16, temperature=1.0, seed=8))[0] != first
    greedy = generate(gguf_engine, ids, SamplingParams(max_new_tokens=16))[0]
    penalised = generate(gguf_engine, ids, SamplingParams(max_new_tokens=16, repetition_penalty=5.0))[0]
    assert penalised != greedy and len(set(penalised)) >= len(set(greedy))


def test_stop_strings_stop_ids_and_length(gguf_engine, tiny_gguf):
    ids = gguf_engine.encode(Example(TEXTS[1]))
    out, full, reason = generate(gguf_engine, ids)
    assert reason == "length" and len(out) == 20
    stop = next(full[i:i + 2] for i in range(len(full) // 3, len(full)) if full[i:i + 2].strip())
    _, text, reason = generate(gguf_engine, ids, stops=(stop,))
    assert reason == "stop" and text == full[: full.index(stop)]
    batch = LlamaCppBatch(tiny_gguf, gguf_engine.tokenizer, max_batch=1)
    try:
        seq = batch.run(Sequence(ids, GREEDY, lambda d, f: None, stop_ids=frozenset([out[4]])))
    finally:
        batch.free()
    assert seq.finish_reason == "stop" and seq.output_ids == out[: out.index(out[4]) + 1]


def test_cancel_frees_the_slot_and_a_full_queue_is_refused(gguf_engine, tiny_gguf):
    ids = gguf_engine.encode(Example(TEXTS[0]))
    before = gguf_engine.stats()["cancelled"]
    streams = [gguf_engine.start(ids, SamplingParams(max_new_tokens=500)) for _ in range(4)]
    next(streams[0].events())  # running
    for stream in streams:
        stream.cancel()
    assert generate(gguf_engine, ids)[2] == "length"  # the freed slots take new work
    stats = gguf_engine.stats()
    assert stats["cancelled"] - before == 4 and stats["running"] == 0 and stats["threads"] == 2

    batch = LlamaCppBatch(tiny_gguf, gguf_engine.tokenizer, max_batch=1, max_waiting=1)
    try:
        batch.submit(Sequence(ids, GREEDY, lambda d, f: None))
        with pytest.raises(QueueFull):
            batch.submit(Sequence(ids, GREEDY, lambda d, f: None))
        batch.step()  # admitted: the waiting room is free again
        batch.submit(Sequence(ids, GREEDY, lambda d, f: None))
        with pytest.raises(Exception, match="does not fit the context of 1024"):
            batch.submit(Sequence([1] * 1024, GREEDY, lambda d, f: None))
    finally:
        batch.free()


def test_4_bit_files_decode_as_llama_cpp_python_decodes_them(tiny_model_dir, tmp_path):
    """q4_0 weights are repacked for the CPU's kernels at load: the engine's thread pool must run the loaded ggml
    (a second copy of the library ran its own kernels on them, and every logit came out 0)."""
    import llama_cpp

    from pacos.export.gguf_export import export_gguf

    path = tmp_path / "tiny-q4_0.gguf"
    export_gguf(str(tiny_model_dir), path, "q4_0", verify=False, log=lambda message: None)
    raw = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False)
    with LlamaCppEngine(path, kind="instruction", max_batch=2, threads=2) as engine:
        assert engine.stats()["threadpool"]
        for text in TEXTS[:2]:
            ids = engine.encode(Example(text))
            ours = generate(engine, ids, SamplingParams(max_new_tokens=12), ignore_eos=True)[0]
            raw.reset()
            theirs = []
            for token in raw.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
                theirs.append(token)
                if len(theirs) == 12:
                    break
            assert ours == theirs
    if os.path.exists("/proc/self/maps"):  # one ggml CPU library in the process, the one llama.cpp loaded
        mapped = {line.split()[-1] for line in open("/proc/self/maps") if "libggml-cpu" in line}
        assert len(mapped) == 1, mapped


def test_backends_refuse_the_wrong_kind_of_model(tiny_gguf, tiny_model_dir):
    with pytest.raises(Exception, match="is a GGUF file, which the transformers backend does not load"):
        load_engine(str(tiny_gguf), "transformers")
    with pytest.raises(Exception, match="runs GGUF files and .* is not one"):
        load_engine(str(tiny_model_dir), "llama.cpp")


def test_commands_on_the_gguf_file_give_the_models_text(tiny_gguf, tiny_model_dir, tmp_path, capsys):
    records = [Example("Reverse the word.", "abc", "cba", {"task": "reverse_word"}),
               Example("Write 'xy' in all caps.", "", "XY", {"task": "uppercase"})]
    save_records(records, tmp_path / "in.jsonl", "jsonl")
    outputs = {}
    for name, model in (("hf", tiny_model_dir), ("gguf", tiny_gguf)):
        common = ("--max-new-tokens", "12")
        assert main(["ask", str(model), TEXTS[0], *common, "--threads", "2"]) == 0
        ask = capsys.readouterr().out
        out = tmp_path / f"{name}.jsonl"
        assert main(["infer", str(model), "--data", str(tmp_path / "in.jsonl"), "--out", str(out), *common]) == 0
        evaluated = tmp_path / f"{name}-eval.jsonl"
        assert main(["eval", "tasks", str(model), "--data", str(tmp_path / "in.jsonl"), "--out", str(evaluated),
                     "--json"]) == 0
        capsys.readouterr()
        read = lambda path: [json.loads(line)["generated"] for line in path.read_text().splitlines()]
        outputs[name] = (ask, read(out), read(evaluated))
    assert outputs["gguf"] == outputs["hf"] and outputs["hf"][0].strip()


def test_serve_answers_concurrent_chats_and_chat_works(tiny_gguf, gguf_engine, tmp_path):
    questions = ("Name three colours.", "Say hi.")
    expected = [generate(gguf_engine, gguf_engine.encode(Example(q)), SamplingParams(max_new_tokens=16),
                         template=gguf_engine.template)[1] for q in questions]
    server = start_server(tiny_gguf, tmp_path, "--template", "alpaca", "--max-batch", "2")
    try:
        answers = [None, None]

        def ask(i):
            answers[i] = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
                "model": "tiny.gguf", "messages": [{"role": "user", "content": questions[i]}], "max_tokens": 16,
                "temperature": 0}).json()
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        health = httpx.get(server.url + "/health", timeout=10).json()
    finally:
        stop_server(server)
    assert [a["choices"][0]["message"]["content"] for a in answers] == expected
    assert health["engine"] == "llama.cpp" and health["max_batch"] == 2 and health["steps"] > 0

    script = "".join(f"/reset\n{q}\n" for q in questions) + "/exit\n"
    proc = subprocess.run([sys.executable, "-m", "pacos.cli", "chat", str(tiny_gguf), "--template", "alpaca",
                           "--max-new-tokens", "16"], input=script, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert [part.split("\nyou> ")[0] for part in proc.stdout.split("assistant> ")[1:]] == expected


def pacos_without_llama_cpp(*args):
    code = ("import sys; sys.modules['llama_cpp'] = None; from pacos.cli import main; "
            f"sys.exit(main({list(map(str, args))!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("command", [("ask", "{gguf}", "hi"), ("serve", "{gguf}", "--port", "0", "--no-feedback")])
def test_missing_llama_cpp_is_one_line(tiny_gguf, command):
    proc = pacos_without_llama_cpp(*(a.format(gguf=tiny_gguf) for a in command))
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "llama-cpp-python" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage", "header only"])
def test_a_corrupt_or_truncated_gguf_is_one_line(tiny_gguf, tmp_path, capsys, damage):
    data = tiny_gguf.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(4096),
                     "header only": data[:64]}[damage])
    assert main(["ask", str(bad), "hi"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.gguf" in err and "Traceback" not in err
