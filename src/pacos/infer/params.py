"""Sampling parameters: what every generating command, the server and the engine take, checked in one place.

Kept free of torch and transformers so request parsing imports nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pacos.errors import PacosError
from pacos.options import option

# Bounds that keep every sampling step finite in float32 (logits / temperature, logits / penalty).
MAX_TEMPERATURE = 2.0
GREEDY_BELOW = 1e-5  # a temperature under this samples greedily (vLLM's rule): logits / 1e-320 would be inf
MIN_TOP_P = 1e-3
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 1e-2, 10.0


class SamplingError(PacosError):
    """A sampling value out of range; `param` is its name (the server answers 400 naming it)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass
class SamplingParams:
    """How to choose each next token (the flags of every generating command, and the server's fields).

    `check()` holds the ranges; every engine calls it when a generation starts, so Python callers get the same
    errors as the command line and the API. It is not run on construction: the server derives per-choice
    copies (seed + index) that the engine reduces to 64 bits first.
    """

    max_new_tokens: int = option(256, "most tokens to generate per answer")
    temperature: float = option(0.0, "0 = greedy (deterministic); up to 2")
    top_p: float = option(1.0, "nucleus sampling: keep the most likely tokens covering this mass (1 = off)")
    top_k: int = option(0, "keep only the k most likely tokens (0 = off)")
    min_p: float = option(0.0, "drop tokens less likely than min_p x the best one's probability (0 = off)")
    repetition_penalty: float = option(1.0, "transformers' repetition penalty over prompt and output (1 = off)")
    seed: int | None = option(None, "sampling seed (a record's seed is seed + its index)")
    # OpenAI-style penalties, subtracted over the output tokens only.
    presence_penalty: float = option(0.0, "OpenAI presence penalty, -2 to 2 (0 = off)")
    frequency_penalty: float = option(0.0, "OpenAI frequency penalty, -2 to 2 (0 = off)")

    def check(self) -> None:
        """Finite values in range, or SamplingError naming the field: nothing reaches the sampler that could
        turn probabilities into NaN (a denormal temperature or penalty overflows the logits to inf)."""
        def need(ok: bool, param: str, rule: str) -> None:
            if not ok:
                raise SamplingError(f"'{param}' must be {rule} (got {getattr(self, param)!r})", param)

        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), name,
                 "a finite number")
        need(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1")
        need(0 <= self.temperature <= MAX_TEMPERATURE, "temperature", f"between 0 (greedy) and {MAX_TEMPERATURE}")
        need(MIN_TOP_P <= self.top_p <= 1, "top_p", f"between {MIN_TOP_P} and 1")
        need(0 <= self.min_p <= 1, "min_p", "between 0 (off) and 1")
        need(isinstance(self.top_k, int) and self.top_k >= 0, "top_k", "an integer >= 0 (0 = off)")
        need(MIN_REPETITION_PENALTY <= self.repetition_penalty <= MAX_REPETITION_PENALTY, "repetition_penalty",
             f"between {MIN_REPETITION_PENALTY} and {MAX_REPETITION_PENALTY} (1 = off)")
        need(-2 <= self.presence_penalty <= 2, "presence_penalty", "between -2 and 2")
        need(-2 <= self.frequency_penalty <= 2, "frequency_penalty", "between -2 and 2")
        need(self.seed is None or (isinstance(self.seed, int) and -(2 ** 63) <= self.seed < 2 ** 63), "seed",
             "an integer that fits in 64 bits")

    @property
    def greedy(self) -> bool:
        """Whether to take the most likely token: temperature 0, or too small to divide the logits by."""
        return self.temperature < GREEDY_BELOW

    @property
    def seed64(self) -> int | None:
        """The seed as torch.Generator takes it (0 <= seed < 2**64): the server's per-choice seed + index
        may pass 64 bits, and any integer reduced modulo 2**64 still gives one reproducible stream."""
        return None if self.seed is None else self.seed % 2 ** 64
