"""The 95 % intervals of `alexnet compare` against independent references: the score test inverted
numerically, Student's t density integrated numerically, and Newcombe's (1998) published example."""

import math

import pytest

from alexnet.evaluation.intervals import Z95, difference_estimate, error_estimate, t95, wilson


def _score_bound(p_hat: float, n: int, upper: bool) -> float:
    """The p0 where the score statistic |p̂ − p0| / √(p0(1 − p0)/n) equals z, by bisection."""
    lo, hi = (p_hat, 1.0) if upper else (0.0, p_hat)
    for _ in range(200):
        mid = (lo + hi) / 2
        stat = abs(p_hat - mid) / math.sqrt(mid * (1 - mid) / n) if 0 < mid < 1 else math.inf
        if (stat < Z95) == upper:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize("wrong,n", [(10, 250), (0, 250), (100, 250), (20_000, 50_000), (3, 9)])
def test_wilson_inverts_the_score_test(wrong, n):
    lo, hi = wilson(wrong / n, n)
    assert lo == pytest.approx(_score_bound(wrong / n, n, upper=False), abs=1e-9)
    assert hi == pytest.approx(_score_bound(wrong / n, n, upper=True), abs=1e-9)


def _t_cdf(x: float, df: int, steps: int = 20000) -> float:
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    f = lambda t: c * (1 + t * t / df) ** (-(df + 1) / 2)  # noqa: E731
    h = x / steps  # Simpson from 0 to x
    s = f(0) + f(x) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
    return 0.5 + s * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 30, 31, 60])
def test_t_quantile_against_the_integrated_density(df):
    assert _t_cdf(t95(df), df) == pytest.approx(0.975, abs=2e-5)


def test_newcombe_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 − 48/80, method 10.
    d = difference_estimate([56 / 70], [48 / 80], 70, 80)
    assert (round(d.lo, 4), round(d.hi, 4)) == (0.0524, 0.3339) and d.resolved


def test_seeds_widen_the_interval_by_their_spread():
    errors = [0.04, 0.06, 0.08]  # three seeds on 250 images
    e = error_estimate(errors, 250)
    s = 0.02  # sample std of 4, 6, 8 %
    h = 4.302652729911275 * s / math.sqrt(3)  # t(2) · s / √k
    lo_b, hi_b = wilson(0.06, 250)
    assert e.value == pytest.approx(0.06) and e.spread == pytest.approx(s) and e.seeds == 3
    assert e.lo == pytest.approx(0.06 - math.hypot(0.06 - lo_b, h))
    assert e.hi == pytest.approx(0.06 + math.hypot(hi_b - 0.06, h))
    one = error_estimate([0.06], 250)  # one seed: binomial only
    assert (one.lo, one.hi) == pytest.approx(wilson(0.06, 250)) and one.spread is None


def test_differences_the_demo_can_and_cannot_resolve():
    # 250 validation images at ~4 % error: a 1.4-point difference (the paper's LRN claim) is noise,
    # a 20-point one (overfitting without augmentation) is not.
    assert not difference_estimate([0.054], [0.04], 250, 250).resolved
    assert difference_estimate([0.24], [0.04], 250, 250).resolved
    # ImageNet's 50,000 images at ~40 %: 1.4 points resolves, 0.4 (overlapping pooling) does not.
    assert difference_estimate([0.414], [0.40], 50_000, 50_000).resolved
    assert not difference_estimate([0.404], [0.40], 50_000, 50_000).resolved


def test_difference_with_seeds_adds_their_spread_by_hand():
    a, b = [0.05, 0.07, 0.06], [0.04, 0.05, 0.06]  # three seeds each, 250 images
    la, ua = wilson(0.06, 250)
    lb, ub = wilson(0.05, 250)
    h = 4.302652729911275 * math.sqrt(0.01**2 / 3 + 0.01**2 / 3)  # t(2) · √(s_a²/3 + s_b²/3)
    d = difference_estimate(a, b, 250, 250)
    assert d.value == pytest.approx(0.01)
    assert d.lo == pytest.approx(0.01 - math.sqrt((0.06 - la) ** 2 + (ub - 0.05) ** 2 + h * h))
    assert d.hi == pytest.approx(0.01 + math.sqrt((ua - 0.06) ** 2 + (0.05 - lb) ** 2 + h * h))
    one = difference_estimate([0.06], [0.05], 250, 250)  # one seed each: binomial only, narrower
    assert one.hi - one.lo < d.hi - d.lo and one.spread is None
