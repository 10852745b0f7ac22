"""Scores over samples: the unbiased pass@k estimator and the Wilson score interval."""
import math


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Chance that at least one of k samples, drawn without replacement from n of which ``correct`` are
    right, is right: 1 - C(n - c, k) / C(n, k), as a product so large n does not overflow."""
    if not 0 <= correct <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= correct <= n and 1 <= k <= n, got n={n} correct={correct} k={k}")
    if n - correct < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - correct + 1, n + 1))


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% with the default z): unlike the normal approximation it stays inside
    [0, 1] and is sensible at 0 or ``trials`` successes, which small test sets hit often."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"wilson_interval: need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))   # (rounding at 0 or all successes)
