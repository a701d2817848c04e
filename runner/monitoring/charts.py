"""Line charts as plain geometry for inline SVG: measured series, their trend lines, the
thresholds, and a forecast's date with its range.

The page that shows them may load nothing and run nothing (its Content-Security-Policy
says so), so a chart is SVG written into the page by the template, styled by classes from
the page's own style block. Geometry is computed here, in Python, where it can be tested;
the template only writes it out, escaped. Long series are thinned to the smallest and
largest value per horizontal pixel pair, so a week at a fine step stays a small page and
a spike still shows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

WIDTH, HEIGHT = 720, 210
LEFT, RIGHT, TOP, BOTTOM = 82, 14, 12, 26
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
# Horizontal buckets a drawn series is thinned to (two points each, at most).
BUCKETS = PLOT_W // 2
HOUR = 3600
# Spacings of the time axis's ticks; the first that gives at most MAX_TICKS is used.
_TICK_SPACINGS = (HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 86400, 2 * 86400, 7 * 86400, 14 * 86400)
MAX_TICKS = 8


@dataclass(frozen=True)
class Line:
    """An SVG path (`d`) drawn with the page's class `css`, named in the legend."""

    css: str
    d: str
    label: str


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the plot: a threshold, or full."""

    y: float
    css: str
    label: str


@dataclass(frozen=True)
class Mark:
    """A vertical line at a moment: a forecast's date."""

    x: float
    css: str
    label: str


@dataclass(frozen=True)
class Band:
    """A span of time shaded across the plot: a forecast's 95% range."""

    x: float
    width: float
    css: str
    label: str


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass
class Chart:
    """One chart, ready for the template: every coordinate is in the viewBox
    0 0 WIDTH HEIGHT."""

    title: str
    lines: list[Line] = field(default_factory=list)
    trends: list[Line] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    empty: str | None = None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = PLOT_W
    plot_height: int = PLOT_H

    @property
    def legend(self) -> list[Line]:
        return self.lines + self.trends


@dataclass(frozen=True)
class Frame:
    """The time and value ranges a chart shows, and where they fall in its viewBox."""

    t0: float
    t1: float
    y0: float
    y1: float

    def x(self, t: float) -> float:
        span = self.t1 - self.t0 or 1.0
        return round(LEFT + (t - self.t0) / span * PLOT_W, 1)

    def y(self, v: float) -> float:
        span = self.y1 - self.y0 or 1.0
        clamped = min(max(v, self.y0), self.y1)
        return round(TOP + PLOT_H - (clamped - self.y0) / span * PLOT_H, 1)


def series_path(frame: Frame, samples: Sequence[tuple[float, float]], step: int) -> str:
    """The samples as one SVG path, broken where a gap longer than two steps means the
    host was not measured (a straight line across it would invent data), thinned per
    bucket to its smallest and largest value in the order they came."""
    if not samples:
        return ""
    gap = 2 * step + 1
    parts: list[str] = []
    segment: list[tuple[float, float]] = [samples[0]]
    for previous, sample in itertools.pairwise(samples):
        if sample[0] - previous[0] > gap:
            parts.append(_segment(frame, segment))
            segment = []
        segment.append(sample)
    parts.append(_segment(frame, segment))
    return " ".join(parts)


def _segment(frame: Frame, samples: list[tuple[float, float]]) -> str:
    kept: list[tuple[float, float]] = []
    bucket: list[tuple[float, float]] = []
    current = None
    width = (frame.t1 - frame.t0) / BUCKETS or 1.0
    for sample in samples:
        index = math.floor((sample[0] - frame.t0) / width)
        if index != current and bucket:
            kept.extend(_extremes(bucket))
            bucket = []
        current = index
        bucket.append(sample)
    kept.extend(_extremes(bucket))
    points = [f"{frame.x(t)} {frame.y(v)}" for t, v in kept]
    if len(points) == 1:  # a lone sample: a short tick, so it shows
        x, y = points[0].split()
        return f"M{x} {y} h1.5"
    return "M" + " L".join(points)


def _extremes(bucket: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(bucket) <= 2:
        return bucket
    low = min(bucket, key=lambda s: s[1])
    high = max(bucket, key=lambda s: s[1])
    return sorted({low, high})


def segment(frame: Frame, a: tuple[float, float], b: tuple[float, float]) -> str:
    """A straight line from a to b (time, value), cut where it leaves the value range: a
    projection stops at the top of the chart instead of running along it. Empty when
    no part of it is in range."""
    (ta, va), (tb, vb) = a, b
    if vb == va:
        if not frame.y0 <= va <= frame.y1:
            return ""
        lo, hi = 0.0, 1.0
    else:
        p0, p1 = (frame.y0 - va) / (vb - va), (frame.y1 - va) / (vb - va)
        lo, hi = max(0.0, min(p0, p1)), min(1.0, max(p0, p1))
        if lo > hi:
            return ""
    start = (ta + lo * (tb - ta), va + lo * (vb - va))
    end = (ta + hi * (tb - ta), va + hi * (vb - va))
    return f"M{frame.x(start[0])} {frame.y(start[1])} L{frame.x(end[0])} {frame.y(end[1])}"


def time_ticks(frame: Frame) -> list[Tick]:
    """Ticks on whole hours or days (UTC), as few as give at most MAX_TICKS."""
    span = frame.t1 - frame.t0
    spacing = next((s for s in _TICK_SPACINGS if span / s <= MAX_TICKS), _TICK_SPACINGS[-1])
    while span / spacing > MAX_TICKS:
        spacing *= 2
    first = math.ceil(frame.t0 / spacing) * spacing
    fmt = "%m-%d" if spacing >= 86400 else "%m-%d %H:%M"
    ticks = []
    t = first
    while t <= frame.t1:
        ticks.append(Tick(frame.x(t), datetime.fromtimestamp(t, UTC).strftime(fmt)))
        t += spacing
    return ticks


def value_ticks(frame: Frame, label: Callable[[float], str], count: int = 4) -> list[Tick]:
    values = [frame.y0 + (frame.y1 - frame.y0) * i / count for i in range(count + 1)]
    return [Tick(frame.y(v), label(v)) for v in values]


def nice_ceiling(value: float) -> float:
    """A round top for a value axis: 1, 2, 2.5 or 5 times a power of ten, at or above
    the value (1 when there is nothing to show)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power
