"""95 % intervals for error rates and their differences, as ``alexnet compare`` prints them.

An error rate measured on ``n`` validation images is a binomial proportion: its interval is
Wilson's score interval. The difference of two runs' errors (an ablation minus the baseline) gets
Newcombe's interval built from the two Wilson intervals (Newcombe 1998, method 10). Both runs are
scored on the *same* images, so the difference's true spread is smaller than this unpaired interval
when the runs err on the same images: the interval is conservative.

With several seeds per configuration, the error is the mean over seeds, and the run-to-run spread
(sample standard deviation s over k seeds) adds a term t₀.₉₇₅(k−1)·s/√k in quadrature (for a
difference, t with min(k_a, k_b) − 1 degrees of freedom and √(s_a²/k_a + s_b²/k_b)). With one seed
the run-to-run spread is unknown and left out — say so beside the number.

A difference is *resolved* when its interval excludes 0. Intervals are clipped to what an error
(0..1) or a difference of errors (−1..1) can be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
"""The standard normal's 97.5 % quantile."""

_T95 = (
    12.7062047,
    4.30265273,
    3.18244631,
    2.77644511,
    2.57058184,
    2.44691185,
    2.36462425,
    2.30600414,
    2.26215716,
    2.22813885,
    2.20098516,
    2.17881283,
    2.16036866,
    2.14478669,
    2.13144955,
    2.11990530,
    2.10981558,
    2.10092204,
    2.09302405,
    2.08596345,
    2.07961384,
    2.07387307,
    2.06865761,
    2.06389856,
    2.05953855,
    2.05552944,
    2.05183052,
    2.04840714,
    2.04522964,
    2.04227246,
)


def t95(df: int) -> float:
    """Student's t 97.5 % quantile with ``df`` degrees of freedom (table to 30, then Cornish-Fisher)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T95):
        return _T95[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``p`` observed on ``n`` trials."""
    if n <= 0:
        raise ValueError(f"need at least one image, got n = {n}")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _spread(values: Sequence[float]) -> float:
    k = len(values)
    mean = sum(values) / k
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))


@dataclass(frozen=True)
class Estimate:
    """A value (an error, or a difference of errors) and its 95 % interval."""

    value: float
    lo: float
    hi: float
    seeds: int
    """Runs (seeds) averaged; with 1 the run-to-run spread is not in the interval."""
    spread: float | None = None
    """Sample standard deviation over seeds (None with one seed)."""

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (meaningful for differences)."""
        return self.lo > 0 or self.hi < 0


def error_estimate(errors: Sequence[float], n: int) -> Estimate:
    """Mean of ``errors`` (one per seed, each on the same ``n`` images) with its 95 % interval."""
    k = len(errors)
    p = sum(errors) / k
    lo, hi = wilson(p, n)
    if k < 2:
        return Estimate(p, lo, hi, k)
    s = _spread(errors)
    h = t95(k - 1) * s / math.sqrt(k)
    return Estimate(p, max(0.0, p - math.hypot(p - lo, h)), min(1.0, p + math.hypot(hi - p, h)), k, s)


def difference_estimate(a: Sequence[float], b: Sequence[float], n_a: int, n_b: int) -> Estimate:
    """mean(a) − mean(b) with Newcombe's interval, widened by the seeds' spread when both have ≥ 2."""
    pa, pb = sum(a) / len(a), sum(b) / len(b)
    la, ua = wilson(pa, n_a)
    lb, ub = wilson(pb, n_b)
    d = pa - pb
    h, spread = 0.0, None
    if len(a) >= 2 and len(b) >= 2:
        sa, sb = _spread(a), _spread(b)
        spread = math.sqrt(sa * sa / len(a) + sb * sb / len(b))
        h = t95(min(len(a), len(b)) - 1) * spread
    lo = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2 + h * h)
    hi = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2 + h * h)
    return Estimate(d, max(-1.0, lo), min(1.0, hi), min(len(a), len(b)), spread)


def smallest_resolvable(p: float, n: int) -> float:
    """The smallest difference from an error ``p`` that one seed on ``n`` images resolves: the
    half-width of Newcombe's interval for two runs both near ``p`` (the claims of ``docs/ablations.md``)."""
    lo, hi = wilson(p, n)
    return math.hypot(p - lo, hi - p)
