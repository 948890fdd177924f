"""Per-row sampling: greedy, top-k/top-p filtering, penalties as documented, seeds reproduce, and a row that
cannot be sampled fails alone while any value that passes check() samples without NaN."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.infer.generate import GREEDY_BELOW, SamplingError, SamplingParams
from pacos.infer.sampling import (
    SamplingFailure,
    apply_penalties,
    filter_top_k_top_p,
    next_tokens,
    sample_row,
)


class Row:
    def __init__(self, sampling, prompt=(), output=(), seed=None):
        self.sampling, self.prompt_ids, self.output_ids = sampling, list(prompt), list(output)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = lambda x: torch.isfinite(x).nonzero().flatten().tolist()
    assert kept(filter_top_k_top_p(logits, 2, 1.0)) == [0, 1]
    assert kept(filter_top_k_top_p(logits, 0, 0.5)) == [0]  # 0.5 alone covers top_p
    assert kept(filter_top_k_top_p(logits, 0, 0.7)) == [0, 1]
    assert kept(filter_top_k_top_p(logits, 0, 0.01)) == [0]  # the best token always stays


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
    down = apply_penalties(huge, SamplingParams(repetition_penalty=10.0), [1], [])  # -3e38 * 10: ruled out
    assert down[1] == -math.inf
    assert sample_row(down, SamplingParams(temperature=2.0), torch.Generator().manual_seed(0)) in (0, 2)


def test_check_names_the_field_whatever_its_type():
    for field, value in (("temperature", "hot"), ("top_p", None), ("repetition_penalty", True)):
        try:
            SamplingParams(**{field: value}).check()
        except SamplingError as e:
            assert e.param == field and field in str(e)
        else:
            raise AssertionError(f"{field}={value!r} passed check()")
