"""Bootstrap intervals and paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from eval.stats import bootstrap_ci, paired_compare


def test_bootstrap_ci_contains_the_mean() -> None:
    values = np.random.default_rng(1).uniform(size=50)
    ci = bootstrap_ci(values)
    assert ci.low <= ci.mean <= ci.high
    assert ci.mean == pytest.approx(values.mean())
    assert ci.n == 50
    assert ci.confidence == 0.95


def test_bootstrap_ci_is_reproducible_with_a_seed() -> None:
    values = np.random.default_rng(2).uniform(size=40)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_ci_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(3)
    small = bootstrap_ci(rng.uniform(size=20))
    large = bootstrap_ci(rng.uniform(size=2000))
    assert large.high - large.low < (small.high - small.low) / 4


def test_bootstrap_ci_widens_with_confidence() -> None:
    values = np.random.default_rng(4).uniform(size=60)
    narrow, wide = bootstrap_ci(values, confidence=0.8), bootstrap_ci(values, confidence=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_bootstrap_ci_of_constant_scores_is_a_point() -> None:
    ci = bootstrap_ci([1.0] * 10)
    assert ci.low == ci.mean == ci.high == 1.0


def test_bootstrap_ci_rejects_empty_and_bad_arguments() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.5], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([0.5, float("nan")])


def test_paired_compare_detects_a_real_difference() -> None:
    a = np.random.default_rng(5).uniform(0.0, 0.8, size=100)
    result = paired_compare(a, a + 0.2, n_resamples=2000, seed=0)
    assert result.p_value < 0.01
    assert result.wilcoxon_p < 0.01
    assert (result.wins, result.ties, result.losses) == (100, 0, 0)
    assert result.mean_diff.mean == pytest.approx(0.2)
    assert result.mean_diff.low > 0


def test_paired_compare_finds_no_difference_in_a_shuffle_of_the_same_scores() -> None:
    rng = np.random.default_rng(6)
    a = rng.uniform(size=100)
    b = rng.permutation(a)
    result = paired_compare(a, b, n_resamples=2000, seed=0)
    assert result.p_value > 0.05
    assert result.mean_diff.low < 0 < result.mean_diff.high
    assert result.wins + result.ties + result.losses == 100


def test_paired_compare_on_binary_scores() -> None:
    # B fixes 30 of A's failures and breaks 5 of its successes: a real improvement on 0/1 scores.
    a = np.array([0.0] * 50 + [1.0] * 50)
    b = a.copy()
    b[:30] = 1.0
    b[50:55] = 0.0
    result = paired_compare(a, b, n_resamples=2000, seed=0)
    assert (result.wins, result.ties, result.losses) == (30, 65, 5)
    assert result.p_value < 0.01
    assert result.mean_diff.mean == pytest.approx(0.25)


def test_paired_compare_of_identical_scores_is_all_ties() -> None:
    result = paired_compare([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    assert result.ties == 3 and result.p_value == 1.0 and result.wilcoxon_p == 1.0
    assert result.mean_diff.mean == 0.0


def test_paired_compare_is_reproducible_with_a_seed() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.uniform(size=30), rng.uniform(size=30)
    assert paired_compare(a, b, n_resamples=500, seed=3) == paired_compare(a, b, n_resamples=500, seed=3)


def test_paired_compare_needs_equal_lengths() -> None:
    with pytest.raises(ValueError, match="same number"):
        paired_compare([0.1, 0.2], [0.1])
