"""The one sampler: choosing each sequence's next token from its row of logits, with its own parameters.

Every generating command goes through the engine, and the engine through `next_tokens`, so what is
evaluated is what is served. Rows are independent: a batch mixes greedy and sampled requests, each with
its own penalties, temperature, top-k, top-p, min-p and seed (greedy, unpenalised rows take one
vectorised argmax).

The order and arithmetic are transformers' logits processors' (`RepetitionPenaltyLogitsProcessor`, then
`TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`, `MinPLogitsWarper`, as `generate`
chains them); tests/infer/test_sampling.py holds the two equal on the same logits. Presence and frequency
penalties follow the OpenAI API (subtracted, over the output only), which transformers lacks; they are
applied after the repetition penalty, before temperature, as vLLM does.

A row that cannot be sampled (non-finite logits, a value that fails) gets its exception in its place, so
the engine fails that sequence alone; for any values that pass `SamplingParams.check()` the arithmetic stays
finite (penalties clamp overflow, temperature divides logits shifted so the best is 0).
"""

from __future__ import annotations

import math

from pacos.errors import PacosError
from pacos.infer.params import SamplingParams


class SamplingFailure(PacosError):
    """One row's token could not be chosen (its logits or values are not finite): that sequence alone fails."""


def is_penalised(params: SamplingParams) -> bool:
    return params.repetition_penalty != 1.0 or params.presence_penalty != 0.0 or params.frequency_penalty != 0.0


def apply_penalties(logits, params: SamplingParams, prompt_ids: list[int], output_ids: list[int]):
    """A penalised copy of one row of logits (1-D float tensor)."""
    import torch

    ruled_out = logits == float("-inf")
    logits = logits.clone()
    if params.repetition_penalty != 1.0 and (prompt_ids or output_ids):
        seen = torch.tensor(sorted(set(prompt_ids) | set(output_ids)), dtype=torch.long, device=logits.device)
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty)
    if (params.presence_penalty or params.frequency_penalty) and output_ids:
        counts = torch.bincount(torch.tensor(output_ids, device=logits.device), minlength=logits.shape[-1])
        counts = counts[: logits.shape[-1]].to(logits.dtype)
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0).to(logits.dtype)
    # A penalty can overflow a large logit to +-inf: +inf makes inf - inf = NaN further on, and -inf would rule
    # a token out (every token, in a one-token vocabulary); the finite range is kept, and only a token that was
    # ruled out before stays -inf.
    finfo = torch.finfo(logits.dtype)
    return logits.clamp_(min=finfo.min, max=finfo.max).masked_fill_(ruled_out, float("-inf"))


def warp(logits, params: SamplingParams):
    """Temperature, then top-k, top-p and min-p on one row of (penalised) logits: what is sampled from.

    Tokens ruled out are -inf; the best token always stays. The logits are shifted so the best is 0 before
    dividing by the temperature (softmax does not change, nothing overflows).
    """
    import torch

    top = logits.max()
    logits = (logits.float() - top) / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        # transformers' rule: sorted ascending, drop the tokens whose cumulative mass stays <= 1 - top_p.
        ascending, order = torch.sort(logits, descending=False)
        drop = ascending.softmax(-1).cumsum(-1) <= (1 - params.top_p)
        drop[-1] = False
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    if params.min_p > 0.0:
        probs = logits.softmax(-1)
        drop = probs < params.min_p * probs.max()
        drop[int(torch.argmax(probs))] = False
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_row(logits, params: SamplingParams, generator=None) -> int:
    """One token id from one row of (already penalised) logits; SamplingFailure if they are not usable."""
    import torch

    best = int(torch.argmax(logits))  # argmax lands on a NaN if there is one
    top = float(logits[best])
    if not math.isfinite(top):
        raise SamplingFailure(f"the logits are not finite (best logit {top})")
    if params.greedy:
        return best
    if not math.isfinite(params.temperature):
        raise SamplingFailure(f"temperature {params.temperature!r} is not finite")
    probs = warp(logits, params).softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def next_tokens(logits, rows: list) -> list[int | Exception]:
    """The next token of every row of a [batch, vocab] logits tensor, or the exception that row raised.

    Each row object has `.sampling` (SamplingParams), `.prompt_ids`, `.output_ids` and `.generator`.
    A row that cannot be sampled (non-finite logits, a value that fails) gets its exception in its place, so
    the caller fails that sequence alone.
    """
    logits = logits.float()
    simple = [i for i, r in enumerate(rows) if r.sampling.greedy and not is_penalised(r.sampling)]
    chosen: dict[int, int | Exception] = {}
    if simple:
        picked = logits if len(simple) == len(rows) else logits[simple]  # all greedy: no copy of the rows
        top, best = picked.max(dim=-1)  # max lands on a NaN if there is one, as argmax does
        for i, token, value in zip(simple, best.tolist(), top.tolist()):
            chosen[i] = token if math.isfinite(value) else SamplingFailure("the logits are not finite (NaN or inf)")
    for i, row in enumerate(rows):
        if i in chosen:
            continue
        try:
            line = logits[i]
            if is_penalised(row.sampling):
                line = apply_penalties(line, row.sampling, row.prompt_ids, row.output_ids)
            chosen[i] = sample_row(line, row.sampling, row.generator)
        except Exception as e:  # noqa: BLE001  (one row's failure is that row's, never the batch's)
            chosen[i] = e
    return [chosen[i] for i in range(len(rows))]
