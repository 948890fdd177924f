"""The indexed path decides exactly as all-pairs: its length and prefix bounds never drop a pair with F > t."""

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.data import dedup
from pacos.data.dedup import RougeDeduper, dedup_file
from pacos.data.rouge_index import PrefixIndex, rouge_l_fmeasure

FIXTURES = Path(__file__).parent / "fixtures"
THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0]


def same_decisions(texts, threshold, pool=(), tokenizer="rouge"):
    """Both methods on the same stream: identical decisions, and identical scores and nearest when dropped."""
    exact = RougeDeduper(threshold, pool, tokenizer, method="all-pairs").add_batch(texts)
    indexed_deduper = RougeDeduper(threshold, pool, tokenizer, method="indexed")
    indexed = indexed_deduper.add_batch(texts)
    assert indexed_deduper.indexed
    assert [d.kept for d in indexed] == [d.kept for d in exact]
    for a, b in zip(exact, indexed):
        if not a.kept:
            assert (b.score, b.nearest) == (a.score, a.nearest)
        else:
            assert b.score <= a.score  # the best among candidates checked
    return exact


streams = st.lists(st.lists(st.integers(0, 5), max_size=14), max_size=60)


@settings(max_examples=300, deadline=None)
@given(streams, streams, st.sampled_from(THRESHOLDS) | st.floats(0, 1))
def test_indexed_equals_all_pairs_on_random_token_streams(pool, stream, threshold):
    words = lambda ids: " ".join(f"w{i}" for i in ids)  # noqa: E731
    same_decisions([words(s) for s in stream], threshold, [words(p) for p in pool])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=12), st.randoms(use_true_random=False))
def test_indexed_equals_all_pairs_on_edits_of_one_text(base, rng):
    """Near-duplicates of one text: many scores sit next to any threshold, ties included."""
    texts = []
    for _ in range(40):
        words = list(rng.choice(texts).split()) if texts else [f"w{i}" for i in base]
        for _ in range(rng.randint(0, 2)):
            if words and rng.random() < 0.5:
                del words[rng.randrange(len(words))]
            else:
                words.insert(rng.randint(0, len(words)), f"w{rng.randrange(4)}")
        texts.append(" ".join(words))
    for threshold in (0.0, 0.5, 0.7, 2 / 3, 0.8, 1.0):
        same_decisions(texts, threshold)


def test_bounds_are_the_exact_length_range():
    """n_lo/n_hi from the closed form equal the brute-force range of lengths where F > t is reachable."""
    for t in THRESHOLDS + [2 / 3, 0.55, 0.95]:
        index = PrefixIndex(t)
        for m in range(1, 80):
            n_lo, n_hi, _ = index._bounds_for(m)
            reachable = [n for n in range(1, 400) if rouge_l_fmeasure(min(m, n), m, n) > t]
            if reachable:
                assert n_lo <= reachable[0] and reachable[-1] <= n_hi
                assert n_lo >= math.floor(m * t / (2 - t)) - 1  # and not looser than the formula's range
                assert t == 0 or n_hi <= math.ceil(m * (2 - t) / t) + 1


def test_real_instructions_and_a_pool_added_after_the_index():
    seeds = [json.loads(line)["instruction"] for line in (FIXTURES / "seed_tasks_40.jsonl").open()]
    real = [r["instruction"] for r in json.loads((FIXTURES / "alpaca_60.json").read_text())]
    rng = random.Random(5)
    texts = []
    for text in real + seeds:
        texts.append(text)
        words = text.split()
        for _ in range(rng.randint(0, 3)):
            del words[rng.randrange(len(words))]
            texts.append(" ".join(words))
    for threshold in (0.5, 0.7, 0.9):
        exact = same_decisions(texts, threshold, seeds[:20])
        assert 0 < sum(d.kept for d in exact) < len(texts)
    deduper = RougeDeduper(0.7, method="indexed")
    deduper.add_batch(texts[:10])
    for seed in seeds:
        deduper.add(seed)  # pooled after the index was built
    assert not deduper.add_if_novel(seeds[3] + " now").kept


def test_chinese_fixture_indexed_with_unicode_tokens():
    zh = [json.loads(line)["instruction"] for line in (FIXTURES / "zh_instructions.jsonl").open()]
    same_decisions(zh, 0.7, tokenizer="unicode")


def test_auto_switches_to_the_index_at_the_crossover(monkeypatch, tmp_path):
    monkeypatch.setattr(dedup, "INDEXED_FROM", 50)
    small, big = RougeDeduper(0.7, method="auto"), RougeDeduper(0.7, ["a b"] * 20, method="auto")
    small.add_batch(["a b c"] * 29)
    big.add_batch(["a b c"] * 30)
    assert not small.indexed and big.indexed
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"instruction": f"task {i % 7} x"}) + "\n" for i in range(60)))
    result = dedup_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert (result.method, result.kept) == ("indexed", 7)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown dedup method 'fast'"):
        RougeDeduper(0.7, method="fast")
