"""Continuous batching: rows joining and leaving mid-generation give exactly what one-at-a-time generation gives."""

import pytest
import torch

from pacos.data.records import Example
from pacos.errors import PacosError
from pacos.infer.batching import BatchEngine, QueueFull, Sequence
from pacos.infer.hf_engine import TransformersEngine
from pacos.infer.params import SamplingParams


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    """The model, tokenizer and prompt encoding of the engine every command uses (its own loop stays idle)."""
    with TransformersEngine.load(str(tiny_model_dir), kind="instruction") as engine:
        yield engine


def reference(gen, ids, n):
    """Greedy continuation by transformers' own generate, one prompt at a time, no EOS."""
    with torch.no_grad():
        out = gen.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(ids):].tolist()


def test_staggered_admission_and_departure_match_single_generation(gen):
    prompts = [gen.encode(Example(text)) for text in ("hello there", "sort: 3 1 2 and more words", "x")]
    lengths = [24, 6, 16]  # the middle one leaves early, so its cache row is dropped mid-batch
    engine = BatchEngine(gen.model, gen.tokenizer, max_batch=8)
    seqs = []
    for i, (ids, n) in enumerate(zip(prompts, lengths)):
        seqs.append(Sequence(ids, SamplingParams(max_new_tokens=n), lambda d, f: None))
        engine.submit(seqs[-1])
        for _ in range(3 * i + 1):  # the others are mid-generation when the next one arrives
            engine.step()
    while engine.has_work:
        engine.step()
    for seq, ids, n in zip(seqs, prompts, lengths):
        assert seq.finish_reason == "length"
        assert seq.output_ids == reference(gen, ids, n)
    assert engine.cache is None and engine.running == []


def test_cancel_drops_the_row_and_leaves_the_others_intact(gen):
    a, b = gen.encode(Example("first prompt")), gen.encode(Example("second, longer prompt here"))
    events = []
    engine = BatchEngine(gen.model, gen.tokenizer)
    sa = Sequence(a, SamplingParams(max_new_tokens=12), lambda d, f: events.append(("a", d, f)))
    sb = Sequence(b, SamplingParams(max_new_tokens=12), lambda d, f: None)
    engine.submit(sa)
    engine.submit(sb)
    for _ in range(3):
        engine.step()
    engine.cancel(sb)
    engine.step()
    assert engine.running == [sa] and engine.cancelled == 1 and engine.mask.shape[0] == 1
    while engine.has_work:
        engine.step()
    assert sa.output_ids == reference(gen, a, 12) and sb.finish_reason is None
    assert events[-1][2] == "length" and "".join(d for _, d, _ in events) == sa.text


def test_stop_strings_eos_and_events(gen):
    ids = gen.encode(Example("hello there"))
    full = gen.tokenizer.decode(reference(gen, ids, 20), skip_special_tokens=True)
    stop = next(c for c in full[3:] if c.isalnum())
    seen = []
    seq = BatchEngine(gen.model, gen.tokenizer).run(
        Sequence(ids, SamplingParams(max_new_tokens=20), lambda d, f: seen.append((d, f)), stops=(stop,)))
    assert seq.finish_reason == "stop" and seq.text == full[: full.index(stop)]
    assert "".join(d for d, _ in seen) == seq.text and seen[-1][1] == "stop"
    first = reference(gen, ids, 1)[0]
    seq = BatchEngine(gen.model, gen.tokenizer).run(
        Sequence(ids, SamplingParams(max_new_tokens=20), lambda d, f: None, stop_ids=frozenset([first])))
    assert seq.finish_reason == "stop" and seq.output_ids == [first] and seq.text == ""


def test_queue_bound_and_context_check(gen):
    engine = BatchEngine(gen.model, gen.tokenizer, max_batch=1, max_waiting=2)
    make = lambda: Sequence([1, 5, 6], SamplingParams(max_new_tokens=2), lambda d, f: None)
    engine.submit(make())
    engine.submit(make())
    with pytest.raises(QueueFull):
        engine.submit(make())
    with pytest.raises(PacosError, match="context"):
        engine.submit(Sequence([1] * engine.context, SamplingParams(), lambda d, f: None))


def test_seeded_sampling_is_reproducible_in_a_batch(gen):
    ids = gen.encode(Example("tell me"))
    p = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    engine = BatchEngine(gen.model, gen.tokenizer)
    seqs = [Sequence(ids, p, lambda d, f: None) for _ in range(3)]
    for s in seqs:
        engine.submit(s)
    while engine.has_work:
        engine.step()
    assert seqs[0].output_ids == seqs[1].output_ids == seqs[2].output_ids


def test_freed_slots_are_reused_in_place_and_longer_prompts_join(gen):
    """Six sequences through two slots: each joining row takes the slot a finished one left (a short prompt
    after a long one, and a prompt longer than the batch so far), the other row going on; every output equals
    transformers' own one-at-a-time generation."""
    texts = ["a", "a much longer prompt with many words in it, longer than the others", "mid-length prompt",
             "x", "another fairly long prompt, longer than what is running when it joins", "end"]
    lengths = [3, 14, 5, 9, 4, 6]
    prompts = [gen.encode(Example(t)) for t in texts]
    engine = BatchEngine(gen.model, gen.tokenizer, max_batch=2, max_waiting=8)
    seqs = [Sequence(ids, SamplingParams(max_new_tokens=n), lambda d, f: None) for ids, n in zip(prompts, lengths)]
    for seq in seqs:
        engine.submit(seq)
    slots_seen = set()
    while engine.has_work:
        engine.step()
        slots_seen.add(len(engine.rows))
    assert slots_seen <= {0, 1, 2}  # never more than two slots: joiners took freed ones
    for seq, ids, n in zip(seqs, prompts, lengths):
        assert seq.finish_reason == "length" and seq.output_ids == reference(gen, ids, n)
