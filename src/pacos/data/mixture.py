"""Data mixtures: `--data a.json --data b.jsonl:0.3` parsed into sources, and each source's records sampled by weight.

A weight multiplies its source's size: `b.jsonl:0.3` trains on 30% of b's records (drawn without
replacement), `:2` on every record twice, `:2.5` on every record twice plus half of them once more; a
source without a weight is used whole (weight 1), a weight of 0 leaves it out. Weights are relative to each
source's own size, so adding a source never changes what the others contribute. (For shares of the mixture,
as in LLaMA-Factory's `interleave_probs`: weight_i = share_i x total / size_i.) Draws come from a seed per
source (`--seed` and the source's position), so a run is reproducible and adding a source at the end leaves
the others' picks alone.
"""

from __future__ import annotations

import math
import os
import random
import re
from dataclasses import dataclass

from pacos.options import ConfigError

# Only a trailing ":NUMBER" is a weight, so C:\data\a.json or s3:/x stay paths. "nan", "inf" and signs are
# matched too, to be refused by name rather than read as part of the path.
_WEIGHT = re.compile(r"^(?P<path>.+):(?P<weight>[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?|nan|inf(?:inity)?))$",
                     re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    path: str
    weight: float | None = None  # None: the source's natural size


@dataclass(frozen=True)
class SourceCount:
    path: str
    weight: float | None
    read: int
    used: int

    def as_dict(self) -> dict:
        return {"path": self.path, "weight": self.weight, "read": self.read, "used": self.used}


def parse_source(spec: str, flag: str = "--data", exists=os.path.exists) -> Source:
    """`a.json` -> Source("a.json"); `b.jsonl:0.3` -> Source("b.jsonl", 0.3).

    A spec that is itself an existing file is that file even when it ends in ":NUMBER" (give it a weight as
    `file:0.3:1`). Bad weights raise ConfigError naming `flag`.
    """
    spec = os.fspath(spec)
    m = _WEIGHT.match(spec)
    if m is None or exists(spec):
        head, sep, tail = spec.rpartition(":")
        if m is None and sep and tail and not exists(spec) and exists(head):
            raise ConfigError(f"{flag} {spec}: the weight after ':' must be a number (got {tail!r})")
        return Source(spec)
    weight = float(m["weight"])
    if not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"{flag} {spec}: the weight must be a finite number >= 0 (got {m['weight']})")
    return Source(m["path"], weight)


def parse_sources(specs, flag: str = "--data", exists=os.path.exists) -> list[Source]:
    sources = [parse_source(s, flag, exists) for s in specs]
    if sources and all(s.weight == 0 for s in sources):
        raise ConfigError(f"{flag}: every source has weight 0, so there is nothing to train on")
    return sources


def sample_source(records: list, weight: float | None, seed: int, index: int) -> list:
    """`round(weight x len(records))` records: whole copies for the integer part, a draw without replacement
    for the rest; the records keep their order within each copy and draw."""
    if weight is None or weight == 1:
        return list(records)
    n = round(weight * len(records))
    whole, rest = divmod(n, len(records)) if records else (0, 0)
    rng = random.Random(f"pacos-mixture:{seed}:{index}")
    picked = sorted(rng.sample(range(len(records)), rest))
    return list(records) * whole + [records[i] for i in picked]


def mix(loaded: list[tuple[Source, list]], seed: int) -> tuple[list, list[SourceCount]]:
    """The training records of every source, in source order, and how many each gave."""
    records, counts = [], []
    for i, (source, items) in enumerate(loaded):
        used = sample_source(items, source.weight, seed, i)
        records += used
        counts.append(SourceCount(source.path, source.weight, len(items), len(used)))
    return records, counts


def load_mixture(sources: list[Source], seed: int, load) -> tuple[list, list[SourceCount]]:
    """`load(path)` each source (a file is read once even when listed twice), then `mix` them."""
    cache: dict[str, list] = {}
    loaded = []
    for source in sources:
        if source.path not in cache:
            cache[source.path] = load(source.path)
        loaded.append((source, cache[source.path]))
    return mix(loaded, seed)


def counts_summary(counts: list[SourceCount]) -> str:
    """One log line: `data: a.json 1000 read, 1000 used | b.jsonl (x0.3) 500 read, 150 used`."""
    return "data: " + " | ".join(
        f"{c.path}{'' if c.weight is None else f' (x{c.weight:g})'} {c.read} read, {c.used} used" for c in counts)
