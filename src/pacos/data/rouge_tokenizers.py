"""The tokenizers ROUGE-L novelty is computed on: rouge_score's own (`rouge`) and one for any script (`unicode`).

`rouge` keeps rouge_score's `[a-z0-9]+` tokens, Alpaca's exact numbers on English. It reduces a Chinese
instruction to its digits: "列出5种不同的说服性写作技巧。" becomes `5`, which scores 1 against "计算半径为5的圆的面积。".
`unicode` (NFKC, lowercase) takes each Han ideograph and kana as a token, since Chinese and Japanese put no
spaces between words, and splits everything else into words on Unicode non-alphanumerics; on ASCII text it
gives exactly rouge_score's tokens. Hangul stays in words: Korean puts spaces between words (eojeol), so its
syllables are letters like Latin ones.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Callable, Iterable

# rouge_score's DefaultTokenizer(use_stemmer=False): lowercase, non-[a-z0-9] runs become spaces, split,
# keep the [a-z0-9]+ tokens. Finding the runs directly gives the same list without importing nltk (~1 s).
_ROUGE_RE = re.compile(r"[a-z0-9]+")

# Characters that are one token each: Han ideographs (URO, extensions A-I, compatibility ideographs;
# 々〆〇), Hiragana, Katakana (with phonetic extensions, half-width forms, and the kana supplements).
CJK_RANGES = (
    (0x3005, 0x3007), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x1B000, 0x1B16F), (0x20000, 0x323AF),
)
_CJK_CLASS = "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_RANGES)

# > this share of records keeping <= 1 rouge token where `unicode` finds more: warn about `rouge`.
SPARSE_SHARE = 0.2


def rouge_tokens(text: str) -> list[str]:
    """The tokens rouge_score's default tokenizer gives `text` (no stemming)."""
    return _ROUGE_RE.findall(text.lower())


def unicode_tokens(text: str) -> list[str]:
    """NFKC, lowercase; each CJK character one token; other letters/digits (with their combining marks) in words."""
    return _unicode_re().findall(unicodedata.normalize("NFKC", text).lower())


@functools.cache
def _unicode_re() -> re.Pattern:
    # A word starts with a letter or digit (not `_`, which rouge_score splits on, nor CJK) and takes the
    # combining marks that follow (Devanagari vowel signs, decomposed accents); a stray mark is dropped.
    # The mark class is built on first use (0.1 s) rather than at import.
    marks = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me")]
    mark_class = re.escape("".join(marks))
    return re.compile(f"[{_CJK_CLASS}]|[^\\W_{_CJK_CLASS}](?:[^\\W_{_CJK_CLASS}]|[{mark_class}])*")


def get_tokenizer(name: str) -> Callable[[str], list[str]]:
    """`rouge_tokens` or `unicode_tokens` by name ("auto" is resolved by the caller first)."""
    if name == "rouge":
        return rouge_tokens
    if name == "unicode":
        return unicode_tokens
    raise ValueError(f"unknown ROUGE-L tokenizer {name!r}: use rouge or unicode")


def tokenizer_for_language(name: str, language: str) -> str:
    """`auto` for a Self-Instruct run: rouge_score's tokens for English (Alpaca's numbers), unicode otherwise."""
    if name != "auto":
        return name
    return "rouge" if language == "en" else "unicode"


def tokenizer_for_texts(name: str, texts: Iterable[str]) -> str:
    """`auto` for a file: unicode when most records are mostly non-ASCII (more non-ASCII letters and digits
    than ASCII ones), else rouge."""
    if name != "auto":
        return name
    mostly_non_ascii = total = 0
    for text in texts:
        total += 1
        alnum = [c for c in text if c.isalnum()]
        non_ascii = sum(not c.isascii() for c in alnum)
        mostly_non_ascii += non_ascii > len(alnum) - non_ascii
    return "unicode" if mostly_non_ascii * 2 > total else "rouge"


def sparse_rouge_warning(texts: list[str], what: str = "records") -> str | None:
    """A warning when rouge_score's tokens lose most records: > 20% keep <= 1 token where `unicode` finds more."""
    if not texts:
        return None
    sparse = sum(len(rouge_tokens(t)) <= 1 < len(unicode_tokens(t)) for t in texts)
    if sparse <= SPARSE_SHARE * len(texts):
        return None
    return (f"warning: {sparse} of {len(texts)} {what} ({sparse / len(texts):.0%}) have at most one ROUGE-L "
            f"token with --tokenizer rouge (it keeps [a-z0-9] only), so their novelty is meaningless; "
            f"use --tokenizer unicode")
