"""Choosing the next token from logits, one row per sequence: penalties, temperature, top-k, top-p, seeds.

The batching engine decodes many requests in one forward pass, each with its own sampling parameters,
so sampling works row by row on plain tensors (greedy rows take a vectorised argmax). Penalties follow
their sources: `repetition_penalty` as in transformers (divides positive logits, multiplies negative ones,
over prompt and output), `presence_penalty`/`frequency_penalty` as in the OpenAI API (subtracted, over the
output only).

A row that cannot be sampled (non-finite logits, a value that fails) gets its exception in its place, so
the engine fails that sequence alone; for any values that pass `SamplingParams.check()` the arithmetic stays
finite (penalties clamp overflow, temperature divides logits shifted so the best is 0).
"""

from __future__ import annotations

import math

from pacos.errors import PacosError
from pacos.infer.generate import SamplingParams


class SamplingFailure(PacosError):
    """One row's token could not be chosen (its logits or values are not finite): that sequence alone fails."""


def is_penalised(params: SamplingParams) -> bool:
    return params.repetition_penalty != 1.0 or params.presence_penalty != 0.0 or params.frequency_penalty != 0.0


def apply_penalties(logits, params: SamplingParams, prompt_ids: list[int], output_ids: list[int]):
    """A penalised copy of one row of logits (1-D float tensor)."""
    import torch

    logits = logits.clone()
    if params.repetition_penalty != 1.0 and (prompt_ids or output_ids):
        seen = torch.tensor(sorted(set(prompt_ids) | set(output_ids)), dtype=torch.long, device=logits.device)
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty)
    if (params.presence_penalty or params.frequency_penalty) and output_ids:
        counts = torch.bincount(torch.tensor(output_ids, device=logits.device), minlength=logits.shape[-1])
        counts = counts[: logits.shape[-1]].to(logits.dtype)
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0).to(logits.dtype)
    # Dividing a large logit by a small penalty can overflow to +inf, and inf - inf is NaN further on;
    # -inf (a token ruled out) is kept.
    return logits.clamp_(max=torch.finfo(logits.dtype).max)


def filter_top_k_top_p(logits, top_k: int, top_p: float):
    """Logits with everything outside the top-k and the top-p nucleus set to -inf (the best token always stays)."""
    import torch

    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already cover top_p.
        drop = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop[0] = False
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
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
    # Shifted so the best token sits at 0: whatever the temperature, nothing overflows and the softmax's sum is >= 1.
    logits = filter_top_k_top_p((logits.float() - top) / params.temperature, params.top_k, params.top_p)
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def next_tokens(logits, rows: list) -> list[int | Exception]:
    """The next token of every row of a [batch, vocab] logits tensor, or the exception that row raised.

    Each row object has `.sampling` (SamplingParams), `.prompt_ids`, `.output_ids` and `.generator`.
    A row that cannot be sampled (non-finite logits, a value that fails) gets its exception in its place, so
    the caller fails that sequence alone.
    """
    import torch

    logits = logits.float()
    simple = [i for i, r in enumerate(rows) if r.sampling.greedy and not is_penalised(r.sampling)]
    chosen: dict[int, int | Exception] = {}
    if simple:
        best = torch.argmax(logits[simple], dim=-1)
        finite = torch.isfinite(logits[simple].gather(1, best[:, None])[:, 0]).tolist()
        for i, token, ok in zip(simple, best.tolist(), finite):
            chosen[i] = token if ok else SamplingFailure("the logits are not finite (NaN or inf)")
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
