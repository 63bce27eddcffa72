"""Uncertainty for evaluation scores: bootstrap confidence intervals and paired comparisons of two systems."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.errors import MissingExtra

# Resample in blocks so memory stays bounded (about 8 MB of indices) however many cases there are.
_BLOCK_CELLS = 1_000_000


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    confidence: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """System B against system A on the same cases; positive ``mean_diff`` means B scores higher."""

    n: int
    wins: int
    ties: int
    losses: int
    mean_diff: Interval
    p_value: float
    wilcoxon_p: float
    method: str


def _as_array(values: Sequence[float] | npt.ArrayLike, name: str = "values") -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional sequence of numbers")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _resampled_means(values: npt.NDArray[np.float64], n_resamples: int, rng: np.random.Generator) -> Any:
    n = values.size
    block = max(1, _BLOCK_CELLS // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def bootstrap_ci(
    values: Sequence[float] | npt.ArrayLike, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap CI of the mean (Efron & Tibshirani 1993, ch. 13); the same seed gives the same CI."""
    array = _as_array(values)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    means = _resampled_means(array, n_resamples, np.random.default_rng(seed))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    mean = float(array.mean())
    # Guard against float noise putting a constant sample's mean a hair outside its own interval.
    return Interval(
        mean=mean, low=min(float(low), mean), high=max(float(high), mean), confidence=confidence, n=int(array.size)
    )


def _scipy_stats() -> Any:
    try:
        from scipy import stats
    except ImportError as e:
        raise MissingExtra("scipy", "eval") from e
    return stats


def _mean_diff(x: Any, y: Any, axis: int) -> Any:
    return np.mean(x - y, axis=axis)


def paired_compare(
    a: Sequence[float] | npt.ArrayLike,
    b: Sequence[float] | npt.ArrayLike,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare per-case scores of two systems on the same cases with a paired sign-flip permutation test.

    ``p_value`` is the two-sided Monte Carlo p-value of a paired permutation test of the mean difference
    (``scipy.stats.permutation_test``, ``permutation_type="samples"``: each case's pair of scores is swapped
    at random, i.e. the sign of its difference is flipped). It assumes nothing about the shape of the
    scores, so it suits bounded and discrete ones (EM, hit@k). ``wilcoxon_p`` is the Wilcoxon signed-rank
    test (``scipy.stats.wilcoxon``, zero differences dropped) as a second opinion; 1.0 when every pair
    ties. ``mean_diff`` is B - A with its percentile bootstrap CI. Wins, ties and losses count cases where
    B is higher, equal (within 1e-12) or lower.
    """
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired scores need the same number of cases, got {x.size} and {y.size}")
    stats = _scipy_stats()
    diff = y - x
    tie = np.isclose(diff, 0.0, rtol=0.0, atol=1e-12)
    wins, ties = int(np.sum(~tie & (diff > 0))), int(np.sum(tie))
    if ties == diff.size:
        p_value = wilcoxon_p = 1.0
    else:
        result = stats.permutation_test(
            (y, x),
            _mean_diff,
            permutation_type="samples",
            vectorized=True,
            n_resamples=n_resamples,
            batch=max(1, _BLOCK_CELLS // diff.size),
            alternative="two-sided",
            rng=np.random.default_rng(seed),
        )
        p_value = float(result.pvalue)
        nonzero = np.where(tie, 0.0, diff)
        wilcoxon_p = float(stats.wilcoxon(nonzero, zero_method="wilcox").pvalue)
        if math.isnan(wilcoxon_p):
            wilcoxon_p = 1.0
    return Comparison(
        n=int(diff.size),
        wins=wins,
        ties=ties,
        losses=int(diff.size) - wins - ties,
        mean_diff=bootstrap_ci(diff, n_resamples=n_resamples, confidence=confidence, seed=seed),
        p_value=p_value,
        wilcoxon_p=wilcoxon_p,
        method="paired sign-flip permutation test of the mean difference (two-sided, Monte Carlo)",
    )
