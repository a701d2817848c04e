"""The trend of a measured series, and how far it can be trusted.

Ordinary least squares over the period gives a slope; what matters for a forecast is
whether the data support it. Two things are measured for that:

- R², the share of the series' variation the straight line explains: a filesystem that
  fills steadily has one near 1; one that swings with the day's logs has a low one, and a
  line through it says little about when it fills.
- the slope's 95% confidence interval. Samples of a machine's use are not independent
  (a busy hour is followed by another), and ordinary least squares takes them to be, which
  makes its interval too narrow. The standard error is Newey and West's instead, which
  counts the residuals' covariance up to a few lags apart (Bartlett weights, bandwidth
  floor(4 (n/100)^(2/9)), their usual rule); the interval uses Student's t on the
  effective number of points this leaves (n times the ratio of the two variances). A
  trend is stated only when that interval excludes zero.

The lags counted are few: residuals correlated over longer spans (a daily cycle sampled
every few minutes) still make the interval somewhat too narrow, which is why a forecast
also needs a high R².
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DAY = 86_400.0
# Student's t, two-sided 95% (the 0.975 quantile), by degrees of freedom; between two rows
# the smaller number of degrees (the wider interval) is used.
_T975 = (
    (1, 12.706),
    (2, 4.303),
    (3, 3.182),
    (4, 2.776),
    (5, 2.571),
    (6, 2.447),
    (7, 2.365),
    (8, 2.306),
    (9, 2.262),
    (10, 2.228),
    (12, 2.179),
    (15, 2.131),
    (20, 2.086),
    (25, 2.060),
    (30, 2.042),
    (40, 2.021),
    (60, 2.000),
    (120, 1.980),
)
_T975_LIMIT = 1.960
# A fit whose residuals are this small a share of the variation is exact: rounding, not
# data, would set their autocorrelation.
_EXACT = 1e-12


def t975(degrees: float) -> float:
    """The 0.975 quantile of Student's t for this many degrees of freedom (at least 1)."""
    found = _T975[0][1]
    for df, value in _T975:
        if degrees >= df:
            found = value
    return found if degrees < 1000 else _T975_LIMIT


@dataclass(frozen=True)
class Fit:
    """A least-squares line through (time, value) samples: value = mean + slope (t - t_mean),
    with what it takes to judge it."""

    points: int
    t_mean: float
    y_mean: float
    slope: float  # value units per second
    r2: float | None  # None for a constant series: there is no variation to explain
    slope_se: float  # Newey-West's standard error of the slope
    lags: int  # how many lags apart residuals' covariance was counted
    effective_points: float

    def at(self, t: float) -> float:
        return self.y_mean + self.slope * (t - self.t_mean)

    @property
    def per_day(self) -> float:
        return self.slope * DAY

    def interval_per_day(self) -> tuple[float, float]:
        """The slope's 95% confidence interval, per day."""
        half = t975(self.effective_points - 2) * self.slope_se
        return ((self.slope - half) * DAY, (self.slope + half) * DAY)

    @property
    def rising(self) -> bool:
        return self.interval_per_day()[0] > 0

    @property
    def falling(self) -> bool:
        return self.interval_per_day()[1] < 0


def bandwidth(n: int) -> int:
    """Newey and West's rule for how many lags to count."""
    return math.floor(4 * (n / 100) ** (2 / 9))


def fit(samples: Sequence[tuple[float, float]]) -> Fit | None:
    """The least-squares line through the samples; None under three points or when they
    share one time, where no line or no spread of it exists."""
    n = len(samples)
    if n < 3:
        return None
    t_mean = math.fsum(t for t, _ in samples) / n
    y_mean = math.fsum(y for _, y in samples) / n
    x = [t - t_mean for t, _ in samples]
    sxx = math.fsum(v * v for v in x)
    if sxx == 0:
        return None
    sxy = math.fsum(xi * (y - y_mean) for xi, (_, y) in zip(x, samples, strict=True))
    syy = math.fsum((y - y_mean) ** 2 for _, y in samples)
    slope = sxy / sxx
    residuals = [y - (y_mean + slope * xi) for xi, (_, y) in zip(x, samples, strict=True)]
    sse = math.fsum(e * e for e in residuals)
    r2 = None if syy == 0 else max(0.0, 1 - sse / syy)
    lags = bandwidth(n)
    if syy == 0 or sse <= _EXACT * syy:
        return Fit(n, t_mean, y_mean, slope, r2, 0.0, lags, float(n))
    # Newey-West: the variance of sum(x e), its autocovariances weighted down with the lag.
    scores = [xi * e for xi, e in zip(x, residuals, strict=True)]
    meat = math.fsum(s * s for s in scores)
    for lag in range(1, lags + 1):
        weight = 1 - lag / (lags + 1)
        meat += 2 * weight * math.fsum(a * b for a, b in zip(scores[lag:], scores, strict=False))
    variance = max(meat, 0.0) / sxx**2
    ordinary = sse / (n - 2) / sxx
    se = math.sqrt(max(variance, ordinary * 1e-12))
    effective = min(float(n), n * ordinary / variance) if variance > 0 else float(n)
    return Fit(n, t_mean, y_mean, slope, r2, se, lags, max(effective, 3.0))


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (0 < q <= 100): a value that was measured, never one
    interpolated between two."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
