"""A judge's text -> its verdict: `[[A]]`/`[[B]]`/`[[C]]` or a `[[rating]]`, and, from the verdict token's
log probabilities, a continuous preference (AlpacaEval 2's way). Pure functions: any text gives a verdict
or None, in time linear in its length, never an exception."""

from __future__ import annotations

import math
import re

from pacos.remote.reply import TokenLogprob

VERDICTS = {"A": "first", "B": "second", "C": "tie"}  # the letter -> which shown answer wins
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_RATING = re.compile(r"\[\[\s*(\d{1,3}(?:\.\d{1,3})?)\s*\]\]")


def parse_pairwise(text: str) -> str | None:
    """"first", "second" or "tie" (of the answers as shown); None when there is no verdict, or more than one
    kind (`[[A]]` and `[[B]]` both: ambiguous)."""
    found = {m.group(1) for m in _VERDICT.finditer(text)}
    return VERDICTS[found.pop()] if len(found) == 1 else None


def parse_rating(text: str) -> float | None:
    """The rating in `[[N]]` (1 <= N <= 10, decimals allowed); None when absent, out of range, or several differ."""
    found = {float(m.group(1)) for m in _RATING.finditer(text)}
    if len(found) != 1:
        return None
    rating = found.pop()
    return rating if 1 <= rating <= 10 else None


def verdict_probabilities(text: str, tokens: tuple[TokenLogprob, ...] | None) -> dict[str, float] | None:
    """{"first", "second", "tie"} -> probability at the verdict's letter, normalised over the three, from the
    top_logprobs of the token holding the last verdict in `text`. None when the tokens do not spell `text`,
    there is no verdict, or no finite probability of any verdict letter."""
    matches = list(_VERDICT.finditer(text)) if tokens else []
    if not matches or "".join(t.token for t in tokens) != text:
        return None
    position, start = matches[-1].start(1), 0
    for token in tokens:
        end = start + len(token.token)
        if start <= position < end:
            break
        start = end
    k = position - start  # the letter's place inside its token ("A", "[[A", " A]]"...)
    candidates = list(token.top)
    if all(alt != token.token for alt, _ in candidates):
        candidates.append((token.token, token.logprob))
    mass = dict.fromkeys(VERDICTS.values(), 0.0)
    for alt, logprob in candidates:
        letter = _letter(alt, token.token, k)
        if letter and isinstance(logprob, float) and math.isfinite(logprob):
            mass[VERDICTS[letter]] += math.exp(min(logprob, 0.0))
    total = sum(mass.values())
    return {name: p / total for name, p in mass.items()} if total > 0 else None


_ALTERNATIVE = re.compile(r"\s*([ABC])(?:\s|\]|$)")


def _letter(alternative: str, chosen: str, k: int) -> str | None:
    """The verdict letter `alternative` would have put where `chosen` has its letter (at `k`), if any."""
    if alternative[:k] != chosen[:k]:
        return None
    m = _ALTERNATIVE.match(alternative, k)
    return m.group(1) if m else None


def preference_first(probabilities: dict[str, float] | None) -> float | None:
    """P(the first shown answer is better), a tie counting half: the continuous counterpart of a 1/0.5/0 score."""
    if probabilities is None:
        return None
    return probabilities["first"] + 0.5 * probabilities["tie"]
