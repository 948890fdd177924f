"""Per-row sampling: greedy, top-k/top-p filtering, penalties as documented, seeds reproduce."""

import torch

from pacos.infer.generate import SamplingParams
from pacos.infer.sampling import (
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
