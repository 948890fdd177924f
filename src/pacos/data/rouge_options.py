"""The choices of the ROUGE-L novelty filter that the CLIs list, importable without numpy or rapidfuzz."""

TOKENIZERS = ("auto", "rouge", "unicode")
METHODS = ("auto", "all-pairs", "indexed")
# `auto` indexes from this many pooled + incoming texts on (the measured crossover, docs/dedup.md).
INDEXED_FROM = 10_000
