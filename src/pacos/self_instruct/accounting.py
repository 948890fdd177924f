"""Running totals of a generation run (requests, tokens, cost, discards by reason) and the progress line."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Totals:
    kept: int = 0
    batches: int = 0
    requests: int = 0  # HTTP attempts, retries included
    prompt_tokens: int = 0
    completion_tokens: int = 0
    discards: Counter = field(default_factory=Counter)

    def add_entry(self, entry: dict) -> None:
        """Count one committed batch from its raw-log entry."""
        self.kept += entry.get("kept", 0)
        self.batches += 1
        self.requests += entry.get("requests", 0)
        self.prompt_tokens += entry.get("usage", {}).get("prompt_tokens", 0)
        self.completion_tokens += entry.get("usage", {}).get("completion_tokens", 0)
        self.discards.update(entry.get("discards", {}))

    def cost(self, price_in: float, price_out: float) -> float:
        """Dollars, from prices per 1M prompt and completion tokens."""
        return (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6

    def describe(self, price_in: float = 0.0, price_out: float = 0.0) -> str:
        """One line: requests, discards by reason, tokens and cost."""
        drops = ", ".join(f"{reason} {n}" for reason, n in self.discards.most_common()) or "none"
        text = (f"requests {self.requests} | discarded: {drops} | "
                f"tokens {_k(self.prompt_tokens)} in / {_k(self.completion_tokens)} out")
        if price_in or price_out:
            text += f" | ${self.cost(price_in, price_out):.4f}"
        return text


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


class ProgressBar:
    """kept / target with rate and ETA (tqdm), requests, discards, tokens and cost after it; on stderr."""

    def __init__(self, target: int, totals: Totals, price_in: float, price_out: float, enabled: bool | None):
        from tqdm import tqdm

        self._prices = price_in, price_out
        self._bar = tqdm(total=target, initial=min(totals.kept, target), unit="inst", file=sys.stderr,
                         dynamic_ncols=True, disable=None if enabled is None else not enabled, desc="kept")

    def update(self, totals: Totals) -> None:
        self._bar.set_postfix_str(totals.describe(*self._prices), refresh=False)
        self._bar.update(min(totals.kept, self._bar.total) - self._bar.n)

    def close(self) -> None:
        self._bar.close()
