"""pacos.eval.stats: bootstrap coverage, Alpaca's 90-89-73 tie, length control, Bradley-Terry recovery."""

import math

import numpy as np
import pytest

from pacos.eval import stats


def test_bootstrap_interval_covers_the_true_rate_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    true, n, trials = 0.6, 120, 300
    covered = 0
    for t in range(trials):
        outcome = rng.choice([1.0, 0.5, 0.0], size=n, p=[0.5, 0.2, 0.3])  # mean 0.5 + 0.1 = 0.6
        covered += stats.bootstrap_mean(outcome, range(n), resamples=400, seed=t).contains(true)
    assert 0.90 <= covered / trials <= 0.985


def test_alpacas_90_wins_89_losses_73_ties_is_a_tie_within_its_interval():
    outcome = [1.0] * 90 + [0.0] * 89 + [0.5] * 73
    rate = stats.bootstrap_mean(outcome, range(252), resamples=2000, seed=0)
    assert rate.value == pytest.approx((90 + 73 / 2) / 252)
    assert rate.contains(0.5) and rate.high - rate.low > 0.08  # about +-5 points at n = 252
    assert rate.n == 252


def test_the_bootstrap_resamples_questions_not_rows():
    # Two turns per question that always agree: the interval must be as wide as 50 questions', not 100 rows'.
    rng = np.random.default_rng(0)
    per_question = rng.integers(0, 2, 50).astype(float)
    rows, questions = np.repeat(per_question, 2), np.repeat(np.arange(50), 2)
    clustered = stats.bootstrap_mean(rows, questions, resamples=2000, seed=0)
    naive = stats.bootstrap_mean(rows, range(100), resamples=2000, seed=0)
    assert (clustered.high - clustered.low) > 1.25 * (naive.high - naive.low)


def test_same_seed_same_interval():
    a = stats.bootstrap_mean([1, 0, 0.5, 1, 1, 0], range(6), resamples=500, seed=3)
    assert a == stats.bootstrap_mean([1, 0, 0.5, 1, 1, 0], range(6), resamples=500, seed=3)


def _length_data(n, rng, slope, quality, mean_delta=400.0):
    delta = rng.normal(mean_delta, 300.0, n)
    p = 1 / (1 + np.exp(-(quality + slope * np.tanh(delta / delta.std()))))
    return (rng.random(n) < p).astype(float), 1000 + delta, np.full(n, 1000.0)


def test_length_control_removes_a_preference_for_length_alone():
    pref, len_a, len_b = _length_data(800, np.random.default_rng(2), slope=2.5, quality=0.0)
    lc = stats.length_controlled_win_rate(pref, len_a, len_b, range(800), resamples=300, seed=0)
    assert pref.mean() > 0.75  # the raw win rate: the longer model "wins"
    assert abs(lc.win_rate.value - 0.5) < 0.06 and lc.win_rate.contains(0.5)
    assert lc.length_coef > 1.5


def test_length_control_changes_nothing_without_a_length_effect():
    pref, len_a, len_b = _length_data(800, np.random.default_rng(3), slope=0.0, quality=0.8)
    lc = stats.length_controlled_win_rate(pref, len_a, len_b, range(800), resamples=300, seed=0)
    assert lc.win_rate.value == pytest.approx(pref.mean(), abs=0.03)
    assert lc.win_rate.low < lc.win_rate.value < lc.win_rate.high


def test_length_control_with_equal_lengths_is_the_mean_preference():
    pref = np.array([1, 1, 0, 0.5, 1, 0.8, 0.2, 1, 1, 0])
    lc = stats.length_controlled_win_rate(pref, [100] * 10, [100] * 10, range(10), resamples=200, seed=0)
    assert lc.win_rate.value == pytest.approx(pref.mean(), abs=1e-4) and lc.sigma == 0


def test_soft_logistic_fits_many_resamples_as_one_problem_like_one_at_a_time():
    rng = np.random.default_rng(4)
    x = rng.normal(size=200)
    y = (rng.random(200) < 1 / (1 + np.exp(-(0.3 + x)))).astype(float)
    weights = stats.resample_counts(200, 5, seed=0)
    together = stats.fit_soft_logistic([np.ones(200), x], y, weights)
    for w, beta in zip(weights, together):
        assert beta == pytest.approx(stats.fit_soft_logistic([np.ones(200), x], y, w), abs=1e-4)


def test_bradley_terry_recovers_the_order_and_strengths_of_simulated_models():
    rng = np.random.default_rng(5)
    elo = {"base": 1000.0, "good": 1150.0, "best": 1300.0, "weak": 880.0}
    models = list(elo)
    mi, mj, score, questions = [], [], [], []
    for q in range(400):
        for a in range(4):
            for b in range(a + 1, 4):
                i, j = models[a], models[b]
                p = 1 / (1 + 10 ** ((elo[j] - elo[i]) / 400))
                mi.append(i)
                mj.append(j)
                score.append(float(rng.random() < p))
                questions.append(q)
    ratings = stats.bradley_terry(mi, mj, score, questions, anchor="base", resamples=300, seed=0)
    assert [r.model for r in ratings] == ["best", "good", "base", "weak"]
    by = {r.model: r.rating for r in ratings}
    assert by["base"].value == 1000.0
    for m, true in elo.items():
        assert by[m].value == pytest.approx(true, abs=40)
        if m != "base":
            assert by[m].low < by[m].value < by[m].high and by[m].contains(true)


def test_bradley_terry_counts_a_tie_as_half_a_win_each_way():
    # Only ties between base and x, and x always beats y: base and x equal, y far below.
    mi = ["base"] * 20 + ["x"] * 20
    mj = ["x"] * 20 + ["y"] * 20
    score = [0.5] * 20 + [0.75] * 20
    ratings = {r.model: r.rating for r in stats.bradley_terry(mi, mj, score, range(40), anchor="base",
                                                              resamples=200, seed=0)}
    assert ratings["x"].value == pytest.approx(1000.0, abs=0.5)
    assert ratings["y"].value == pytest.approx(1000 - 400 * math.log10(3), abs=0.5)  # 3:1 odds


def test_connected():
    assert stats.connected(["a", "b"], ["b", "c"])
    assert not stats.connected(["a", "c"], ["b", "d"])
