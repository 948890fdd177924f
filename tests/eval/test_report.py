"""`pacos eval report`: judgements and human votes into a report (Markdown, --json, --plots), and its errors."""

import json
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacos.cli import main
from pacos.eval.report_rows import human_judgements

SCORE = {"a": 1, "b": 0, "tie": 0.5}


def pairwise(q, model_a, model_b, winner, *, turn=1, category=None, len_a=100, len_b=100, games=None,
             inconsistent=False, preference_a=None, excluded=None):
    return {"mode": "pairwise", "key": f"question {q}", "question_id": f"q{q}",
            "category": category, "turn": turn, "model_a": model_a, "model_b": model_b,
            "games": games if games is not None else [{"order": "ab", "verdict": winner, "p_a": None, "cached": False},
                                                       {"order": "ba", "verdict": winner, "p_a": None, "cached": False}],
            "winner": winner, "inconsistent": inconsistent, "score_a": None if winner is None else SCORE[winner],
            "preference_a": preference_a, "len_a": len_a, "len_b": len_b, "judge": "judge-x", "prompt_version": "v1",
            "excluded": excluded}


def single(q, model, rating, *, turn=1):
    return {"mode": "single", "key": f"question {q}", "question_id": f"q{q}", "category": None, "turn": turn,
            "model": model, "rating": rating, "len": 120, "judge": "judge-x", "prompt_version": "v1", "excluded": None}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def report(capsys, *args):
    assert main(["eval", "report", *map(str, args), "--json", "--resamples", "300"]) == 0
    return json.loads(capsys.readouterr().out)


def alpaca_vote(tmp_path):
    """Alpaca's blind comparison: 90 wins, 89 losses, 73 ties on 252 instructions."""
    winners = ["a"] * 90 + ["b"] * 89 + ["tie"] * 73
    return write(tmp_path / "alpaca.jsonl", [pairwise(q, "alpaca", "text-davinci-003", w) for q, w in enumerate(winners)])


def test_alpacas_result_is_reported_as_a_tie_within_its_interval(tmp_path, capsys):
    data = alpaca_vote(tmp_path)
    r = report(capsys, data)
    (p,) = r["pairwise"]
    assert (p["model"], p["baseline"], p["n"], p["wins"], p["ties"], p["losses"]) == \
        ("alpaca", "text-davinci-003", 252, 90, 73, 89)
    assert p["win_rate"]["value"] == pytest.approx((90 + 36.5) / 252)
    assert p["win_rate"]["low"] < 0.5 < p["win_rate"]["high"]
    assert p["verdict"].startswith("a tie with text-davinci-003")
    assert r["bradley_terry"] is None and r["position"]["flipped"] == 0
    assert main(["eval", "report", str(data), "--resamples", "300"]) == 0
    md = capsys.readouterr().out
    assert "| alpaca | 252 | 90 | 73 | 89 | 50.2% [" in md and "a tie with text-davinci-003 within the 95% CI" in md
    assert "95% percentile bootstrap over questions" in md


def three_models(tmp_path):
    rng = random.Random(0)
    records = []
    for q in range(40):
        category = ("writing", "math")[q % 2]
        for turn in (1, 2):
            # strong beats base mostly; weak loses mostly; strong vs weak judged once, weak as model_a
            records.append(pairwise(q, "strong", "base", rng.choice("aaab"), turn=turn, category=category,
                                    len_a=300, len_b=200))
            records.append(pairwise(q, "weak", "base", rng.choice(["b", "b", "tie", "a"]), turn=turn,
                                    category=category))
            records.append(pairwise(q, "weak", "strong", "b", turn=turn, category=category))
            records.append(single(q, "strong", rng.choice([7, 8, 9]), turn=turn))
    return write(tmp_path / "judgements.jsonl", records)


def test_three_models_get_win_rates_per_category_and_turn_grades_and_a_leaderboard(tmp_path, capsys):
    r = report(capsys, three_models(tmp_path), "--baseline", "base")
    assert r["baseline"] == "base"
    by = {p["model"]: p for p in r["pairwise"]}
    assert set(by) == {"strong", "weak"}  # strong vs weak is not against the baseline: only in Bradley-Terry
    assert by["strong"]["n"] == 80 and by["strong"]["win_rate"]["low"] > 0.5
    assert by["strong"]["verdict"].startswith("better than base")
    assert [c["category"] for c in by["strong"]["categories"]] == ["math", "writing"]
    assert [t["turn"] for t in by["strong"]["turns"]] == [1, 2] and sum(t["n"] for t in by["strong"]["turns"]) == 80
    assert by["strong"]["mean_length"] == 300 and by["strong"]["baseline_mean_length"] == 200
    assert by["strong"]["length_controlled"]["sigma"] == 0  # lengths always differ by the same 100: no fit term
    ratings = [x["model"] for x in r["bradley_terry"]["ratings"]]
    assert ratings == ["strong", "base", "weak"]
    assert r["bradley_terry"]["ratings"][1]["rating"]["value"] == 1000
    grades = {(g["model"], g["turn"]): g["rating"] for g in r["grades"]}
    assert set(grades) == {("strong", None), ("strong", 1), ("strong", 2)}
    assert 7 <= grades[("strong", 1)]["low"] <= grades[("strong", 1)]["value"] <= grades[("strong", 1)]["high"] <= 9
    lengths = {x["model"]: x for x in r["lengths"]}
    assert lengths["base"]["answers"] == 80 and lengths["strong"]["median"] in (120, 300)


def test_rows_with_the_baseline_as_model_a_are_seen_from_the_candidates_side(tmp_path, capsys):
    records = [pairwise(q, "base", "cand", "b", len_a=50, len_b=80) for q in range(12)]
    records += [pairwise(q, "cand", "base", "a", len_a=80, len_b=50) for q in range(12, 20)]
    r = report(capsys, write(tmp_path / "j.jsonl", records), "--baseline", "base")
    (p,) = r["pairwise"]
    assert (p["model"], p["wins"], p["losses"], p["win_rate"]["value"]) == ("cand", 20, 0, 1.0)
    assert p["mean_length"] == 80 and p["baseline_mean_length"] == 50


def test_length_controlled_win_rate_uses_the_judges_probabilities(tmp_path, capsys):
    rng = random.Random(1)
    records = []
    for q in range(200):
        la = rng.randint(100, 2000)
        pref = 0.9 if la > 1000 else 0.3  # the judge likes long answers and nothing else
        records.append(pairwise(q, "verbose", "base", "a" if pref > 0.5 else "b", len_a=la, len_b=1000,
                                preference_a=pref))
    r = report(capsys, write(tmp_path / "j.jsonl", records))
    lc = r["pairwise"][0]["length_controlled"]
    assert lc["soft_targets"] == 200 and lc["length_coef"] > 1
    assert abs(lc["win_rate"]["value"] - 0.6) < 0.08  # halfway between the two plateaus, not the raw ~50% of wins


def test_position_consistency_counts_flips_and_which_position_won(tmp_path, capsys):
    first = [{"order": "ab", "verdict": "a"}, {"order": "ba", "verdict": "b"}]  # the first shown won both
    second = [{"order": "ab", "verdict": "b"}, {"order": "ba", "verdict": "a"}]
    records = [pairwise(q, "m", "base", "tie", games=first, inconsistent=True) for q in range(3)]
    records += [pairwise(q, "m", "base", "tie", games=second, inconsistent=True) for q in range(3, 4)]
    records += [pairwise(q, "m", "base", "a") for q in range(4, 10)]
    records += [pairwise(q, "m", "base", "a", games=[{"order": "ab", "verdict": "a"}]) for q in range(10, 12)]
    r = report(capsys, write(tmp_path / "j.jsonl", records))
    assert r["position"] == {"checked": 10, "flipped": 4, "flip_share": 0.4, "first_position_won_both": 3,
                             "second_position_won_both": 1}


def test_excluded_records_are_counted_and_small_samples_get_caveats(tmp_path, capsys):
    records = [pairwise(q, "m", "base", "a") for q in range(5)]
    records += [pairwise(9, "m", "base", None, excluded="judge unreachable"), pairwise(8, "m", "base", None)]
    r = report(capsys, write(tmp_path / "j.jsonl", records))
    assert r["source"]["excluded"] == {"judge unreachable": 1, "no verdict": 1}
    assert r["pairwise"][0]["length_controlled"] is None
    caveats = " ".join(r["caveats"])
    assert "only 5 comparisons" in caveats and "2 records excluded" in caveats and "fewer than 10" in caveats


def test_out_and_plots_write_markdown_and_pngs(tmp_path, capsys):
    out, plots = tmp_path / "r" / "report.md", tmp_path / "r" / "plots"
    out.parent.mkdir()
    assert main(["eval", "report", str(three_models(tmp_path)), "--baseline", "base", "--out", str(out), "--plots",
                 str(plots), "--resamples", "200"]) == 0
    assert capsys.readouterr().out == ""
    md = out.read_text()
    assert "## Bradley-Terry leaderboard" in md and "![plots/win_rates.png](plots/win_rates.png)" in md
    for name in ("win_rates.png", "length_preference.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["plots", "report.md"]  # no temp files left


@pytest.mark.parametrize("line, message", [
    ('{"mode": "pairwise"', "j.jsonl:2: "),
    ('{"mode": "debate", "question_id": "q"}', "j.jsonl:2: unknown mode 'debate'"),
    ('[1, 2]', "j.jsonl:2: expected a JSON object"),
    (json.dumps({**pairwise(1, "m", "base", "a"), "len_a": -3}), "j.jsonl:2: field 'len_a' must be an integer >= 0"),
    (json.dumps({**pairwise(1, "m", "base", "a"), "score_a": 0}), "j.jsonl:2: score_a 0 does not match winner 'a'"),
    (json.dumps(pairwise(0, "base", "m", "b")), "j.jsonl:2: the same judgement again (first at "),
    (json.dumps({**single(1, "m", 11)}), "j.jsonl:2: field 'rating' must be from 1 to 10"),
])
def test_a_bad_record_is_one_line_naming_its_place(tmp_path, capsys, line, message):
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps(pairwise(0, "m", "base", "a")) + "\n" + line + "\n")
    assert main(["eval", "report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pacos: error: ") and message in err, err


def test_usage_errors(tmp_path, capsys):
    data = alpaca_vote(tmp_path)
    assert main(["eval", "report", str(data), "--baseline", "nobody"]) == 2
    assert "--baseline nobody: no pairwise judgement has that model; models: alpaca, text-davinci-003" in \
        capsys.readouterr().err
    assert main(["eval", "report"]) == 2
    assert "nothing to report: give judgements files, --human DB, --tasks or --perplexity" in capsys.readouterr().err
    human = tmp_path / "fb.db"
    assert main(["eval", "report", str(data), "--human", str(human)]) == 2
    assert "give judgements files or --human DB (one source per report)" in capsys.readouterr().err
    ambiguous = write(tmp_path / "amb.jsonl", [pairwise(0, "x", "y", "a"), pairwise(1, "y", "z", "a")])
    assert main(["eval", "report", str(ambiguous)]) == 2 and "name it with --baseline" in capsys.readouterr().err
    assert main(["eval", "report", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def comparison(i, model_a, model_b, vote, *, question="What is 2+2?", response_a="four", response_b="4"):
    return {"id": f"c{i}", "context": [{"role": "user", "content": question}], "model_a": model_a,
            "model_b": model_b, "response_a": response_a, "response_b": response_b, "vote": vote,
            "created_at": 1.0 + i}


def test_human_votes_become_pairwise_rows():
    rows = human_judgements([comparison(0, "m", "base", "a"), comparison(1, "base", "m", "both_bad"),
                             comparison(2, "base", "m", "b", question="Hi"), comparison(3, "m", "m", "a")], "fb.db")
    assert rows.kind == "human" and rows.excluded == {"same model on both sides": 1}
    a, bad, b = rows.pairwise
    assert (a.score_a, bad.score_a, bad.both_bad, b.score_a) == (1.0, 0.5, True, 0.0)
    assert (a.len_a, a.len_b, a.category, a.turn, a.games) == (4, 1, None, 1, ())
    assert a.question_id == bad.question_id != b.question_id  # one context, one question for the bootstrap


def test_human_votes_with_an_unknown_vote_are_refused():
    from pacos.errors import DataError

    with pytest.raises(DataError, match="fb.db: vote c0: unknown vote 'meh'"):
        human_judgements([comparison(0, "m", "base", "meh")], "fb.db")


def test_report_from_a_feedback_database(tmp_path, capsys):
    from pacos.serve.feedback import FeedbackStore

    db = tmp_path / "feedback.db"
    store = FeedbackStore(db)
    votes = ["a"] * 14 + ["b"] * 6 + ["tie"] * 3 + ["both_bad"] * 2
    for i, vote in enumerate(votes):
        left, right = ("tuned", "base") if i % 2 else ("base", "tuned")  # sides alternate, as a blind page shows them
        vote = {"a": "b", "b": "a"}.get(vote, vote) if left == "base" else vote  # votes are for "tuned" as given
        store.record_comparison(comparison_id=f"c{i}", context=[{"role": "user", "content": f"question {i}"}],
                                model_a=left, model_b=right, response_a="x" * 10, response_b="y" * 20, vote=vote)
    store.record_comparison(comparison_id="c99", context=[{"role": "user", "content": "q"}], model_a="tuned",
                            model_b="other", response_a="a", response_b="b", vote="a")
    r = report(capsys, "--human", db, "--baseline", "base")
    assert r["source"]["kind"] == "human" and r["position"] is None
    (p,) = r["pairwise"]
    assert (p["model"], p["wins"], p["losses"], p["ties"], p["both_bad"]) == ("tuned", 14, 6, 5, 2)
    assert r["bradley_terry"]["ratings"][0]["model"] == "tuned"
    assert main(["eval", "report", "--human", str(db), "--baseline", "base", "--resamples", "200"]) == 0
    assert "| both bad |" in capsys.readouterr().out


_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) |
                     st.text(max_size=8), lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_fields = list(pairwise(0, "m", "base", "a")) + ["rating", "model", "len"]


@st.composite
def hostile_line(draw):
    """A judgement with one field replaced, removed or added, or a line that is not a judgement at all."""
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "json", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40)).replace("\n", " ")
    if kind == "json":
        return json.dumps(draw(_json))
    q = draw(st.integers(0, 30))
    record = draw(st.sampled_from([pairwise(q, "m", "base", draw(st.sampled_from(["a", "b", "tie"])),
                                            len_a=draw(st.integers(0, 900))),
                                   pairwise(q, "x", "m", "a"), single(q, "m", draw(st.integers(1, 10)))]))
    if kind == "mutated":
        name = draw(st.sampled_from(_fields))
        if draw(st.booleans()):
            record.pop(name, None)
        else:
            record[name] = draw(_json)
    return json.dumps(record)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(hostile_line(), min_size=1, max_size=25))
def test_fuzz_any_judgements_file_gives_a_report_or_one_line_error(capsys, lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.jsonl"
        path.write_text("\n".join(lines) + "\n")
        code = main(["eval", "report", str(path), "--json", "--resamples", "100"])
        out, err = capsys.readouterr()
    assert code in (0, 2), err
    if code == 0:
        assert isinstance(json.loads(out)["caveats"], list)
    else:
        assert err.startswith("pacos: error: ") and err.count("\n") == 1, err
