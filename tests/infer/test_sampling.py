"""Per-row sampling: equal to transformers' logits processors on the same logits, greedy, penalties as
documented, seeds reproduce, and a row that cannot be sampled fails alone while any value that passes
check() samples without NaN."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.infer.params import GREEDY_BELOW, SamplingError, SamplingParams
from pacos.infer.sampling import (
    SamplingFailure,
    apply_penalties,
    is_penalised,
    next_tokens,
    sample_row,
    warp,
)


class Row:
    def __init__(self, sampling, prompt=(), output=(), seed=None):
        self.sampling, self.prompt_ids, self.output_ids = sampling, list(prompt), list(output)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = lambda x: torch.isfinite(x).nonzero().flatten().tolist()
    at = lambda **kw: warp(logits, SamplingParams(temperature=1.0, **kw))
    assert kept(at(top_k=2)) == [0, 1]
    assert kept(at(top_p=0.5)) == [0]  # 0.5 alone covers top_p
    assert kept(at(top_p=0.7)) == [0, 1]
    assert kept(at(top_p=0.01)) == [0]  # the best token always stays
    assert kept(at(min_p=0.5)) == [0, 1]  # 0.3 >= 0.5 x 0.5; 0.15 is not
    assert kept(at(min_p=1.0)) == [0]


def test_penalties():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.0])
    rep = apply_penalties(logits, SamplingParams(repetition_penalty=2.0), [0], [1])
    assert rep.tolist() == [1.0, -4.0, 1.0, 0.0]
    pf = apply_penalties(logits, SamplingParams(presence_penalty=0.5, frequency_penalty=1.0), [3], [2, 2, 0])
    assert pf.tolist() == [2.0 - 1.5, -2.0, 1.0 - 2.5, 0.0]  # prompt tokens don't count for OpenAI penalties


def test_greedy_rows_and_sampled_rows_in_one_batch():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    rows = [Row(SamplingParams()), Row(SamplingParams(presence_penalty=2.0), output=[0, 0])]
    assert next_tokens(logits, rows) == [1, 0]  # penalised greedy row: 3 - 2 = 1 still beats 0
    rows[1].sampling = SamplingParams(presence_penalty=2.0, frequency_penalty=1.0)
    assert next_tokens(logits, rows) == [1, 1]  # 3 - 2 - 2 = -1 now loses to 0


def test_seeded_sampling_reproduces_and_covers_the_nucleus():
    logits = torch.arange(50).float() / 10
    p = SamplingParams(temperature=1.0, top_k=5)
    draws = [sample_row(logits.clone(), p, torch.Generator().manual_seed(s)) for s in range(40)]
    again = [sample_row(logits.clone(), p, torch.Generator().manual_seed(s)) for s in range(40)]
    assert draws == again
    assert set(draws) <= set(torch.topk(logits, 5).indices.tolist()) and len(set(draws)) > 1


def test_a_row_with_non_finite_logits_fails_in_its_place_and_the_others_are_chosen():
    nan, inf = float("nan"), float("inf")
    logits = torch.tensor([[0.0, 5.0, 1.0], [1.0, nan, 0.0], [0.0, inf, 1.0], [-inf, -inf, -inf], [2.0, 0.0, 1.0]])
    params = [SamplingParams(), SamplingParams(), SamplingParams(temperature=1.0), SamplingParams(),
              SamplingParams(temperature=1.0, presence_penalty=1.0)]
    rows = [Row(p, output=[1], seed=0) for p in params]
    chosen = next_tokens(logits, rows)
    assert chosen[0] == 1 and chosen[4] in (0, 1, 2)
    assert all(isinstance(c, SamplingFailure) for c in chosen[1:4])


def test_temperatures_below_greedy_below_are_greedy():
    logits = torch.tensor([1.0, 1.0 - 1e-6])  # 0.1 apart once divided by GREEDY_BELOW
    below = SamplingParams(temperature=GREEDY_BELOW * 0.999)
    at = SamplingParams(temperature=GREEDY_BELOW)
    assert {sample_row(logits, below, torch.Generator().manual_seed(s)) for s in range(40)} == {0}
    assert {sample_row(logits, at, torch.Generator().manual_seed(s)) for s in range(40)} == {0, 1}
    assert sample_row(logits, SamplingParams(temperature=1e-320)) == 0


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)  # the whole float32 range


@settings(max_examples=200, deadline=None)
@given(logits=st.lists(finite32, min_size=1, max_size=12), output=st.lists(st.integers(0, 11), max_size=6),
       temperature=st.one_of(st.just(0.0), st.floats(0, 2)), top_p=st.floats(1e-3, 1),
       top_k=st.integers(0, 20), rep=st.floats(0.01, 10), presence=st.floats(-2, 2), frequency=st.floats(-2, 2),
       seed=st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_any_values_that_pass_check_sample_a_token_from_any_finite_logits(logits, output, temperature, top_p, top_k,
                                                                          rep, presence, frequency, seed):
    params = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=rep,
                            presence_penalty=presence, frequency_penalty=frequency, seed=seed)
    params.check()
    vocab = len(logits)
    row = Row(params, prompt=[0], output=[t % vocab for t in output])
    row.generator = torch.Generator().manual_seed(params.seed64)
    (token,) = next_tokens(torch.tensor([logits]), [row])
    assert isinstance(token, int) and 0 <= token < vocab


def test_penalties_cannot_overflow_into_nan():
    huge = torch.tensor([3e38, -3e38, 1.0])
    up = apply_penalties(huge, SamplingParams(repetition_penalty=0.01), [0, 1], [])  # 3e38 / 0.01 overflows
    assert torch.isfinite(up[0]) and up[1] == -3e36 and up[2] == 1.0
    assert sample_row(up, SamplingParams(temperature=1e-5), torch.Generator().manual_seed(0)) == 0
    down = apply_penalties(huge, SamplingParams(repetition_penalty=10.0), [1], [])  # -3e38 * 10: floored
    assert down[1] == torch.finfo(torch.float32).min
    masked = apply_penalties(torch.tensor([-math.inf, 1.0]), SamplingParams(repetition_penalty=2.0), [0, 1], [])
    assert masked.tolist() == [-math.inf, 0.5]  # a token ruled out before stays ruled out
    assert sample_row(down, SamplingParams(temperature=2.0), torch.Generator().manual_seed(0)) in (0, 2)


def test_check_names_the_field_whatever_its_type():
    for field, value in (("temperature", "hot"), ("top_p", None), ("repetition_penalty", True)):
        try:
            SamplingParams(**{field: value}).check()
        except SamplingError as e:
            assert e.param == field and field in str(e)
        else:
            raise AssertionError(f"{field}={value!r} passed check()")


def transformers_distribution(logits, params: SamplingParams, prompt, output):
    """What transformers' `generate` samples from: its own processors, chained in its order."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    chain = []
    if params.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    chain.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k:
        chain.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        chain.append(TopPLogitsWarper(params.top_p))
    if params.min_p > 0:
        chain.append(MinPLogitsWarper(params.min_p))
    ids = torch.tensor([list(prompt) + list(output)])
    return LogitsProcessorList(chain)(ids, logits[None].clone())[0].softmax(-1)


def ours(logits, params: SamplingParams, prompt, output):
    line = apply_penalties(logits, params, list(prompt), list(output)) if is_penalised(params) else logits
    return warp(line, params).softmax(-1)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10 ** 6), vocab=st.integers(2, 300), scale=st.floats(0.1, 8),
       temperature=st.floats(0.05, 2), top_k=st.integers(0, 50), top_p=st.one_of(st.just(1.0), st.floats(0.05, 1)),
       min_p=st.one_of(st.just(0.0), st.floats(0.0, 0.5)), rep=st.one_of(st.just(1.0), st.floats(0.5, 2.0)),
       history=st.lists(st.integers(0, 299), max_size=20))
def test_the_sampler_equals_transformers_logits_processors(seed, vocab, scale, temperature, top_k, top_p, min_p,
                                                           rep, history):
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * scale
    history = [t % vocab for t in history]
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=rep)
    params.check()
    prompt, output = history[: len(history) // 2], history[len(history) // 2:]
    theirs, mine = transformers_distribution(logits, params, prompt, output), ours(logits, params, prompt, output)
    assert torch.equal(theirs > 0, mine > 0), "a different set of tokens can be sampled"
    assert torch.allclose(theirs, mine, atol=1e-6, rtol=1e-4)


def test_the_comparison_sees_a_difference():
    """The equality above would catch a sampler that, say, ignored min_p or applied top-k before temperature."""
    logits = torch.randn(100, generator=torch.Generator().manual_seed(0)) * 3
    params = SamplingParams(temperature=1.0, min_p=0.2)
    theirs = transformers_distribution(logits, params, [], [])
    assert not torch.equal(theirs > 0, ours(logits, SamplingParams(temperature=1.0), [], []) > 0)
    tempered = SamplingParams(temperature=0.5, top_p=0.9)
    assert not torch.allclose(transformers_distribution(logits / 3, tempered, [], []),
                              ours(logits / 3, SamplingParams(temperature=1.0, top_p=0.9), [], []), atol=1e-6)
