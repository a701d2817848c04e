"""Daylight saving: the systemd timers fire when `techops scheduler` does.

The scheduler runs a start whose local time a spring-forward skips at the offset from
before the change (02:30 is 03:30 new time) and a start in the repeated hour once. A
plain OnCalendar= skips the first, so the rendered timer adds UTC lines for them; these
tests ask `systemd-analyze calendar` itself when every line of a rendered timer elapses,
across both changes, and compare with the scheduler's own next fire times.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.core.errors import UserError
from runner.scheduling import model
from runner.scheduling.model import (
    RUNTIME_ALLOWANCE,
    START_ALLOWANCE,
    MaxIntervals,
    load,
    maintenance,
)
from runner.scheduling.units import dst_fires, render_units

PARIS = ZoneInfo("Europe/Paris")
SCHEDULES = """\
timezone: {tz}
jobs:
  - name: job
    playbook: playbooks/site.yml
    {recurrence}
    changes_hosts: false
"""


def job_file(tmp_path, tz: str, recurrence: str):
    path = tmp_path / "schedules.yml"
    path.write_text(SCHEDULES.format(tz=tz, recurrence=recurrence))
    return load(path, check_files=False)


def calendars(timer: str) -> list[str]:
    return [line.split("=", 1)[1] for line in timer.splitlines() if line.startswith("OnCalendar=")]


def _has_base_time() -> bool:
    if shutil.which("systemd-analyze") is None:
        return False
    probe = subprocess.run(
        ["systemd-analyze", "calendar", "--base-time=2026-01-01 00:00:00 UTC", "daily"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_systemd = pytest.mark.skipif(
    not _has_base_time(), reason="systemd-analyze (with --base-time, systemd >= 251) is missing"
)


def systemd_elapses(
    exprs: list[str], base: datetime, until: datetime, count: int
) -> list[datetime]:
    """Every instant in [base, until) at which a timer with these OnCalendar= lines
    elapses, by systemd's own calendar code: each line's next `count` elapses, merged."""
    proc = subprocess.run(
        [
            "systemd-analyze",
            "calendar",
            f"--iterations={count}",
            f"--base-time={base - timedelta(seconds=1):%Y-%m-%d %H:%M:%S} UTC",
            *exprs,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )
    found = set()
    for line in proc.stdout.splitlines():
        label, _, value = line.strip().partition(": ")
        if label == "Next elapse" or label.startswith("Iter."):
            if value == "never":
                continue
            moment = datetime.strptime(value.split(" ", 1)[1], "%Y-%m-%d %H:%M:%S UTC")
            found.add(moment.replace(tzinfo=UTC))
    return sorted(m for m in found if base <= m < until)


def scheduler_fires(job, base: datetime, until: datetime) -> list[datetime]:
    fires = []
    moment = base - timedelta(seconds=1)
    while (nxt := job.recurrence.next_after(moment)) is not None and nxt < until:
        fires.append(nxt.astimezone(UTC))
        moment = nxt
    return fires


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@needs_systemd
@pytest.mark.parametrize(
    ("tz", "cron", "base", "until"),
    [
        # Two springs forward (29 March 2026, 28 March 2027) and two falls back
        # (25 October 2026, 31 October 2027); weekly: three of each, to 2028.
        ("Europe/Paris", "30 2 * * *", utc(2026, 3, 1), utc(2027, 12, 31)),
        ("Europe/Paris", "0 2 * * 0", utc(2026, 3, 1), utc(2028, 12, 31)),
        ("Europe/Paris", "0 * * * *", utc(2026, 3, 28, 12), utc(2026, 3, 30)),
        ("Europe/Paris", "0 * * * *", utc(2026, 10, 24, 12), utc(2026, 10, 26)),
        ("Europe/Paris", "*/15 * * * *", utc(2026, 3, 28, 12), utc(2026, 3, 30)),
        ("Europe/Paris", "*/15 * * * *", utc(2026, 10, 24, 12), utc(2026, 10, 26)),
        ("Europe/Paris", "45 1,2,3 * * *", utc(2026, 3, 27), utc(2026, 11, 1)),
        # 8 March and 1 November 2026; 01:30 is the repeated time in New York.
        ("America/New_York", "30 2 * * *", utc(2026, 3, 1), utc(2026, 11, 30)),
        ("America/New_York", "30 1 * * *", utc(2026, 3, 1), utc(2026, 11, 30)),
    ],
)
def test_the_timer_elapses_exactly_when_the_scheduler_fires(tmp_path, tz, cron, base, until):
    job = job_file(tmp_path, tz, f'cron: "{cron}"').jobs["job"]
    timer = render_units(job_file(tmp_path, tz, f'cron: "{cron}"'), "/bin/techops", now=base)[
        "techops-job-job.timer"
    ]
    ours = scheduler_fires(job, base, until)
    theirs = systemd_elapses(calendars(timer), base, until, len(ours) + 10)
    assert theirs == ours, sorted(set(theirs) ^ set(ours))


@needs_systemd
def test_a_2_30_paris_job_fires_once_on_both_dst_nights(tmp_path):
    schedules = job_file(tmp_path, "Europe/Paris", 'cron: "30 2 * * *"')
    base, until = utc(2026, 3, 1), utc(2026, 12, 1)
    timer = render_units(schedules, "/bin/techops", now=base)["techops-job-job.timer"]
    elapses = systemd_elapses(calendars(timer), base, until, 400)
    # Spring forward: 02:30 does not exist; it runs at 03:30 CEST, 01:30 UTC.
    assert [e for e in elapses if e.date() == utc(2026, 3, 29).date()] == [utc(2026, 3, 29, 1, 30)]
    # Fall back: 02:30 happens twice; it runs once, at the first (CEST, 00:30 UTC).
    assert [e for e in elapses if e.date() == utc(2026, 10, 25).date()] == [
        utc(2026, 10, 25, 0, 30)
    ]
    assert "OnCalendar=2026-03-29 01:30:00 UTC" in timer


@needs_systemd
def test_an_rrule_timer_fires_as_the_scheduler_across_both_changes(tmp_path):
    schedules = job_file(
        tmp_path, "Europe/Paris", 'rrule: "FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0"'
    )
    base = utc(2026, 3, 1)
    until = base + timedelta(days=366)
    timer = render_units(schedules, "/bin/techops", now=base)["techops-job-job.timer"]
    ours = scheduler_fires(schedules.jobs["job"], base, until)
    theirs = systemd_elapses(calendars(timer), base, until, 2)
    assert theirs == ours
    assert utc(2026, 3, 29, 1, 30) in theirs
    assert [e for e in theirs if e.date() == utc(2026, 10, 25).date()] == [utc(2026, 10, 25, 0, 30)]


def test_extra_lines_are_the_skipped_starts_that_no_other_start_covers(tmp_path):
    base = utc(2026, 3, 1)

    def extra(tz: str, cron: str) -> list[str]:
        job = job_file(tmp_path, tz, f'cron: "{cron}"').jobs["job"]
        return [f.astimezone(UTC).isoformat() for f in dst_fires(job, base)]

    assert extra("Europe/Paris", "30 2 * * *") == [
        "2026-03-29T01:30:00+00:00",
        "2027-03-28T01:30:00+00:00",
        "2028-03-26T01:30:00+00:00",
    ]
    # 02:00 on a spring-forward night is 03:00 new time: a start of its own only if 03:00
    # is not one.
    assert extra("Europe/Paris", "0 2 * * *")[0] == "2026-03-29T01:00:00+00:00"
    assert extra("Europe/Paris", "0 2,3 * * *") == []
    assert extra("Europe/Paris", "*/15 * * * *") == []
    assert extra("UTC", "30 2 * * *") == []


def test_the_timer_says_until_when_its_dst_lines_were_computed(tmp_path):
    base = utc(2026, 12, 2)
    paris = render_units(job_file(tmp_path, "Europe/Paris", 'cron: "30 2 * * *"'), "t", now=base)
    timer = paris["techops-job-job.timer"]
    assert "The 3 UTC line(s) after the first" in timer
    assert "computed up to 2029-12-01: re-run `techops schedule install --systemd`" in timer
    assert calendars(timer) == [
        "*-*-* 2:30:00 Europe/Paris",
        "2027-03-28 01:30:00 UTC",
        "2028-03-26 01:30:00 UTC",
        "2029-03-25 01:30:00 UTC",
    ]
    plain = render_units(job_file(tmp_path, "UTC", 'cron: "30 2 * * *"'), "t", now=base)
    assert "Daylight saving" not in plain["techops-job-job.timer"]


def test_gaps_are_the_skipped_wall_clock_times():
    m = maintenance()
    assert m.gaps(PARIS, utc(2026, 1, 1), utc(2027, 1, 1)) == [
        (datetime(2026, 3, 29, 2, 0), datetime(2026, 3, 29, 3, 0))
    ]
    # Lord Howe Island moves its clocks by half an hour.
    assert m.gaps(ZoneInfo("Australia/Lord_Howe"), utc(2026, 1, 1), utc(2027, 1, 1)) == [
        (datetime(2026, 10, 4, 2, 0), datetime(2026, 10, 4, 2, 30))
    ]
    assert m.gaps(ZoneInfo("UTC"), utc(2026, 1, 1), utc(2027, 1, 1)) == []


# ---------------------------------------------------------------------- the longest gap


GAP_CASES = [
    # A day is 25 hours long on the night clocks go back, 23 on the night they go on.
    ("Europe/Paris", 'cron: "30 1 * * *"', timedelta(hours=25)),
    ("UTC", 'cron: "30 1 * * *"', timedelta(days=1)),
    # A 02:30 start the spring-forward skips fires at 03:30 new time.
    ("Europe/Paris", 'cron: "30 2 * * *"', timedelta(hours=25)),
    # The repeated hour's starts happen once: an hour and a half across it (beyond the
    # starts walked, as the size of the change back).
    ("Europe/Paris", 'cron: "*/30 * * * *"', timedelta(hours=1, minutes=30)),
    ("UTC", 'cron: "*/30 * * * *"', timedelta(minutes=30)),
    ("UTC", 'cron: "*/5 9-17 * * 1-5"', timedelta(hours=63, minutes=5)),
    # The 1st of every month at 03:00: 31 days after a 31-day month, DST aside.
    ("Europe/Paris", 'rrule: "FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=3;BYMINUTE=0"', None),
]


@pytest.mark.parametrize("tz,recurrence,gap", GAP_CASES)
def test_the_longest_gap_between_starts_is_elapsed_time(tmp_path, tz, recurrence, gap):
    (job,) = job_file(tmp_path, tz, recurrence).jobs.values()
    found = job.longest_gap(utc(2026, 1, 7))
    if gap is None:
        assert found in (timedelta(days=31), timedelta(days=31, hours=1))
    else:
        assert found == gap


@pytest.mark.parametrize("tz,recurrence,gap", GAP_CASES)
@pytest.mark.parametrize("base", [utc(2026, 3, 27, 12), utc(2026, 10, 23, 12)], ids=str)
def test_the_starts_ahead_are_the_schedulers_own(tmp_path, tz, recurrence, gap, base):
    (job,) = job_file(tmp_path, tz, recurrence).jobs.values()
    fires = [moment.astimezone(UTC) for moment in job.next_fires(base, 150)]
    ahead = job.starts_ahead(base)
    common = min(len(fires), len(ahead))
    assert common >= 13  # a year and a month of the monthly job, all 150 of the others
    assert ahead[:common] == fires[:common]


def test_the_max_interval_adds_the_grace_the_run_and_the_start(tmp_path):
    (job,) = job_file(tmp_path, "UTC", 'cron: "0 3 * * *"').jobs.values()
    base = utc(2026, 1, 7)
    expected = timedelta(days=1) + job.misfire_grace + RUNTIME_ALLOWANCE + START_ALLOWANCE
    assert job.max_interval(base) == expected
    job.max_runtime = timedelta(hours=2)
    assert job.max_interval(base) == expected - RUNTIME_ALLOWANCE + timedelta(hours=2)
    job.enabled = False
    assert job.max_interval(base) is None


def test_a_recurrence_that_starts_once_has_no_gap(tmp_path):
    (job,) = job_file(
        tmp_path, "UTC", 'rrule: "FREQ=YEARLY;COUNT=1;BYMONTH=6;BYMONTHDAY=1"'
    ).jobs.values()
    assert job.longest_gap(utc(1999, 1, 1)) is None
    assert job.max_interval(utc(1999, 1, 1)) is None


def test_max_intervals_are_worked_out_again_only_when_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "schedules.yml"
    path.write_text(SCHEDULES.format(tz="UTC", recurrence='cron: "0 3 * * *"'))
    intervals = MaxIntervals(path)
    loads = []
    monkeypatch.setattr(model, "load", lambda *a, **k: loads.append(1) or load(*a, **k))
    first = intervals()
    assert intervals() is first and len(loads) == 1
    path.write_text(SCHEDULES.format(tz="UTC", recurrence='cron: "0 3 * * 1"'))
    assert intervals()["job"] > first["job"] and len(loads) == 2
    path.write_text("jobs: [\n")
    with pytest.raises(UserError):
        intervals()
