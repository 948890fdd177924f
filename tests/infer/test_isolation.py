"""The batching engine keeps failures with their own request: a row that cannot be sampled, a failed forward
pass or prefill, or a broken consumer ends those sequences only; everyone else gets exactly their tokens."""

from dataclasses import replace

import pytest
import torch

from pacos.data.records import Example
from pacos.infer.batching import BatchEngine, Sequence
from pacos.infer.files import answer_records
from pacos.infer.hf_engine import TransformersEngine
from pacos.infer.params import SamplingError, SamplingParams

TEXTS = ("hello there", "sort: 3 1 2", "x", "a longer prompt with several words in it", "tell me", "why?")
N = 10  # tokens per sequence


class FaultyModel:
    """The real tiny model with a fault injected by the test: `fail_next` ("decode" or "prefill") raises on
    the next such call, once; `poison` (a Sequence) gets NaN logits on every decode pass it is in."""

    def __init__(self, model):
        self.model, self.config, self.forward = model, model.config, model.forward
        self.engine = None
        self.fail_next: str | None = None
        self.poison: Sequence | None = None

    def parameters(self):
        return self.model.parameters()

    def __call__(self, **kwargs):
        kind = "prefill" if "logits_to_keep" in kwargs else "decode"
        if self.fail_next == kind:
            self.fail_next = None
            raise RuntimeError(f"injected {kind} failure\nsecond line of the message")
        out = self.model(**kwargs)
        if kind == "decode" and self.poison in self.engine.rows:
            out.logits[self.engine.rows.index(self.poison)] = float("nan")
        return out


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    """The model, tokenizer and prompt encoding of the engine every command uses (its own loop stays idle)."""
    with TransformersEngine.load(str(tiny_model_dir), kind="instruction") as engine:
        yield engine


@pytest.fixture(scope="module")
def prompts(gen):
    return [gen.encode(Example(t)) for t in TEXTS]


@pytest.fixture(scope="module")
def greedy_refs(gen, prompts):
    """Greedy continuations by transformers' own generate, one prompt at a time, no EOS."""
    out = []
    for ids in prompts:
        with torch.no_grad():
            row = gen.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones_like(torch.tensor([ids])),
                                     max_new_tokens=N, min_new_tokens=N, do_sample=False)
        out.append(row[0, len(ids):].tolist())
    return out


def faulty_engine(gen, **kwargs):
    model = FaultyModel(gen.model)
    engine = BatchEngine(model, gen.tokenizer, **kwargs)
    model.engine = engine
    return engine, model


def finish(engine):
    while engine.has_work:
        engine.step()


SEEDED = SamplingParams(max_new_tokens=N, temperature=1.0, top_p=0.9, seed=11)
POISONS = {  # values no request can send (submit refuses them): set on a running row to make its sampling fail
    "nan temperature": dict(temperature=float("nan")),
    "nan repetition penalty": dict(repetition_penalty=float("nan")),
    "infinite presence penalty": dict(presence_penalty=float("inf")),
    "negative top_k": dict(temperature=1.0, top_k=-1),
    "model gives NaN logits": None,
}


@pytest.mark.parametrize("poison", POISONS, ids=list(POISONS))
def test_one_unsamplable_row_fails_alone_and_the_others_are_untouched(gen, prompts, greedy_refs, poison):
    engine, model = faulty_engine(gen)
    events = []
    seqs = []
    for i, ids in enumerate(prompts):
        sampling = SEEDED if i == 4 else SamplingParams(max_new_tokens=N)
        seqs.append(Sequence(ids, sampling, lambda d, f, i=i: events.append((i, d, f))))
        engine.submit(seqs[-1])
    bad = seqs[2]
    for _ in range(3):
        engine.step()
    if POISONS[poison] is None:
        model.poison = bad
    else:
        bad.sampling = replace(bad.sampling, **POISONS[poison])
    finish(engine)

    assert bad.finish_reason == "error" and len(bad.output_ids) == 3
    assert bad.error.startswith("sampling failed: ") and "\n" not in bad.error
    assert [e for e in events if e[0] == 2][-1] == (2, "", "error")
    alone = BatchEngine(gen.model, gen.tokenizer).run(Sequence(prompts[4], SEEDED, lambda d, f: None))
    for i, seq in enumerate(seqs):
        if seq is bad:
            continue
        assert seq.finish_reason == "length" and seq.error == ""
        assert seq.output_ids == (alone.output_ids if i == 4 else greedy_refs[i])
    assert engine.running == [] and engine.cache is None


def test_failed_decode_fails_its_rows_but_the_waiting_are_served(gen, prompts, greedy_refs):
    engine, model = faulty_engine(gen, max_batch=2)
    a, b, c = (Sequence(prompts[i], SamplingParams(max_new_tokens=N), lambda d, f: None) for i in (0, 1, 3))
    engine.submit(a)
    engine.submit(b)
    for _ in range(3):
        engine.step()
    engine.submit(c)  # waits: the batch is full
    model.fail_next = "decode"
    engine.step()
    for seq in (a, b):
        assert seq.finish_reason == "error" and len(seq.output_ids) == 3
        assert seq.error == "generation failed: RuntimeError: injected decode failure"
    assert engine.running == [c] and c.finish_reason is None  # admitted in the same step
    finish(engine)
    assert c.finish_reason == "length" and c.output_ids == greedy_refs[3]


def test_failed_prefill_fails_only_the_new_rows_and_running_ones_keep_their_cache(gen, prompts, greedy_refs):
    engine, model = faulty_engine(gen)
    a = Sequence(prompts[0], SamplingParams(max_new_tokens=N), lambda d, f: None)
    engine.submit(a)
    engine.step()
    b = Sequence(prompts[1], SamplingParams(max_new_tokens=N), lambda d, f: None)
    engine.submit(b)
    model.fail_next = "prefill"
    engine.step()
    assert b.finish_reason == "error" and "injected prefill failure" in b.error and b.output_ids == []
    assert engine.running == [a] and len(a.output_ids) == 2
    # A prompt the model cannot embed, admitted beside a good one: the group is retried row by row.
    vocab = gen.model.config.vocab_size
    bad = Sequence(prompts[2] + [vocab + 5], SamplingParams(max_new_tokens=N), lambda d, f: None)
    c = Sequence(prompts[3], SamplingParams(max_new_tokens=N), lambda d, f: None)
    engine.submit(bad)
    engine.submit(c)
    finish(engine)
    assert bad.finish_reason == "error" and bad.error.startswith("generation failed: IndexError")
    assert a.output_ids == greedy_refs[0] and c.output_ids == greedy_refs[3]


def test_a_consumer_whose_callback_raises_is_dropped_without_harming_others(gen, prompts, greedy_refs):
    engine = BatchEngine(gen.model, gen.tokenizer)

    def broken(delta, finish):
        raise ValueError("client went away badly")

    gone = Sequence(prompts[0], SamplingParams(max_new_tokens=N), broken)
    ok = Sequence(prompts[1], SamplingParams(max_new_tokens=N), lambda d, f: None)
    engine.submit(gone)
    engine.submit(ok)
    finish(engine)
    assert gone.cancelled and len(gone.output_ids) < N and engine.cancelled == 1
    assert ok.finish_reason == "length" and ok.output_ids == greedy_refs[1]


BAD_VALUES = [
    ("temperature", float("nan")), ("temperature", float("1e400")), ("temperature", 2.5), ("temperature", "hot"),
    ("top_p", 0.0), ("top_p", float("nan")), ("repetition_penalty", 1e-320), ("repetition_penalty", float("-inf")),
    ("presence_penalty", -3.0), ("frequency_penalty", float("nan")), ("top_k", -1), ("max_new_tokens", 0),
    ("seed", 1.5), ("seed", "7"),
]


@pytest.mark.parametrize("param,value", BAD_VALUES)
def test_submit_refuses_values_that_could_not_be_sampled(gen, prompts, param, value):
    engine = BatchEngine(gen.model, gen.tokenizer)
    seq = Sequence(prompts[0], replace(SamplingParams(), **{param: value}), lambda d, f: None)
    with pytest.raises(SamplingError) as err:
        engine.submit(seq)
    assert err.value.param == param and param in str(err.value)
    assert not engine.has_work


def test_denormal_temperature_is_greedy_in_the_step_loop_and_through_the_engine(gen, prompts, greedy_refs):
    tiny = SamplingParams(max_new_tokens=N, temperature=1e-320, top_k=3, seed=5)
    seq = BatchEngine(gen.model, gen.tokenizer).run(Sequence(prompts[0], tiny, lambda d, f: None))
    assert seq.finish_reason == "length" and seq.output_ids == greedy_refs[0]
    records = [Example(t) for t in TEXTS[:2]]
    assert answer_records(gen, records, tiny) == answer_records(gen, records, SamplingParams(max_new_tokens=N))


def test_seeds_past_64_bits_are_taken_modulo_2_64(gen, prompts):
    def sample(seed):
        p = SamplingParams(max_new_tokens=N, temperature=1.5, seed=seed)
        return BatchEngine(gen.model, gen.tokenizer).run(Sequence(prompts[4], p, lambda d, f: None)).output_ids

    big = 2 ** 63 - 1 + 3  # a request's largest seed plus a choice index
    assert sample(big) == sample(big - 2 ** 64)
    assert sample(2 ** 64 + 5) == sample(5) and len(sample(5)) == N
