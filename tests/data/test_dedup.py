"""The ROUGE-L novelty filter decides exactly as rouge_score does, including float ties at the threshold."""

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from pacos.cli import main
from pacos.data.dedup import RougeDeduper, dedup_file, rouge_l_fmeasure, rouge_tokens
from pacos.errors import DataError

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
FIXTURES = Path(__file__).parent / "fixtures"  # real records, see fixtures/README.md


def reference_dedup(texts, threshold, pool=()):
    """Alpaca's loop: rouge_score `_score_lcs` of each candidate against every pooled text."""
    pool_tokens = [SCORER._tokenizer.tokenize(t) for t in pool]
    kept, scores = [], []
    for text in texts:
        tokens = SCORER._tokenizer.tokenize(text)
        f = [rouge_scorer._score_lcs(tokens, other).fmeasure for other in pool_tokens]
        scores.append(max(f, default=0.0))
        if not (f and max(f) > threshold):
            kept.append(text)
            pool_tokens.append(tokens)
    return kept, scores


def near_duplicate_stream(rng, n, vocab_size, max_len=20):
    """Short texts over a small vocabulary, half of them edits of earlier ones: many scores near any threshold."""
    vocab = [f"w{i}" for i in range(vocab_size)]
    texts = []
    for _ in range(n):
        if texts and rng.random() < 0.5:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, 3)):
                op = rng.randrange(3)
                if op == 0 and len(words) > 1:
                    del words[rng.randrange(len(words))]
                elif op == 1:
                    words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
                elif words:
                    i, j = rng.randrange(len(words)), rng.randrange(len(words))
                    words[i], words[j] = words[j], words[i]
        else:
            words = [rng.choice(vocab) for _ in range(rng.randint(0, max_len))]
        texts.append(" ".join(words))
    return texts


def test_tokens_equal_rouge_scores_tokenizer():
    rng = random.Random(1)
    alphabet = "abcXYZ019 \t\n.,;'-_!?éÉßİıΣ中\u00a0\u2028"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["Don't re-write: U.S.A. 3.14 e-mail", "İstanbul ǅ Straße", ""]
    for text in texts:
        assert rouge_tokens(text) == SCORER._tokenizer.tokenize(text), repr(text)


@pytest.mark.parametrize("threshold", [0.7, 0.5, 0.3, 0.9])
@pytest.mark.parametrize("vocab_size", [6, 40])
def test_decisions_and_scores_equal_rouge_score_on_random_streams(threshold, vocab_size):
    rng = random.Random(vocab_size * 1000 + int(threshold * 10))
    pool = near_duplicate_stream(rng, 30, vocab_size)
    texts = near_duplicate_stream(rng, 250, vocab_size)
    kept_ref, scores_ref = reference_dedup(texts, threshold, pool)
    deduper = RougeDeduper(threshold, pool)
    decisions = deduper.add_batch(texts)
    assert [t for t, d in zip(texts, decisions) if d.kept] == kept_ref
    assert [d.score for d in decisions] == scores_ref  # bit-identical floats
    assert deduper.texts == list(pool) + kept_ref


def test_one_at_a_time_equals_batch():
    rng = random.Random(7)
    texts = near_duplicate_stream(rng, 300, 10)
    one = RougeDeduper(0.7)
    batch = RougeDeduper(0.7)
    assert [one.add_if_novel(t) for t in texts] == batch.add_batch(texts)


def exact_tie_pairs(threshold=Fraction(7, 10), max_len=60):
    """(lcs, len_a, len_b) whose exact ROUGE-L F equals the threshold, grouped by how the float F rounds."""
    groups = {"above": [], "equal": [], "below": []}
    t = float(threshold)
    for la in range(1, max_len):
        for lb in range(1, max_len):
            for lcs in range(1, min(la, lb) + 1):
                if Fraction(2 * lcs, la + lb) == threshold:
                    f = rouge_l_fmeasure(lcs, la, lb)
                    groups["above" if f > t else "equal" if f == t else "below"].append((lcs, la, lb))
    return groups


def pair_with_lcs(lcs, la, lb, rng):
    """Two texts of la and lb tokens whose LCS is exactly `lcs` (shared tokens in order, the rest distinct)."""
    common = [f"c{i}" for i in range(lcs)]
    a, b = list(common), list(common)
    for i in range(la - lcs):
        a.insert(rng.randint(0, len(a)), f"a{i}")
    for i in range(lb - lcs):
        b.insert(rng.randint(0, len(b)), f"b{i}")
    return " ".join(a), " ".join(b)


def test_exact_threshold_ties_fall_like_rouge_score():
    rng = random.Random(0)
    groups = exact_tie_pairs()
    assert groups["above"] and groups["equal"] and groups["below"]  # float rounding goes all three ways at 0.7
    for name, triples in groups.items():
        for lcs, la, lb in triples:
            a, b = pair_with_lcs(lcs, la, lb, rng)
            ref = SCORER.score(a, b)["rougeL"].fmeasure
            decision = RougeDeduper(0.7, [b]).add_if_novel(a)
            assert decision.score == ref
            assert decision.kept == (not ref > 0.7) == (name != "above"), (lcs, la, lb)


def test_ties_inside_one_batch_and_against_many():
    rng = random.Random(3)
    pairs = [pair_with_lcs(*t, rng) for ts in exact_tie_pairs().values() for t in ts[:20]]
    texts = [x for pair in pairs for x in (pair[1], pair[0])]  # each b then its a, in one stream
    kept_ref, scores_ref = reference_dedup(texts, 0.7)
    decisions = RougeDeduper(0.7).add_batch(texts)
    assert [t for t, d in zip(texts, decisions) if d.kept] == kept_ref
    assert [d.score for d in decisions] == scores_ref


def test_real_instructions_with_near_duplicates():
    seeds = [json.loads(line)["instruction"] for line in (FIXTURES / "seed_tasks_40.jsonl").read_text().splitlines()]
    real = [r["instruction"] for r in json.loads((FIXTURES / "alpaca_60.json").read_text())]
    rng = random.Random(5)
    texts = []
    for text in real:
        texts.append(text)
        words = text.split()
        if len(words) > 3 and rng.random() < 0.5:
            del words[rng.randrange(len(words))]
            texts.append(" ".join(words))
    kept_ref, scores_ref = reference_dedup(texts, 0.7, seeds)
    decisions = RougeDeduper(0.7, seeds).add_batch(texts)
    assert [t for t, d in zip(texts, decisions) if d.kept] == kept_ref
    assert [d.score for d in decisions] == scores_ref
    assert 0 < len(kept_ref) < len(texts)


def test_nearest_is_the_best_scoring_pool_text():
    deduper = RougeDeduper(0.7, ["translate this sentence into french", "sort a list of numbers"])
    decision = deduper.add_if_novel("Sort the list of numbers!")
    assert not decision.kept and decision.nearest == "sort a list of numbers"
    assert decision.score == SCORER.score("Sort the list of numbers!", "sort a list of numbers")["rougeL"].fmeasure
    assert deduper.add_if_novel("!!!") == (True, 0.0, None)


def write_jsonl(path, objects):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))


def test_dedup_file_keeps_fields_and_order_and_uses_against(tmp_path):
    records = [
        {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well.", "id": 1},
        {"instruction": "Give three tips for staying healthy!", "input": "", "output": "Sleep.", "id": 2},
        {"instruction": "Name the capital of France.", "input": "", "output": "Paris", "id": 3},
        {"instruction": "Translate the sentence into German.", "input": "Hi", "output": "Hallo", "id": 4},
    ]
    write_jsonl(tmp_path / "in.jsonl", records)
    write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "What is the capital of France?", "instances": []}])
    result = dedup_file(tmp_path / "in.jsonl", tmp_path / "out.json", threshold=0.5, against=[tmp_path / "seeds.jsonl"])
    assert json.loads((tmp_path / "out.json").read_text()) == [records[0], records[3]]
    assert (result.read, result.kept, result.dropped, result.against) == (4, 2, 2, 1)
    assert "kept 2" in str(result) and "dropped 2" in str(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.json", "seeds.jsonl"]  # no temp left


def test_dedup_cli_reads_json_array_and_writes_jsonl(tmp_path, capsys):
    records = [{"instruction": "Add two numbers.", "output": "3"}, {"instruction": "add two numbers", "output": "4"}]
    (tmp_path / "in.json").write_text(json.dumps(records))
    assert main(["data", "dedup", str(tmp_path / "in.json"), str(tmp_path / "out.jsonl")]) == 0
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == records[:1]
    assert "read 2 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"instruction": "a"}\n{"output": "b"}\n', "in.jsonl:2: record has no 'instruction' field"),
        ('{"instruction": "a"}\n{"instruction": \n', "in.jsonl:2: malformed JSON"),
        ('[{"instruction": 3}]', "in.jsonl[0]: record has a non-string 'instruction' field"),
        ("[1]", "in.jsonl[0]: record is not a JSON object"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, capsys, content, message):
    (tmp_path / "in.jsonl").write_text(content)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dedup_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert main(["data", "dedup", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "out.jsonl").exists()


def test_chinese_file_gets_the_unicode_tokenizer_and_keeps_exactly_the_distinct_tasks(tmp_path, capsys):
    records = [json.loads(line) for line in (FIXTURES / "zh_instructions.jsonl").open()]
    distinct = [r for r in records if r["duplicate_of"] is None]
    out = tmp_path / "out.jsonl"
    assert main(["data", "dedup", str(FIXTURES / "zh_instructions.jsonl"), str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == distinct
    captured = capsys.readouterr()
    assert "unicode tokens" in captured.out and "warning" not in captured.err


def test_rouge_tokenizer_on_chinese_warns_and_shows_the_issue(tmp_path, capsys):
    """rouge_score's tokens: near duplicates (no digits: no tokens) are kept, and 计算半径为5的圆的面积。 (token
    `5`) is dropped as a copy of 列出5种不同的说服性写作技巧。."""
    out = tmp_path / "out.jsonl"
    assert main(["data", "dedup", str(FIXTURES / "zh_instructions.jsonl"), str(out), "--tokenizer", "rouge"]) == 0
    kept = [json.loads(line)["instruction"] for line in out.read_text().splitlines()]
    assert "计算半径为5的圆的面积。" not in kept and "列出五种不同的说服性写作技巧。" in kept
    err = capsys.readouterr().err
    assert "warning:" in err and "use --tokenizer unicode" in err


def test_progress_bar_shows_rate_and_eta(tmp_path, capsys):
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": f"task number {i}"} for i in range(3000)])
    dedup_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", progress=True)
    err = capsys.readouterr().err
    assert "dedup: 100%" in err and "3000/3000" in err and "rec/s" in err and "<00:00" in err
    dedup_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl")  # not a terminal: no bar
    assert capsys.readouterr().err == ""
