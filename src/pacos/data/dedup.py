"""Exact ROUGE-L novelty filter: Alpaca's keep-iff-max-F<=threshold rule with rouge_score's numbers, at C speed.

A record is kept iff its ROUGE-L F-measure with every earlier kept record (and every record of the starting
pool) is <= threshold. Decisions are identical to rouge_score's `_score_lcs`: same tokens, same LCS length,
and P, R, F computed with the same floating-point operations, so pairs sitting exactly at the threshold
fall the same way. Speed comes from interning tokens as single code points and letting rapidfuzz compute
LCS lengths for a whole block of candidates against the pool in C (bit-parallel, multi-threaded).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np
from rapidfuzz.distance import Indel, LCSseq
from rapidfuzz.process import cdist

from pacos.data.atomic_write import write_objects
from pacos.data.raw_files import read_raw
from pacos.errors import DataError

# rouge_score's DefaultTokenizer(use_stemmer=False): lowercase, non-[a-z0-9] runs become spaces, split,
# keep the [a-z0-9]+ tokens. Finding the runs directly gives the same list without importing nltk (~1 s).
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_SURROGATES = 0xD800, 0xE000
# Cells of the (candidates x pool) similarity matrix computed at once: bounds memory to ~50 MB of float64.
_BLOCK_CELLS = 6_000_000
# Far above the few-ulp gap between 2*LCS/(a+b) in C and rouge_score's 2PR/(P+R), far below any real score gap.
_SLACK = 1e-9


def rouge_tokens(text: str) -> list[str]:
    """The tokens rouge_score's default tokenizer gives `text` (no stemming)."""
    return _TOKEN_RE.findall(text.lower())


def rouge_l_fmeasure(lcs: int, target_len: int, prediction_len: int) -> float:
    """ROUGE-L F from an LCS length, with exactly rouge_score's floating-point steps (`_score_lcs`, `fmeasure`)."""
    if not target_len or not prediction_len:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


class Decision(NamedTuple):
    kept: bool
    score: float  # highest ROUGE-L F against the pool (0.0 when the pool is empty)
    nearest: str | None  # the pool text reaching that score (None when it is 0)


class RougeDeduper:
    """A growing pool of texts; `add_if_novel` keeps a text iff its ROUGE-L F to every pooled text is <= threshold.

    The candidate is rouge_score's target and the pooled text its prediction, as in Alpaca's
    `partial(scorer._score_lcs, new_instruction_tokens)` (F is symmetric anyway).
    """

    def __init__(self, threshold: float = 0.7, pool: Iterable[str] = ()):
        self.threshold = float(threshold)
        self.texts: list[str] = []
        self._codes: list[str] = []  # each text as a string of interned token code points
        self._lens: list[int] = []
        self._vocab: dict[str, str] = {}
        for text in pool:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> None:
        """Put `text` in the pool without checking it (seed tasks, `--against` records)."""
        code = self._encode(text)
        self.texts.append(text)
        self._codes.append(code)
        self._lens.append(len(code))

    def add_if_novel(self, text: str) -> Decision:
        """Keep `text` (and pool it) iff no pooled text has ROUGE-L F > threshold with it."""
        return self.add_batch([text])[0]

    def add_batch(self, texts: list[str]) -> list[Decision]:
        """`add_if_novel` on each text in order (later texts see the earlier kept ones), computed in blocks."""
        decisions: list[Decision] = []
        codes = [self._encode(t) for t in texts]
        start = 0
        while start < len(texts):
            size = max(16, min(256, _BLOCK_CELLS // (len(self._codes) + 1)))
            decisions += self._decide_block(texts[start : start + size], codes[start : start + size])
            start += size
        return decisions

    def _decide_block(self, texts: list[str], codes: list[str]) -> list[Decision]:
        # Indel's normalized similarity is 2*LCS/(len_a+len_b): ROUGE-L F in exact arithmetic, so it ranks the
        # pool in one C pass. It can differ from rouge_score's float F by an ulp, so every cell within _SLACK
        # of the threshold or of the row's best is re-scored exactly before deciding.
        pool = cdist(codes, self._codes, scorer=Indel.normalized_similarity, dtype=np.float64, workers=-1)
        block = cdist(codes, codes, scorer=Indel.normalized_similarity, dtype=np.float64, workers=-1)
        decisions, kept_rows = [], []
        for i, (text, code) in enumerate(zip(texts, codes)):
            approx = np.concatenate([pool[i], block[i, kept_rows]])
            best, nearest = 0.0, None
            if len(approx):
                cut = min(float(approx.max()), self.threshold) - _SLACK
                for j in np.flatnonzero(approx >= cut).tolist():
                    other = self._codes[j] if j < len(self._codes) else codes[kept_rows[j - len(self._codes)]]
                    f = rouge_l_fmeasure(LCSseq.similarity(code, other), len(code), len(other))
                    if f > best:
                        best = f
                        nearest = self.texts[j] if j < len(self._codes) else texts[kept_rows[j - len(self._codes)]]
            kept = not best > self.threshold
            if kept:
                kept_rows.append(i)
            decisions.append(Decision(kept, best, nearest))
        for i in kept_rows:
            self.texts.append(texts[i])
            self._codes.append(codes[i])
            self._lens.append(len(codes[i]))
        return decisions

    def _encode(self, text: str) -> str:
        """Tokens as one code point each, so C string LCS equals token LCS."""
        vocab = self._vocab
        out = []
        for token in rouge_tokens(text):
            code = vocab.get(token)
            if code is None:
                n = len(vocab) + 1
                n += (_SURROGATES[1] - _SURROGATES[0]) if n >= _SURROGATES[0] else 0
                code = vocab[token] = chr(n)  # chr raises past 0x10FFFF (~1.1M distinct tokens)
            out.append(code)
        return "".join(out)


@dataclass
class DedupResult:
    """What `dedup_file` did; printed by `pacos data dedup`."""

    input: str
    output: str
    read: int
    kept: int
    against: int = 0
    threshold: float = 0.7
    seconds: float = 0.0

    @property
    def dropped(self) -> int:
        return self.read - self.kept

    def __str__(self) -> str:
        against = f" and {self.against} --against records" if self.against else ""
        return (
            f"read {self.read} records from {self.input}, kept {self.kept}, dropped {self.dropped} "
            f"(ROUGE-L F > {self.threshold:g} with an earlier kept record{against}) in {self.seconds:.2f} s "
            f"-> {self.output}"
        )


def dedup_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    threshold: float = 0.7,
    against: Iterable[str | os.PathLike] = (),
    field: str = "instruction",
) -> DedupResult:
    """Keep the records of `input` whose `field` is novel (Alpaca's rule), write them to `output` atomically.

    Records are JSON objects, as a JSON array or JSONL; `output` is a JSON array when it ends in .json,
    else JSONL. Fields other than `field` pass through untouched.
    """
    started = time.perf_counter()
    deduper = RougeDeduper(threshold)
    n_against = 0
    for path in against:
        for text in read_field(path, field):
            deduper.add(text)
            n_against += 1
    records = read_objects(input)
    texts = [_field_text(obj, field, where) for obj, where in records]
    decisions = deduper.add_batch(texts)
    kept = [obj for (obj, _), d in zip(records, decisions) if d.kept]
    write_objects(kept, output, as_lines=not str(output).endswith(".json"))
    return DedupResult(
        str(input), str(output), len(records), len(kept), n_against, threshold,
        time.perf_counter() - started,
    )


def read_field(path: str | os.PathLike, field: str = "instruction") -> list[str]:
    """The `field` text of every record of a JSON/JSONL file (e.g. seed tasks' instructions)."""
    return [_field_text(obj, field, where) for obj, where in read_objects(path)]


def read_objects(path: str | os.PathLike) -> list[tuple[dict, str]]:
    """(object, where) for each record of a JSON array or JSONL file; `where` is FILE:LINE or FILE[index]."""
    found = []
    for entry in read_raw(path).entries:
        if entry.error:
            raise DataError(f"{entry.where}: {entry.error}")
        if not isinstance(entry.obj, dict):
            raise DataError(f"{entry.where}: record is not a JSON object")
        found.append((entry.obj, entry.where))
    return found


def _field_text(obj: dict, field: str, where: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str):
        problem = "has no" if value is None else "has a non-string"
        raise DataError(f"{where}: record {problem} {field!r} field; choose the compared field with --field")
    return value
