"""Tokens and dollars of a run against a paid server, and the --max-cost stop: a request starts only while
what is spent plus what the requests in flight may cost stays within the limit."""

from __future__ import annotations

from dataclasses import dataclass

from pacos.options import ConfigError, check_fields, option

CHARS_PER_TOKEN = 4  # a prompt's tokens before the server has said how many it counts


@dataclass
class Prices:
    price_in: float = option(0.0, "$ per 1M prompt tokens", ge=0)
    price_out: float = option(0.0, "$ per 1M completion tokens", ge=0)
    max_cost: float | None = option(None, "$; no new request once spent plus in flight would pass it "
                                          "(needs the prices)", ge=0)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.max_cost is not None and not (self.price_in or self.price_out):
            raise ConfigError("--max-cost needs --price-in and --price-out (dollars per 1M tokens)")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6


class Spend:
    """Counts requests and tokens; `reserve` before a request, `settle` after it."""

    def __init__(self, prices: Prices):
        self.prices = prices
        self.requests = self.prompt_tokens = self.completion_tokens = 0
        self._prompt_chars = 0  # of the prompts whose tokens were counted: the chars-per-token estimate
        self._in_flight = 0.0

    @property
    def cost(self) -> float:
        return self.prices.cost(self.prompt_tokens, self.completion_tokens)

    def estimate(self, prompt_chars: int, max_tokens: int) -> float:
        """Dollars one request may cost: its prompt at the rate seen so far, and the mean answer seen so far
        (max_tokens before any)."""
        per_token = self._prompt_chars / self.prompt_tokens if self.prompt_tokens else CHARS_PER_TOKEN
        answer = self.completion_tokens / self.requests if self.requests else max_tokens
        return self.prices.cost(round(prompt_chars / per_token), round(answer))

    def reserve(self, estimate: float) -> bool:
        """False (and nothing reserved) when the request would pass --max-cost."""
        limit = self.prices.max_cost
        if limit is not None and self.cost + self._in_flight + estimate > limit:
            return False
        self._in_flight += estimate
        return True

    def settle(self, estimate: float, prompt_chars: int, prompt_tokens: int, completion_tokens: int,
               requests: int) -> None:
        self._in_flight = max(0.0, self._in_flight - estimate)
        self.requests += requests
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if prompt_tokens:
            self._prompt_chars += prompt_chars

    def describe(self) -> str:
        text = f"tokens {_k(self.prompt_tokens)} in / {_k(self.completion_tokens)} out"
        if self.prices.price_in or self.prices.price_out:
            text += f" | ${self.cost:.4f}"
        return text


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)
