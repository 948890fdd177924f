"""Exact ROUGE-L novelty filter: Alpaca's keep-iff-max-F<=threshold rule with rouge_score's numbers, at C speed.

A record is kept iff its ROUGE-L F-measure with every earlier kept record (and every record of the starting
pool) is <= threshold. Decisions are identical to rouge_score's `_score_lcs`: same tokens, same LCS length,
and P, R, F computed with the same floating-point operations, so pairs sitting exactly at the threshold
fall the same way. Speed comes from interning tokens as single code points and letting rapidfuzz compute
LCS lengths in C: for a whole block of candidates against the pool (all-pairs), or, for big pools, only
against the pooled texts that exact length and prefix bounds leave (rouge_index.py). docs/dedup.md explains.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Callable, Iterable, NamedTuple

import numpy as np
from rapidfuzz.distance import Indel, LCSseq
from rapidfuzz.process import cdist

from pacos.data.atomic_write import write_objects
from pacos.data.raw_files import read_raw
from pacos.data.rouge_index import SLACK, PrefixIndex, rouge_l_fmeasure
from pacos.data.rouge_options import INDEXED_FROM, METHODS
from pacos.data.rouge_tokenizers import get_tokenizer, rouge_tokens, sparse_rouge_warning, tokenizer_for_texts
from pacos.errors import DataError

__all__ = ["INDEXED_FROM", "METHODS", "Decision", "DedupResult", "RougeDeduper", "dedup_file", "rouge_l_fmeasure",
           "rouge_tokens"]

_SURROGATES = 0xD800, 0xE000
# Cells of the (candidates x pool) similarity matrix computed at once: bounds memory to ~50 MB of float64.
_BLOCK_CELLS = 6_000_000


class Decision(NamedTuple):
    kept: bool
    # Highest ROUGE-L F against the pool (0.0 when the pool is empty). Exact on the all-pairs path; on the
    # indexed path exact for a dropped text, and for a kept one the best among the candidates checked.
    score: float
    nearest: str | None  # the pool text reaching that score (None when it is 0)


class RougeDeduper:
    """A growing pool of texts; `add_if_novel` keeps a text iff its ROUGE-L F to every pooled text is <= threshold.

    The candidate is rouge_score's target and the pooled text its prediction, as in Alpaca's
    `partial(scorer._score_lcs, new_instruction_tokens)` (F is symmetric anyway). `tokenizer` is "rouge"
    (rouge_score's) or "unicode" (rouge_tokenizers.py). `method`: "all-pairs" scores every pooled text in C
    blocks (exact scores); "indexed" checks only the texts a length and prefix bound leave (rouge_index.py,
    same decisions); "auto" indexes once pool + batch reach INDEXED_FROM texts.
    """

    def __init__(self, threshold: float = 0.7, pool: Iterable[str] = (), tokenizer: str = "rouge",
                 method: str = "all-pairs"):
        if method not in METHODS:
            raise ValueError(f"unknown dedup method {method!r}: use {', '.join(METHODS)}")
        self.threshold = float(threshold)
        self.method = method
        self.tokenizer = tokenizer
        self._tokenize = get_tokenizer(tokenizer)
        self.texts: list[str] = []
        self._codes: list[str] = []  # each text as a string of interned token code points
        self._vocab: dict[str, str] = {}
        self._index: PrefixIndex | None = None
        for text in pool:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def indexed(self) -> bool:
        """Whether texts are checked through the prefix index (from now on) rather than all-pairs."""
        return self._index is not None

    def add(self, text: str) -> None:
        """Put `text` in the pool without checking it (seed tasks, `--against` records)."""
        code = self._encode(text)
        self.texts.append(text)
        self._codes.append(code)
        if self._index is not None:
            self._index.order_tokens([code])
            self._index.add(code)

    def add_if_novel(self, text: str) -> Decision:
        """Keep `text` (and pool it) iff no pooled text has ROUGE-L F > threshold with it."""
        return self.add_batch([text])[0]

    def add_batch(self, texts: list[str], progress: Callable[[int], object] | None = None) -> list[Decision]:
        """`add_if_novel` on each text in order (later texts see the earlier kept ones); `progress(n)` is called
        as each n texts are decided."""
        codes = [self._encode(t) for t in texts]
        if self._index is None and (self.method == "indexed" or (
                self.method == "auto" and len(self._codes) + len(texts) >= INDEXED_FROM)):
            self._build_index(codes)
        if self._index is not None:
            return self._decide_indexed(texts, codes, progress)
        decisions: list[Decision] = []
        start = 0
        while start < len(texts):
            size = max(16, min(256, _BLOCK_CELLS // (len(self._codes) + 1)))
            block = self._decide_block(texts[start : start + size], codes[start : start + size])
            decisions += block
            start += size
            if progress:
                progress(len(block))
        return decisions

    def _build_index(self, codes: list[str]) -> None:
        # Token order from pool + incoming frequencies: a text's rarest tokens are its prefix.
        self._index = PrefixIndex(self.threshold)
        self._index.order_tokens(self._codes + codes)
        for code in self._codes:
            self._index.add(code)

    def _decide_indexed(self, texts: list[str], codes: list[str], progress) -> list[Decision]:
        index = self._index
        index.order_tokens(codes)
        decisions = []
        for i, (text, code) in enumerate(zip(texts, codes), 1):
            best, j = index.best_match(code)
            kept = not best > self.threshold
            if kept:
                self.texts.append(text)
                self._codes.append(code)
                index.add(code)
            decisions.append(Decision(kept, best, None if j is None else self.texts[j]))
            if progress and i % 1000 == 0:
                progress(1000)
        if progress and len(texts) % 1000:
            progress(len(texts) % 1000)
        return decisions

    def _decide_block(self, texts: list[str], codes: list[str]) -> list[Decision]:
        # Indel's normalized similarity is 2*LCS/(len_a+len_b): ROUGE-L F in exact arithmetic, so it ranks the
        # pool in one C pass. It can differ from rouge_score's float F by an ulp, so every cell within SLACK
        # of the threshold or of the row's best is re-scored exactly before deciding.
        pool = cdist(codes, self._codes, scorer=Indel.normalized_similarity, dtype=np.float64, workers=-1)
        block = cdist(codes, codes, scorer=Indel.normalized_similarity, dtype=np.float64, workers=-1)
        decisions, kept_rows = [], []
        for i, (text, code) in enumerate(zip(texts, codes)):
            approx = np.concatenate([pool[i], block[i, kept_rows]])
            best, nearest = 0.0, None
            if len(approx):
                cut = min(float(approx.max()), self.threshold) - SLACK
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
        return decisions

    def _encode(self, text: str) -> str:
        """Tokens as one code point each, so C string LCS equals token LCS."""
        vocab = self._vocab
        out = []
        for token in self._tokenize(text):
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
    tokenizer: str = "rouge"
    method: str = "all-pairs"
    warnings: list[str] = dataclass_field(default_factory=list)  # for stderr

    @property
    def dropped(self) -> int:
        return self.read - self.kept

    def __str__(self) -> str:
        against = f" and {self.against} --against records" if self.against else ""
        return (
            f"read {self.read} records from {self.input}, kept {self.kept}, dropped {self.dropped} "
            f"(ROUGE-L F > {self.threshold:g} with an earlier kept record{against}; {self.tokenizer} tokens, "
            f"{self.method}) in {self.seconds:.2f} s -> {self.output}"
        )


def dedup_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    threshold: float = 0.7,
    against: Iterable[str | os.PathLike] = (),
    field: str = "instruction",
    tokenizer: str = "auto",
    method: str = "auto",
    progress: bool | None = None,
) -> DedupResult:
    """Keep the records of `input` whose `field` is novel (Alpaca's rule), write them to `output` atomically.

    Records are JSON objects, as a JSON array or JSONL; `output` is a JSON array when it ends in .json,
    else JSONL. Fields other than `field` pass through untouched. `tokenizer="auto"` is unicode when most
    records are mostly non-ASCII, else rouge. `progress`: a bar on stderr (None: only on a terminal).
    """
    from tqdm import tqdm

    started = time.perf_counter()
    pool = [text for path in against for text in read_field(path, field)]
    records = read_objects(input)
    texts = [_field_text(obj, field, where) for obj, where in records]
    tokenizer = tokenizer_for_texts(tokenizer, texts)
    warning = sparse_rouge_warning(texts) if tokenizer == "rouge" else None
    if warning:
        print(warning, file=sys.stderr)
    deduper = RougeDeduper(threshold, pool, tokenizer=tokenizer, method=method)
    with tqdm(total=len(texts), desc="dedup", unit="rec", file=sys.stderr, dynamic_ncols=True,
              disable=None if progress is None else not progress) as bar:
        decisions = deduper.add_batch(texts, progress=bar.update)
    kept = [obj for (obj, _), d in zip(records, decisions) if d.kept]
    write_objects(kept, output, as_lines=not str(output).endswith(".json"))
    used = "indexed" if deduper.indexed else "all-pairs"
    return DedupResult(
        str(input), str(output), len(records), len(kept), len(pool), threshold,
        time.perf_counter() - started, tokenizer, used, [warning] if warning else [],
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
