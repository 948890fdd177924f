"""The statistics of an evaluation report: bootstrap intervals, length-controlled win rate, Bradley-Terry ratings.

Plain functions on numpy arrays. Every interval is a 95% percentile bootstrap that resamples *questions*
(clusters): the turns of one question, or its comparisons against several models, move together, since they
are not independent. Each function takes its own `seed`, so a number does not depend on what was computed
before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
# Chatbot Arena's Elo-like scale: P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)), the anchor at 1000.
ELO_SCALE, ELO_BASE, ELO_ANCHOR = 400.0, 10.0, 1000.0


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% bootstrap interval; `n` is how many observations it rests on."""

    value: float
    low: float
    high: float
    n: int

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def cluster_ids(keys) -> tuple[np.ndarray, int]:
    """Per row, the index of its cluster (rows with equal keys share one), and how many clusters there are."""
    index: dict = {}
    ids = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.intp)
    return ids, len(index)


def resample_counts(n_clusters: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_clusters): how often each cluster is drawn in each bootstrap resample (a multinomial draw
    of n_clusters out of n_clusters, the same as drawing clusters with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=resamples).astype(float)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return float(low), float(high)


def bootstrap_mean(values, clusters, *, resamples: int = 2000, seed: int = 0) -> Estimate:
    """The mean of `values` (e.g. 1 / 0.5 / 0 per comparison: the win rate with ties as half) with a cluster
    bootstrap interval. `clusters` gives each value's question."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap_mean: no values")
    ids, n = cluster_ids(clusters)
    sums, sizes = np.bincount(ids, values, n), np.bincount(ids, minlength=n).astype(float)
    counts = resample_counts(n, resamples, seed)
    with np.errstate(invalid="ignore"):
        means = (counts @ sums) / (counts @ sizes)
    return Estimate(float(values.mean()), *_interval(means), int(values.size))


def fit_soft_logistic(features: list, y, weight, start=None, ridge: float = 1e-6) -> np.ndarray:
    """Logistic regressions P(y=1) = expit(sum_k beta_k * features[k]) with soft targets y in [0, 1], fitted by
    weighted cross-entropy with scipy's L-BFGS: one per row of `weight` (shape (B, n): B bootstrap resamples,
    fitted together as one separable problem) or one for a 1-d `weight`. Each feature and `y` are (n,) or (B, n).
    Returns (B, k) coefficients, or (k,). A tiny ridge keeps a fit finite when the data separate perfectly (a
    model that won everything), as Chatbot Arena's near-unregularised logistic regression does."""
    from scipy.optimize import minimize
    from scipy.special import expit

    weight = np.asarray(weight, dtype=float)
    single = weight.ndim == 1
    w = np.atleast_2d(weight)
    w = w / w.sum(axis=1, keepdims=True)  # each fit's loss is a weighted mean: resamples count alike
    b, k = w.shape[0], len(features)

    def loss(flat):
        beta = flat.reshape(b, k)
        z = sum(beta[:, j, None] * f for j, f in enumerate(features))
        value = (w * (np.logaddexp(0.0, z) - y * z)).sum() + ridge * (beta ** 2).sum()  # softplus(z) - y z
        r = w * (expit(z) - y)
        grad = np.stack([(r * f).sum(axis=1) for f in features], axis=1) + 2 * ridge * beta
        return value, grad.ravel()

    beta0 = np.zeros((b, k)) if start is None else np.broadcast_to(start, (b, k))
    result = minimize(loss, beta0.ravel(), jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-10})
    beta = result.x.reshape(b, k)
    return beta[0] if single else beta


@dataclass(frozen=True)
class LengthControlled:
    """A length-controlled win rate: the fitted P(candidate preferred) at zero length difference."""

    win_rate: Estimate
    intercept: float
    length_coef: float  # the weight of tanh(length difference / sigma): > 0 means longer answers are preferred
    sigma: float  # the standard deviation of the length differences (characters) that normalises them


def length_feature(delta: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """tanh(delta / sigma), sigma the weighted standard deviation of delta within each row of `weight` (B, n), as
    AlpacaEval 2's GLM normalises length differences; zero where the differences do not vary."""
    total = weight.sum(axis=1, keepdims=True)
    mean = (weight * delta).sum(axis=1, keepdims=True) / total
    var = (weight * (delta - mean) ** 2).sum(axis=1, keepdims=True) / np.maximum(total - 1, 1)
    sigma = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sigma > 0, np.tanh(delta / np.where(sigma > 0, sigma, 1.0)), 0.0)


def length_controlled_win_rate(preference, len_a, len_b, clusters, *, resamples: int = 2000,
                               seed: int = 0) -> LengthControlled:
    """AlpacaEval 2's length control for one pair (its GLM without the instruction-difficulty term): regress the
    preference for A on tanh((len_a - len_b) / sigma) with an intercept, and predict at zero difference,
    expit(intercept). The interval refits the regression (sigma included) on each bootstrap resample."""
    from scipy.special import expit

    y = np.asarray(preference, dtype=float)
    delta = np.asarray(len_a, dtype=float) - np.asarray(len_b, dtype=float)
    if y.size == 0:
        raise ValueError("length_controlled_win_rate: no preferences")
    ones = np.ones((1, y.size))
    feature = length_feature(delta, ones)[0]
    beta = fit_soft_logistic([np.ones_like(y), feature], y, ones[0])
    ids, n = cluster_ids(clusters)
    weights = resample_counts(n, resamples, seed)[:, ids]
    boot = fit_soft_logistic([np.ones_like(y), length_feature(delta, weights)], y, weights, start=beta)
    sigma = float(np.std(delta, ddof=1)) if y.size > 1 else 0.0
    return LengthControlled(Estimate(float(expit(beta[0])), *_interval(expit(boot[:, 0])), int(y.size)),
                            float(beta[0]), float(beta[1]), sigma)


@dataclass(frozen=True)
class Rating:
    model: str
    rating: Estimate  # on the Elo-like scale, the anchor model at 1000
    comparisons: int


def bradley_terry(model_i, model_j, score_i, clusters, *, anchor: str, resamples: int = 2000,
                  seed: int = 0) -> list[Rating]:
    """Bradley-Terry strengths by maximum likelihood from pairwise outcomes (score_i: 1 i won, 0.5 tie (half a
    win each way), 0 j won), as Chatbot Arena fits them: a logistic regression on +1/-1 model indicators. On
    Arena's scale (400 points = 10:1 odds) with `anchor` fixed at 1000; intervals from a question bootstrap.
    Sorted by rating, best first."""
    models = sorted(set(model_i) | set(model_j))
    if anchor not in models:
        raise ValueError(f"bradley_terry: anchor {anchor!r} is not among the models")
    free = [m for m in models if m != anchor]
    column = {m: c for c, m in enumerate(free)}
    pairs: dict[tuple[str, str], int] = {}
    pair_of = np.array([pairs.setdefault((a, b), len(pairs)) for a, b in zip(model_i, model_j)], dtype=np.intp)
    x = np.zeros((len(pairs), len(free)))
    for (a, b), p in pairs.items():
        if a in column:
            x[p, column[a]] += 1
        if b in column:
            x[p, column[b]] -= 1
    ids, n = cluster_ids(clusters)
    score = np.asarray(score_i, dtype=float)
    # Per question and ordered pair: comparisons and points won, so a resample is one matrix product.
    games = np.zeros((n, len(pairs)))
    points = np.zeros((n, len(pairs)))
    np.add.at(games, (ids, pair_of), 1.0)
    np.add.at(points, (ids, pair_of), score)

    def fit(g, p, start=None):  # per ordered pair: the share of points won, weighted by games played
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(g > 0, p / np.where(g > 0, g, 1.0), 0.5)
        return fit_soft_logistic(list(x.T), share, g, start=start)

    to_elo = ELO_SCALE / math.log(ELO_BASE)
    beta = fit(games.sum(0), points.sum(0))
    counts = resample_counts(n, resamples, seed)
    samples = fit(counts @ games, counts @ points, beta)
    played = {m: 0 for m in models}
    for a, b in zip(model_i, model_j):
        played[a] += 1
        played[b] += 1
    ratings = [Rating(anchor, Estimate(ELO_ANCHOR, ELO_ANCHOR, ELO_ANCHOR, played[anchor]), played[anchor])]
    for m, c in column.items():
        low, high = _interval(ELO_ANCHOR + to_elo * samples[:, c])
        ratings.append(Rating(m, Estimate(float(ELO_ANCHOR + to_elo * beta[c]), low, high, played[m]), played[m]))
    return sorted(ratings, key=lambda r: -r.rating.value)


def connected(model_i, model_j) -> bool:
    """Whether every model is linked to every other by comparisons (otherwise their ratings are not comparable)."""
    links: dict[str, set] = {}
    for a, b in zip(model_i, model_j):
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    if not links:
        return True
    seen, todo = set(), [next(iter(links))]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(links[m] - seen)
    return len(seen) == len(links)
