"""Judge verdicts from text and logprobs (pure, fuzzed), and the prompt versions that key the cache."""

import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.eval import judge_prompts
from pacos.eval.judge_cache import game_key
from pacos.eval.judge_verdicts import parse_pairwise, parse_rating, preference_first, verdict_probabilities
from pacos.remote.reply import TokenLogprob, read_logprobs


def test_pairwise_verdicts_and_ambiguity():
    assert parse_pairwise("A explains more.\n[[A]]") == "first"
    assert parse_pairwise("[[ B ]]") == "second"
    assert parse_pairwise("Equally good: [[C]]") == "tie"
    assert parse_pairwise("[[A]] at first, but on reflection [[A]]") == "first"  # the same verdict twice
    assert parse_pairwise("A [[A]] or B [[B]]?") is None  # ambiguous
    assert parse_pairwise("[A] is better") is None and parse_pairwise("") is None and parse_pairwise("[[D]]") is None


def test_ratings_in_range_and_unambiguous():
    assert parse_rating("Rating: [[7]]") == 7.0
    assert parse_rating("[[8.5]]") == 8.5
    assert parse_rating("[[7]] and again [[7.0]]") == 7.0
    assert parse_rating("[[0]]") is None and parse_rating("[[11]]") is None
    assert parse_rating("[[3]] no, [[4]]") is None and parse_rating("Rating: 7") is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list("[]ABC 0123456789.\né") + ["[[", "]]", "[[A]]", "[[B]]", "[[7]]"]),
                max_size=200).map("".join) | st.text(max_size=200))
def test_any_text_gives_a_verdict_or_none(text):
    assert parse_pairwise(text) in ("first", "second", "tie", None)
    rating = parse_rating(text)
    assert rating is None or 1 <= rating <= 10


def test_parsing_is_linear_on_hostile_text():
    hostile = "[[" * 200_000 + "[[ " * 100_000 + "[[1" * 100_000 + "]"
    started = time.monotonic()
    assert parse_pairwise(hostile) is None and parse_rating(hostile) is None
    assert time.monotonic() - started < 1.0


def tokens(*parts):
    return tuple(TokenLogprob(t, lp, tuple(top)) for t, lp, top in parts)


def test_preference_from_the_verdict_tokens_top_logprobs():
    text = "B misses the point. [[A]]"
    toks = tokens(("B misses the point. ", -0.1, []), ("[[", 0.0, []),
                  ("A", math.log(0.6), [("A", math.log(0.6)), ("B", math.log(0.3)), ("C", math.log(0.05)),
                                        ("Alpha", math.log(0.05))]), ("]]", 0.0, []))
    p = verdict_probabilities(text, toks)
    assert abs(p["first"] - 0.6 / 0.95) < 1e-9 and abs(sum(p.values()) - 1) < 1e-9  # "Alpha" is no verdict
    assert abs(preference_first(p) - (0.6 + 0.025) / 0.95) < 1e-9
    merged = tokens(("x ", 0.0, []), ("[[B", math.log(0.5), [("[[B", math.log(0.5)), ("[[ A", math.log(0.5))]),
                    ("]]", 0.0, []))
    assert verdict_probabilities("x [[B]]", merged) == {"first": 0.5, "second": 0.5, "tie": 0.0}


def test_non_finite_and_mismatched_logprobs_are_ignored():
    text = "[[A]]"
    nan = tokens(("[[", 0.0, []), ("A", math.nan, [("A", math.nan), ("B", math.log(0.2)), ("C", math.inf)]),
                 ("]]", 0.0, []))
    assert verdict_probabilities(text, nan) == {"first": 0.0, "second": 1.0, "tie": 0.0}
    only_nan = tokens(("[[", 0.0, []), ("A", math.nan, [("A", math.nan)]), ("]]", 0.0, []))
    assert verdict_probabilities(text, only_nan) is None
    assert verdict_probabilities("other text [[A]]", nan) is None  # the tokens do not spell the text
    assert verdict_probabilities(text, None) is None and preference_first(None) is None


def test_logprobs_are_read_defensively():
    assert read_logprobs(None) is None and read_logprobs({"content": "x"}) is None
    assert read_logprobs({"content": [{"logprob": 0}]}) is None  # no token: positions cannot line up
    [tok] = read_logprobs({"content": [{"token": "A", "logprob": True, "top_logprobs": [
        {"token": "A", "logprob": -0.5}, {"token": "B", "logprob": "x"}, "junk", {"logprob": -1}]}]})
    assert tok.token == "A" and tok.logprob == -math.inf and tok.top == (("A", -0.5),)


def test_every_prompt_has_its_own_version_and_the_version_keys_the_cache():
    versions = [p.version for p in judge_prompts.ALL]
    assert len(set(versions)) == len(versions) and all(v.endswith("-v1") for v in versions)
    args = ("judge", "q1", 1, [["a"], ["b"]], "ab", False)
    assert game_key(args[0], "pairwise-v1", *args[1:]) != game_key(args[0], "pairwise-v2", *args[1:])
    assert game_key(args[0], "pairwise-v1", *args[1:]) == game_key(args[0], "pairwise-v1", *args[1:])
    changed = [("other-judge", "q1", 1, [["a"], ["b"]], "ab", False), ("judge", "q2", 1, [["a"], ["b"]], "ab", False),
               ("judge", "q1", 2, [["a"], ["b"]], "ab", False), ("judge", "q1", 1, [["b"], ["a"]], "ab", False),
               ("judge", "q1", 1, [["a"], ["b"]], "ba", False), ("judge", "q1", 1, [["a"], ["b"]], "ab", True)]
    keys = {game_key(j, "pairwise-v1", q, t, a, o, lp) for j, q, t, a, o, lp in changed}
    assert len(keys) == len(changed) and game_key(args[0], "pairwise-v1", *args[1:]) not in keys


def test_multi_turn_prompts_show_the_whole_conversation():
    prompt, messages = judge_prompts.render_pairwise(["Q1", "Q2"], ["a1", "a2"], ["b1", "b2"])
    assert prompt is judge_prompts.PAIRWISE_MULTI
    user = messages[1]["content"]
    assert all(x in user for x in ("Q1", "Q2", "a1", "a2", "b1", "b2")) and messages[0]["role"] == "system"
    prompt, messages = judge_prompts.render_rating(["Q1"], ["a {x} 1"], reference="42")
    assert prompt is judge_prompts.REFERENCE and "42" in messages[1]["content"] and "a {x} 1" in messages[1]["content"]
