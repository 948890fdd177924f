"""Exact candidate pruning for ROUGE-L F > t: only pooled texts that pass length, prefix, position and
bucket-count bounds can match, and only those get an exact LCS.

ROUGE-L F of texts of m and n tokens is 2*LCS/(m+n), so F > t needs LCS > t(m+n)/2. Since LCS <= min(m, n),
n must lie in [m t/(2-t), m (2-t)/t]; since LCS <= the multiset intersection, the two must share at least
need = t(m+n)/2 token occurrences. Order each text's occurrences by a fixed global key (rare tokens first):
two texts sharing `need` occurrences share one within the first m - need + 1 of either (prefix filtering,
Chaudhuri et al. 2006; Bayardo et al. 2007). Each pooled text is indexed under the tokens of its prefix only,
a query probes its own prefix's tokens; the positions of the first shared token and hashed token counts
bound the overlap further (PPJoin's positional filter, Xiao et al. 2008), and exact LCS (rapidfuzz) is
computed for the few texts left. The bounds are taken slightly loose (t - 1e-9), so float F > t never falls
outside them. Memory is linear: one posting per prefix token, 72 bytes per text. docs/dedup.md derives it.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
from rapidfuzz.distance import LCSseq
from rapidfuzz.process import cdist

_BUCKETS = 64
# Far above the few-ulp gap between 2*LCS/(m+n) in C and rouge_score's 2PR/(P+R), far below any real score gap.
SLACK = 1e-9


class PrefixIndex:
    """Pooled token strings (one code point per token) indexed by their rarest tokens."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._t = max(threshold - SLACK, 0.0)
        self._codes: list[str] = []
        self._lens = np.zeros(1024, dtype=np.int64)  # grown by doubling, as _buckets
        # Each text's token counts hashed into _BUCKETS buckets (saturating at 255; a text that long sets all
        # to 255): common occurrences fall in the same bucket, so the overlap is <= sum of the bucket minima.
        self._buckets = np.zeros((1024, _BUCKETS), dtype=np.uint8)
        # token -> entries (text number << 10 | the token's position in that text's order, capped at 1023)
        self._postings: dict[str, array] = {}
        self._key: dict[str, int] = {}  # token -> global order key (rarest first), fixed once given
        self._bounds: dict[int, tuple[int, float, int]] = {}

    def __len__(self) -> int:
        return len(self._codes)

    def order_tokens(self, codes: list[str]) -> None:
        """Give the tokens not yet ordered a key by their document frequency in `codes` (rare first).

        Keys never change once given, which is all prefix filtering needs; frequencies only make it fast.
        """
        counts: dict[str, int] = {}
        key = self._key
        for code in codes:
            for tok in set(code):
                if tok not in key:
                    counts[tok] = counts.get(tok, 0) + 1
        for tok, n in counts.items():
            key[tok] = (n << 21) | ord(tok)  # ord < 2**21: ties broken by token

    def add(self, code: str) -> None:
        """Index `code` as the next pooled text (its tokens must be ordered)."""
        j = len(self._codes)
        self._codes.append(code)
        if j == len(self._lens):
            self._lens = np.concatenate([self._lens, np.zeros(j, dtype=np.int64)])
            self._buckets = np.concatenate([self._buckets, np.zeros((j, _BUCKETS), dtype=np.uint8)])
        self._lens[j] = len(code)
        self._buckets[j] = _bucket_counts(code) if len(code) < 255 else 255
        postings = self._postings
        for tok, pos in zip(*self._prefix(code)) if code else ():
            entries = postings.get(tok)
            if entries is None:
                entries = postings[tok] = array("q")
            entries.append(j << 10 | min(pos, 1023))

    def best_match(self, code: str) -> tuple[float, int | None]:
        """(F, index) of the first pooled text with the highest ROUGE-L F, exact whenever that F > threshold;
        otherwise the best among the candidates checked (0.0, None when there were none)."""
        m = len(code)
        if not m:
            return 0.0, None
        found = self._candidates(code)
        if not len(found):
            return 0.0, None
        # LCS of every candidate in one C call; 2*LCS/(m+n) is F in exact arithmetic, so only the cells
        # within SLACK of the best (or of the threshold) are re-scored with rouge_score's float steps.
        others = [self._codes[j] for j in found.tolist()]
        lcs = cdist([code], others, scorer=LCSseq.similarity, dtype=np.int32, workers=1)[0]
        n = self._lens[found]
        approx = 2 * lcs / (m + n)
        cut = min(float(approx.max()), self.threshold) - SLACK
        best, nearest = 0.0, None
        for k in np.flatnonzero(approx >= cut).tolist():
            f = rouge_l_fmeasure(int(lcs[k]), m, int(n[k]))
            if f > best:
                best, nearest = f, int(found[k])
        return best, nearest

    def _candidates(self, code: str) -> np.ndarray:
        """Sorted numbers of the pooled texts that pass the length, prefix and position bounds with `code`."""
        m = len(code)
        n_lo, n_hi, _ = self._bounds_for(m)
        parts, positions, sizes = [], [], []
        postings = self._postings
        for tok, pos in zip(*self._prefix(code)):
            entries = postings.get(tok)
            if entries:
                parts.append(np.frombuffer(entries, dtype=np.int64))
                positions.append(pos)
                sizes.append(len(entries))
        if not parts:
            return np.empty(0, dtype=np.int64)
        entries = np.concatenate(parts)
        del parts  # release the buffers: `add` appends to them
        pos_x = np.repeat(np.array(positions), sizes)
        texts = entries >> 10
        n = self._lens[texts]
        # First shared token at position i of this text's order and j of the other's: every common
        # occurrence lies at or after them (earlier tokens would have been found first), so
        # LCS <= min(m - i, n - j).
        room = np.minimum(m - pos_x, n - (entries & 1023))
        found = np.unique(texts[(n >= n_lo) & (n <= n_hi) & (room >= self._need_array(m, n))])
        if m < 255 and len(found):
            n = self._lens[found]
            overlap = np.minimum(self._buckets[found], _bucket_counts(code)).sum(axis=1, dtype=np.int64)
            found = found[overlap >= self._need_array(m, n)]
        return found

    def _need_array(self, m: int, n: np.ndarray) -> np.ndarray:
        return np.maximum(np.ceil(self._t * (m + n) / 2 - SLACK), 1)
    def _prefix(self, code: str) -> tuple[list[str], list[int]]:
        """The distinct tokens of `code`'s first m - need + 1 occurrences in the global order, and the position
        of each one's first occurrence in that order."""
        size = self._bounds_for(len(code))[2]
        tokens = sorted(set(code), key=self._key.__getitem__)
        out, positions, covered = [], [], 0
        for tok in tokens:
            if covered >= size:
                break
            out.append(tok)
            positions.append(covered)
            covered += code.count(tok)
        return out, positions

    def _bounds_for(self, m: int) -> tuple[int, float, int]:
        """(shortest, longest pooled length that can match, prefix size) for a text of m tokens."""
        bounds = self._bounds.get(m)
        if bounds is None:
            t = self._t
            n_lo = next(n for n in range(1, m + 1) if n >= self._need(m, n))
            n_hi = math.inf if t == 0 else math.floor((2 * m + 2 * SLACK) / t - m + SLACK)
            bounds = self._bounds[m] = n_lo, n_hi, m - self._need(m, n_lo) + 1
        return bounds

    def _need(self, m: int, n: int) -> int:
        """Fewest common tokens that can give F > t (and at least one: F > 0 needs a common token)."""
        return max(1, math.ceil(self._t * (m + n) / 2 - SLACK))


def _bucket_counts(code: str) -> np.ndarray:
    ids = np.frombuffer(code.encode("utf-32-le"), dtype=np.uint32)
    return np.bincount(ids % _BUCKETS, minlength=_BUCKETS).astype(np.uint8)


def rouge_l_fmeasure(lcs: int, target_len: int, prediction_len: int) -> float:
    """ROUGE-L F from an LCS length, with exactly rouge_score's floating-point steps (`_score_lcs`, `fmeasure`)."""
    if not target_len or not prediction_len:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0
