"""pass@k and the Wilson interval against direct computation."""
import math

import pytest

from qwen3mini.tasks.metrics import pass_at_k, wilson_interval


@pytest.mark.parametrize("n", [1, 5, 16, 64])
def test_pass_at_k_is_one_minus_the_chance_all_k_are_wrong(n):
    for correct in range(n + 1):
        for k in range(1, n + 1):
            direct = 1 - math.comb(n - correct, k) / math.comb(n, k)
            assert pass_at_k(n, correct, k) == pytest.approx(direct, abs=1e-12)
    assert pass_at_k(n, 0, 1) == 0.0 and pass_at_k(n, n, 1) == 1.0


def test_pass_at_1_is_the_mean():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_at_k_large_n_does_not_overflow():
    assert 0 < pass_at_k(2000, 3, 100) < 1


@pytest.mark.parametrize("successes, trials", [(0, 10), (3, 10), (10, 10), (37, 50), (1, 1)])
def test_wilson_endpoints_solve_the_score_equation(successes, trials):
    """The interval is {p : |p_hat - p| <= z sqrt(p (1 - p) / n)}: its endpoints make it an equality."""
    z, p_hat = 1.96, successes / trials
    low, high = wilson_interval(successes, trials)
    assert 0 <= low <= p_hat <= high <= 1
    for p in (low, high):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / trials, abs=1e-12)


def test_wilson_interval_holds_the_observed_rate_exactly():
    """In floating point the endpoints at 0 or all successes land a rounding error away from 0 and 1; the
    interval must still hold the observed rate (a plot's error bars below and above it are never negative)."""
    for trials in range(1, 201):
        for successes in range(trials + 1):
            low, high = wilson_interval(successes, trials)
            assert 0 <= low <= successes / trials <= high <= 1, (successes, trials)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError, match="wilson_interval"):
        wilson_interval(1, 0)
