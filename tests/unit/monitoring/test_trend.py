"""The trend behind every forecast: a least-squares line, and how far to trust it."""

from __future__ import annotations

import math

import pytest

from runner.monitoring.trend import DAY, bandwidth, fit, percentile, t975


def line(n: int, slope_per_day: float, noise: float = 0.0, step: float = 3600.0):
    return [
        (i * step, 100 + slope_per_day * i * step / DAY + (noise if i % 2 else -noise))
        for i in range(n)
    ]


def test_an_exact_line_is_found_exactly_and_trusted():
    found = fit(line(50, 2.0))
    assert found is not None
    assert found.per_day == pytest.approx(2.0)
    assert found.r2 == pytest.approx(1.0)
    assert found.slope_se == 0
    assert found.rising and not found.falling
    assert found.interval_per_day() == pytest.approx((2.0, 2.0))


def test_a_constant_series_has_nothing_to_explain_and_no_trend():
    found = fit([(i * 60.0, 7.0) for i in range(30)])
    assert found is not None
    assert found.r2 is None and found.per_day == 0
    assert not found.rising and not found.falling


def test_fewer_than_three_points_or_one_time_give_no_line():
    assert fit([(0.0, 1.0), (1.0, 2.0)]) is None
    assert fit([(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]) is None


def test_a_slope_within_the_noise_is_no_trend():
    found = fit(line(40, 0.01, noise=5.0))
    assert found is not None and not found.rising and not found.falling
    low, high = found.interval_per_day()
    assert low < 0 < high


def wave(n: int, slope_per_day: float, amplitude: float, period: int) -> list[tuple[float, float]]:
    """A trend under a smooth cycle of `period` samples, as a machine's use swings."""
    return [
        (i * 300.0, slope_per_day * i * 300 / DAY + amplitude * math.sin(2 * math.pi * i / period))
        for i in range(n)
    ]


def test_correlated_residuals_widen_the_interval():
    """Residuals that follow each other (a smooth swing) carry less information than as
    many independent ones of the same size: the interval is wider than ordinary least
    squares would make it, and there are fewer effective points than samples."""
    smooth = fit(wave(288, 1.0, 3.0, 48))
    alternating = fit(line(288, 1.0, noise=3.0, step=300))
    assert smooth is not None and alternating is not None
    assert smooth.lags == bandwidth(288) >= 4
    assert smooth.effective_points < 288 / 4
    assert alternating.effective_points == 288
    width = smooth.interval_per_day()[1] - smooth.interval_per_day()[0]
    assert width > 2 * (alternating.interval_per_day()[1] - alternating.interval_per_day()[0])


def test_a_plain_trend_under_a_daily_cycle_is_still_seen():
    """A week at five-minute steps of a host rising 3 points a day under a 20-point daily
    swing: the swing must not hide the rise."""
    week = fit(wave(7 * 288, 3.0, 20.0, 288))
    assert week is not None and week.rising
    assert 2.0 < week.per_day < 4.0  # a swing that ends mid-rise tilts the line a little


def test_student_t_is_conservative_between_rows():
    assert t975(1) == pytest.approx(12.706)
    assert t975(11) == t975(10)  # the wider of the two neighbours
    assert t975(10_000) == pytest.approx(1.96)
    values = [t975(df) for df in (1, 2, 5, 10, 30, 120, 2000)]
    assert values == sorted(values, reverse=True)


def test_percentile_is_a_measured_value():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 95) == 95.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert not math.isnan(percentile(values, 100))
