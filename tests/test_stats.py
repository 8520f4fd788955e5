"""Passage-level bootstrap CIs and the paired sign-flip test."""

import math

import numpy as np
import pytest

from seal_repro.stats import accuracy_ci, paired_test


def test_all_correct_gives_a_degenerate_interval():
    ci = accuracy_ci([[1, 1], [1], [1, 1, 1]], "macro", resamples=500, seed=0)
    assert (ci.accuracy, ci.low, ci.high) == (1.0, 1.0, 1.0)
    assert (ci.n_questions, ci.n_passages, ci.n_ungraded) == (6, 3, 0)


def test_macro_and_micro_differ_on_unbalanced_passages():
    per_passage = [[1], [0] * 9]
    assert accuracy_ci(per_passage, "macro", 200, 0).accuracy == pytest.approx(0.5)
    assert accuracy_ci(per_passage, "micro", 200, 0).accuracy == pytest.approx(0.1)


def test_ungraded_are_excluded_and_empty_passages_dropped():
    ci = accuracy_ci([[1, None], [None, None], [0.0]], "macro", 200, 0)
    assert (ci.accuracy, ci.n_questions, ci.n_passages, ci.n_ungraded) == (0.5, 2, 2, 3)
    none = accuracy_ci([[None]], "micro", 200, 0)
    assert math.isnan(none.accuracy) and none.n_ungraded == 1 and none.n_passages == 0


def test_interval_matches_the_normal_approximation_for_independent_passages():
    per_passage = [[1]] * 50 + [[0]] * 50  # se = 0.05, so about [0.40, 0.60]
    ci = accuracy_ci(per_passage, "micro", resamples=4000, seed=1)
    assert ci.accuracy == 0.5
    assert ci.low == pytest.approx(0.40, abs=0.02) and ci.high == pytest.approx(0.60, abs=0.02)
    wider = accuracy_ci(per_passage, "micro", resamples=4000, seed=1, level=0.99)
    assert wider.low < ci.low and wider.high > ci.high


def test_cluster_bootstrap_is_wider_than_treating_questions_as_independent():
    # Whole passages right or wrong: 10 passages of 10 questions are worth ~10 observations, not 100.
    clustered = accuracy_ci([[1] * 10] * 5 + [[0] * 10] * 5, "micro", 2000, 0)
    independent = accuracy_ci([[1]] * 50 + [[0]] * 50, "micro", 2000, 0)
    assert clustered.high - clustered.low > 2 * (independent.high - independent.low)


def test_fixed_seed_is_deterministic():
    rng = np.random.default_rng(3)
    per_passage = [list(rng.integers(0, 2, size=rng.integers(1, 6))) for _ in range(30)]
    a = accuracy_ci(per_passage, "macro", 1000, seed=7)
    assert a == accuracy_ci(per_passage, "macro", 1000, seed=7)
    assert (a.low, a.high) != (accuracy_ci(per_passage, "macro", 1000, seed=8).low,
                               accuracy_ci(per_passage, "macro", 1000, seed=8).high)
    assert 0 <= a.low <= a.accuracy <= a.high <= 1


def test_unknown_aggregation_is_rejected():
    with pytest.raises(ValueError, match="macro"):
        accuracy_ci([[1]], "mean", 10, 0)


def test_identical_conditions_have_p_one():
    a = [0.2, 0.5, 1.0, 0.0] * 10
    t = paired_test(a, a, resamples=500, seed=0)
    assert (t.diff, t.low, t.high, t.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_exact_sign_flip_p_values():
    # 10 identical positive differences: only the all-plus and all-minus patterns are as extreme.
    t = paired_test([0.9] * 10, [0.4] * 10, resamples=100, seed=0)
    assert t.diff == pytest.approx(0.5) and t.p_value == pytest.approx(2 / 2**10)
    assert paired_test([1, 0], [0, 1], 100, 0).p_value == 1.0
    # The zero difference is ignored: 3 flips, 2 of 8 patterns as extreme.
    assert paired_test([1, 1, 1, 0.5], [0.5, 0.5, 0.5, 0.5], 100, 0).p_value == pytest.approx(2 / 8)


def test_large_consistent_difference_monte_carlo():
    a, b = [0.9] * 40, [0.1] * 40  # 40 nonzero differences: Monte-Carlo
    t = paired_test(a, b, resamples=999, seed=0)
    assert t.p_value == pytest.approx(1 / 1000)
    assert t.low == pytest.approx(0.8) and t.high == pytest.approx(0.8)


def test_monte_carlo_agrees_with_exact_enumeration():
    rng = np.random.default_rng(0)
    d = rng.normal(0.05, 0.2, size=17)
    observed = abs(d.sum())
    bits = (np.arange(2**17)[:, None] >> np.arange(17)) & 1
    exact = np.mean(np.abs((1 - 2 * bits) @ d) >= observed - 1e-12)
    t = paired_test(list(d), [0.0] * 17, resamples=20000, seed=1)
    assert t.p_value == pytest.approx(exact, abs=0.015)


def test_paired_test_drops_missing_pairs_and_checks_lengths():
    t = paired_test([1.0, None, 0.5, float("nan")], [0.0, 0.5, 0.5, 0.2], 200, 0)
    assert t.diff == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same passages"):
        paired_test([1.0], [1.0, 0.0], 10, 0)


def test_passages_for_power_matches_the_normal_approximation():
    # differences of SD 0.2 around 0.1: n = ((1.96 + 0.8416) * 0.2 / 0.1)^2 = 31.4 -> 32 passages
    d = [0.3, -0.1] * 10
    t = paired_test(d, [0.0] * 20, resamples=200, seed=0)
    assert t.n == 20 and abs(t.sd - 0.2052) < 1e-3
    assert t.passages_for_power() == math.ceil(((1.959964 + 0.841621) * t.sd / t.diff) ** 2) == 34
    assert paired_test([0.1] * 4, [0.1] * 4, resamples=10, seed=0).passages_for_power() == math.inf
