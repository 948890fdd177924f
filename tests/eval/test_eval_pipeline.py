"""The evaluation loop end to end: `pacos eval answer` -> `pacos eval judge` -> `pacos eval report`, against a judge
double with a known length bias and a known position bias (tests/eval/judge_double.py, `bias=`)."""

import json
import random
import sys
from pathlib import Path

import pytest

from pacos.cli import main
from pacos.eval.questions import answer_record, instruction_question

sys.path.insert(0, str(Path(__file__).parent))  # importlib import mode: make judge_double importable
from judge_double import JudgeDouble  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def biased_judge():
    # P(A wins) = expit((len(A) - len(B)) / 50 + 1.5): longer answers and the first position are preferred.
    d = JudgeDouble(bias=(50.0, 1.5))
    yield d
    d.close()


def judge(double, out, *answers, baseline):
    return main(["eval", "judge", *sum((["--answers", str(a)] for a in answers), []), "--baseline", str(baseline),
                 "--mode", "pairwise", "--out", str(out), "--judge-url", double.url, "--judge-model", double.model,
                 "--logprobs", "--no-progress"])


def report(capsys, *judgements) -> dict:
    capsys.readouterr()
    assert main(["eval", "report", *map(str, judgements), "--json", "--resamples", "400"]) == 0
    return json.loads(capsys.readouterr().out)


def write_answers(path, model, texts):
    questions = [instruction_question(f"Explain topic number {i}.", question_id=i) for i in range(len(texts))]
    path.write_text("".join(json.dumps(answer_record(q, [t], model)) + "\n" for q, t in zip(questions, texts)))
    return path


def test_length_control_and_position_swap_undo_the_judges_known_biases(biased_judge, tmp_path, capsys):
    rng = random.Random(0)
    n = 60
    # Two equally good models (the same answer) that differ only in length: "verbose" pads more.
    verbose = write_answers(tmp_path / "verbose.jsonl", "verbose", ["An answer." + " more" * rng.randint(0, 60)
                                                                    for _ in range(n)])
    terse = write_answers(tmp_path / "terse.jsonl", "terse", ["An answer." + " more" * rng.randint(0, 30)
                                                              for _ in range(n)])
    assert judge(biased_judge, tmp_path / "j.jsonl", verbose, baseline=terse) == 0
    assert len(biased_judge.requests) == 2 * n  # one judgement per pair and order
    result = report(capsys, tmp_path / "j.jsonl")
    (row,) = result["pairwise"]
    assert row["model"] == "verbose" and row["n"] == n
    assert row["win_rate"]["value"] > 0.65  # the raw rate rewards length
    lc = row["length_controlled"]
    assert 0.45 < lc["win_rate"]["value"] < 0.55 and lc["length_coef"] > 0  # controlled: about even
    # Every verdict that flipped with the order went to the answer shown first: the swap made it a tie.
    position = result["position"]
    assert position["flipped"] > 0 and position["first_position_won_both"] == position["flipped"]

    # Equal lengths: only the position decides, so each item is a tie by the swap and the rate is exactly 50%.
    same = write_answers(tmp_path / "same.jsonl", "same", ["An answer of the same length."] * 20)
    other = write_answers(tmp_path / "other.jsonl", "other", ["An answer of equal size, yes."] * 20)
    assert judge(biased_judge, tmp_path / "k.jsonl", same, baseline=other) == 0
    result = report(capsys, tmp_path / "k.jsonl")
    (row,) = result["pairwise"]
    assert (row["wins"], row["ties"], row["losses"]) == (0, 20, 0) and row["win_rate"]["value"] == 0.5
    assert result["position"]["flip_share"] == 1.0
    games = [json.loads(line)["games"] for line in (tmp_path / "k.jsonl").read_text().splitlines()]
    assert all({g["order"]: g["verdict"] for g in pair} == {"ab": "a", "ba": "b"} for pair in games)

    # The same command again: everything is cached, not one request is sent.
    sent = len(biased_judge.requests)
    assert judge(biased_judge, tmp_path / "k.jsonl", same, baseline=other) == 0
    assert len(biased_judge.requests) == sent


def test_two_models_answer_a_published_baseline_and_are_reported(tiny_model_dir, tmp_path, capsys):
    """Two models (the tiny one greedy and sampled) answer Self-Instruct questions through the engine, are judged
    against text-davinci-003's published answers by the double (no bias: the longer answer wins), and reported:
    the counts in the report are the ones the double's rule gives."""
    questions = FIXTURES / "user_oriented.jsonl"
    answers = []
    for name, extra in (("greedy", []), ("sampled", ["--temperature", "1.0", "--seed", "3"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["eval", "answer", str(tiny_model_dir), "--questions", str(questions), "--out", str(out),
                     "--name", name, "--max-new-tokens", "12", "--no-progress", *extra]) == 0
        answers.append(out)
    baseline = FIXTURES / "user_oriented_text-davinci-003.jsonl"
    double = JudgeDouble()
    try:
        assert judge(double, tmp_path / "j.jsonl", *answers, baseline=baseline) == 0
    finally:
        double.close()
    items = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    result = report(capsys, tmp_path / "j.jsonl")
    assert result["baseline"] == "user_oriented_text-davinci-003"
    for row in result["pairwise"]:
        mine = [i for i in items if row["model"] in (i["model_a"], i["model_b"])]
        longer = [(i["len_a"] if i["model_a"] == row["model"] else i["len_b"])
                  - (i["len_b"] if i["model_a"] == row["model"] else i["len_a"]) for i in mine]
        assert (row["wins"], row["ties"], row["losses"]) == (sum(d > 0 for d in longer), sum(d == 0 for d in longer),
                                                             sum(d < 0 for d in longer))
        assert row["n"] == len(mine) > 0
    assert {r["model"] for r in result["pairwise"]} == {"greedy", "sampled"}
