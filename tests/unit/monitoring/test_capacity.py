"""The capacity report from a fake Prometheus whose every series has a known answer: the
fill dates within their tolerance, the statuses that say why no date is given, the fleet
summary's order, and the shapes of JSON, CSV and HTML."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from runner.monitoring import capacity
from runner.monitoring.prometheus import Prometheus, Series

from .fake_prometheus import (
    END,
    STAIR,
    STAIR_EVERY,
    START,
    STEP,
    FakePrometheus,
    fleet,
    serving,
    staircase,
)

# A fill date is right when it is within this share of the days to full; a filesystem
# filled in steps, as the lab test fills one, may also be off by one step's interval.
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePrometheus]:
    with serving(fleet()) as running:
        yield running


@pytest.fixture
def settings() -> capacity.Settings:
    return capacity.Settings(START, END, STEP)


def report(fake: FakePrometheus, settings: capacity.Settings, fmt: str = "json") -> str:
    return capacity.capacity_report(Prometheus(fake.url, timeout=10), settings, fmt, now=END)


@pytest.fixture(scope="module")
def data(fake: FakePrometheus) -> dict[str, Any]:
    return json.loads(report(fake, capacity.Settings(START, END, STEP)))


def host(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in data["hosts"] if h["host"] == name)


def fs(data: dict[str, Any], name: str, mountpoint: str) -> dict[str, Any]:
    return next(f for f in host(data, name)["filesystems"] if f["mountpoint"] == mountpoint)


# ---------------------------------------------------------------------- forecasts


def test_a_steady_growth_is_dated_within_the_tolerance(data):
    """`/` of app1 grows 2 GB a day, with noise, and has 36 GB left: 18 days."""
    forecast = fs(data, "app1", "/")["forecast"]
    assert forecast["status"] == "forecast"
    assert forecast["full_in_days"] == pytest.approx(18.0, rel=TOLERANCE)
    assert (
        forecast["full_in_earliest_days"]
        <= forecast["full_in_days"]
        <= forecast["full_in_latest_days"]
    )
    assert forecast["fill_date"].startswith("2026-12-21")
    assert fs(data, "app1", "/")["growth"]["r2"] > 0.99


def test_a_filesystem_filled_in_steps_is_dated_within_a_step_of_its_fill(data):
    """The lab test's shape: a 4 GiB tmpfs, 64 MiB written every six hours. It is full at
    the step that uses its last byte, which the forecast must find within one step's
    interval and the tolerance."""
    size, used_now = 4 * 2**30, staircase(END.timestamp())
    steps_left = math.ceil((size - used_now) / STAIR)
    last_step = START.timestamp() + STAIR_EVERY * math.floor(
        (END.timestamp() - START.timestamp()) / STAIR_EVERY
    )
    true_days = (last_step + steps_left * STAIR_EVERY - END.timestamp()) / 86400
    forecast = fs(data, "app1", "/srv/lab-fill")["forecast"]
    assert forecast["status"] == "forecast"
    allowed = STAIR_EVERY / 86400 + TOLERANCE * true_days
    assert abs(forecast["full_in_days"] - true_days) <= allowed
    assert fs(data, "app1", "/srv/lab-fill")["fstype"] == "tmpfs"  # kept: tmpfs holds data


def test_a_flat_or_shrinking_filesystem_is_not_growing(data):
    flat = fs(data, "db1", "/")["forecast"]
    shrinking = fs(data, "db1", "/var/lib/postgresql")["forecast"]
    for forecast in (flat, shrinking):
        assert forecast["status"] == "not growing"
        assert forecast["full_in_days"] is None and forecast["fill_date"] is None
    assert "shrank by" in shrinking["reason"]
    assert fs(data, "db1", "/var/lib/postgresql")["growth"]["slope_bytes_per_day"] < 0


def test_too_few_points_say_so(data):
    new = host(data, "10.0.0.4:9100")
    forecast = fs(data, "10.0.0.4:9100", "/")["forecast"]
    assert forecast["status"] == "too few points"
    assert forecast["reason"] == "6 point(s), fewer than the 20 a forecast needs"
    assert forecast["full_in_days"] is None
    assert new["cpu"]["trend"]["status"] == "too few points"


def test_a_growth_within_the_noise_is_no_trend(data):
    forecast = fs(data, "db1", "/scratch")["forecast"]
    assert forecast["status"] == "no trend"
    assert forecast["full_in_days"] is None


def test_a_date_far_beyond_the_period_is_not_given(data):
    forecast = fs(data, "db1", "/data")["forecast"]
    assert forecast["status"] == "beyond horizon"
    assert forecast["full_in_days"] is None
    assert "more than 28 days" in forecast["reason"]


def test_a_full_filesystem_is_full_now(data):
    forecast = fs(data, "db1", "/full")["forecast"]
    assert forecast["status"] == "full" and forecast["full_in_days"] == 0


def test_a_low_r2_stops_a_forecast_the_noise_would_allow(fake):
    """The same staircase, asked for an R² no line through it reaches."""
    strict = replace(capacity.Settings(START, END, STEP), min_r2=0.99999)
    forecast = fs(json.loads(report(fake, strict)), "app1", "/srv/lab-fill")["forecast"]
    assert forecast["status"] == "no trend"
    assert "R²" in forecast["reason"]


# ---------------------------------------------------------------------- what is measured


def test_hosts_are_named_by_nodename_else_instance(data):
    assert [h["host"] for h in data["hosts"]] == ["10.0.0.4:9100", "app1", "db1", "idle1"]
    assert host(data, "app1")["instance"] == "10.0.0.1:9100"
    assert host(data, "10.0.0.4:9100")["nodename"] is None


def test_two_instances_of_one_name_are_told_apart():
    uname = [Series({"instance": i, "nodename": "web"}, [(1.0, 1.0)]) for i in ("a:9100", "b:9100")]
    named = capacity._names(uname, ["a:9100", "b:9100"])
    assert named["a:9100"][0] == "web (a:9100)" and named["b:9100"][0] == "web (b:9100)"


def test_pseudo_filesystems_are_left_out_and_a_bind_mount_counted_once(data):
    mounts = [f["mountpoint"] for f in host(data, "app1")["filesystems"]]
    assert mounts == ["/", "/srv/lab-fill"]
    assert fs(data, "app1", "/")["also_mounted_at"] == ["/srv/www"]


def test_the_mount_exclusion_is_an_option(fake):
    """A tmpfs mounted under /run for a test is kept when the exclusion is emptied."""
    everything = replace(
        capacity.Settings(START, END, STEP), fs_exclude_mounts=capacity.pattern("", "x")
    )
    mounts = [
        f["mountpoint"] for f in host(json.loads(report(fake, everything)), "app1")["filesystems"]
    ]
    assert "/run" in mounts
    assert "/sys/fs/cgroup" not in mounts  # still left out by its type


def test_loopback_is_left_out_of_the_network(data):
    network = host(data, "app1")["network"]
    assert network["devices"] == ["eth0"]
    assert network["receive"]["p95_bytes_per_second"] < 3e6  # not lo's 9 GB/s


def test_cpu_and_memory_are_percent_with_their_trend(data):
    db1 = host(data, "db1")
    assert db1["cpu"]["trend"]["status"] == "rising"
    assert db1["cpu"]["trend"]["slope_percent_per_day"] == pytest.approx(3.0, rel=0.1)
    assert db1["memory"]["mean_percent"] == pytest.approx(70.0)
    assert db1["cores"] == 8 and db1["memory_total_bytes"] == 32 * 2**30
    assert host(data, "app1")["cpu"]["trend"]["status"] == "no trend"  # a daily swing only


# ---------------------------------------------------------------------- the fleet summary


def test_the_summary_ranks_what_to_add_or_reclaim_first(data):
    needs = [(n["rank"], n["host"], n["resource"], n.get("mountpoint")) for n in data["needs"]]
    assert needs == [
        (1, "db1", "filesystem", "/full"),
        (2, "app1", "filesystem", "/srv/lab-fill"),
        (3, "app1", "filesystem", "/"),
        (4, "db1", "cpu", None),
    ]
    assert "rising" in data["needs"][3]["why"]
    assert [s["host"] for s in data["spare"]] == ["idle1"]


def test_thresholds_are_options(fake):
    lenient = replace(
        capacity.Settings(START, END, STEP),
        thresholds=capacity.Thresholds(fill_within_days=10, cpu_high_percent=95),
    )
    data = json.loads(report(fake, lenient))
    needs = [(n["resource"], n.get("mountpoint")) for n in data["needs"]]
    assert needs == [("filesystem", "/full"), ("filesystem", "/srv/lab-fill"), ("cpu", None)]
    # db1's CPU is under 95% but its trend gets there within the 10 days.
    assert data["needs"][2]["why"].startswith("CPU trend reaches 95% in 4.")
    assert data["thresholds"]["cpu_high_percent"] == 95


# ---------------------------------------------------------------------- formats


def numbers(value: Any, key: str = "") -> Iterator[str]:
    """The key of every number in a JSON document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v, key)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield key


def test_every_number_of_the_json_has_its_unit(data):
    suffixes = tuple(k for k in capacity.UNITS if k.startswith("_"))
    keys = set(numbers({k: v for k, v in data.items() if k != "units"}))
    assert keys
    without = sorted(k for k in keys if not k.endswith(suffixes) and k not in capacity.UNITS)
    assert without == []


def test_the_json_says_its_period_and_method(data):
    assert data["period"] == {
        "start": "2026-11-26T12:00:00+00:00",
        "end": "2026-12-03T12:00:00+00:00",
        "length_days": 7.0,
        "step_seconds": 3600,
        "rate_window_seconds": 3600,
    }
    assert data["method"]["min_points"] == 20 and data["method"]["min_r2"] == 0.5
    assert data["report"] == "capacity" and data["warnings"] == []


def test_the_csv_has_one_row_per_host_and_filesystem(fake, settings):
    rows = list(csv.DictReader(io.StringIO(report(fake, settings, "csv"))))
    assert list(rows[0]) == list(capacity.CSV_COLUMNS)
    kinds = [(r["kind"], r["host"], r["mountpoint"]) for r in rows]
    assert kinds[:4] == [
        ("host", "10.0.0.4:9100", ""),
        ("filesystem", "10.0.0.4:9100", "/"),
        ("host", "app1", ""),
        ("filesystem", "app1", "/"),
    ]
    assert len(rows) == 4 + 1 + 2 + 5 + 1
    root = next(r for r in rows if r["host"] == "app1" and r["mountpoint"] == "/")
    assert root["forecast"] == "forecast" and float(root["full_in_days"]) > 0
    assert root["cpu_p95_percent"] == ""  # a host's column, empty on a filesystem's row


def test_the_html_has_one_inline_svg_per_chart_and_loads_nothing(fake, settings, data):
    page = report(fake, settings, "html")
    charts = 2 * len(data["hosts"]) + sum(len(h["filesystems"]) for h in data["hosts"])
    assert page.count("<svg") == charts == len(re.findall(r"<figure>", page))
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"\b(src|href)\s*=", page, re.I)  # nothing to load at all
    assert "<script" not in page and ' style="' not in page and "<img" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # Each filesystem forecast is marked on its chart: the projection and the date.
    assert page.count('class="mark fill"') == 2
    assert "full 2026-12-11" in page and "full 2026-12-21" in page


def test_chart_geometry_stays_inside_the_view(fake, settings):
    page = report(fake, settings, "html")
    for d in re.findall(r'<path class="[^"]*" d="([^"]*)"', page):
        coords = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
        xs, ys = coords[0::2], coords[1::2]
        assert all(0 <= x <= 720 for x in xs) and all(0 <= y <= 210 for y in ys), d


def test_hostile_labels_are_escaped(settings):
    fake = FakePrometheus()
    evil = '<script>alert(1)</script>"'
    fake.add("cpu", {"instance": evil}, lambda t: 0.5)
    fake.add("uname", {"instance": evil, "nodename": "=cmd|'/C calc'!A0"}, lambda t: 1)
    with serving(fake) as running:
        page = report(running, settings, "html")
        table = report(running, settings, "csv")
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert ",'=cmd|" in table and ",=cmd|" not in table  # a spreadsheet would run it


def test_the_period_is_a_duration_or_dates_and_never_too_fine_for_prometheus():
    with pytest.raises(capacity.BadOptions, match="at most 11000"):
        capacity.period("90d", None, "5m", END)
    start, end, step = capacity.period("7d", "2026-12-02", "1h30m", END)
    assert end.isoformat() == "2026-12-02T23:59:59.999999+00:00"  # a bare date: its end
    assert step == 5400 and start.timestamp() % step == 0 and end - start >= timedelta(days=7)
    start, end, _ = capacity.period("2026-11-30", None, None, END)
    assert start.isoformat() == "2026-11-30T00:00:00+00:00" and end == END
    with pytest.raises(capacity.BadOptions, match="duration"):
        capacity.period("7d", None, "5 minutes", END)
