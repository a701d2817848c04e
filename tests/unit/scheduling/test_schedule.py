"""schedules.yml validation (file, line, what is wrong), the gate, and systemd calendars."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.scheduling import gate
from runner.scheduling.listing import describe, format_listing
from runner.scheduling.model import ScheduleError, load
from runner.scheduling.units import cron_to_oncalendar, render_units

PARIS = ZoneInfo("Europe/Paris")
GOOD = """\
timezone: Europe/Paris
windows:
  - name: app-weekly
    groups: [app]
    cron: "0 2 * * 2"
    duration: 3h
freezes:
  - name: year-end
    start: 2026-12-21
    end: 2027-01-02
    reason: year-end freeze
jobs:
  - name: patch
    playbook: playbooks/site.yml
    cron: "30 2 * * 2"
    window: app-weekly
    misfire_grace: 30m
  - name: report
    playbook: playbooks/site.yml
    cron: "0 6 * * *"
    changes_hosts: false
"""


def write(tmp_path, text):
    path = tmp_path / "schedules.yml"
    path.write_text(text)
    return path


def test_a_good_file_loads(tmp_path):
    schedules = load(write(tmp_path, GOOD))
    assert set(schedules.jobs) == {"patch", "report"}
    assert schedules.jobs["patch"].misfire_grace == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (('cron: "30 2 * * 2"', 'cron: "30 25 * * 2"'), 13, "bad cron expression"),
        (
            ("timezone: Europe/Paris\nwindows", "timezone: Europe/Parris\nwindows"),
            1,
            "unknown timezone 'Europe/Parris'",
        ),
        (
            (
                'playbook: playbooks/site.yml\n    cron: "0 6',
                'playbook: playbooks/nosuch.yml\n    cron: "0 6',
            ),
            18,
            "unknown playbook 'playbooks/nosuch.yml'",
        ),
        (("name: report", "name: patch"), 18, "duplicate job name 'patch' (first at line 13)"),
        (
            ('cron: "30 2 * * 2"', 'cron: "30 8 * * 2"'),
            13,
            "can never fire inside its window 'app-weekly'",
        ),
        (
            ("window: app-weekly\n    misfire", "window: weekend\n    misfire"),
            13,
            "unknown window 'weekend'",
        ),
        (("    changes_hosts: false\n", ""), 18, "must name the window"),
        (
            ("    misfire_grace: 30m\n", "    misfire_grace: 30m\n    retries: 3\n"),
            13,
            "unknown key(s) retries",
        ),
    ],
)
def test_bad_files_say_file_line_and_what_is_wrong(tmp_path, change, line, message):
    assert_load_error(tmp_path, change, line, message)


def assert_load_error(tmp_path, change, line, message) -> None:
    """GOOD with one change loads as an error naming the file, the line and the problem."""
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ScheduleError) as info:
        load(path)
    text = str(info.value)
    assert f"{path}:{line}: " in text, text
    assert message in text, text


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (
            ('cron: "30 2 * * 2"', 'cron: "0 2 30 2 *"'),
            13,
            "jobs[0] (patch): cron expression '0 2 30 2 *' can never fire",
        ),
        (
            ('cron: "0 2 * * 2"', 'cron: "0 2 30 2 *"'),
            3,
            "windows[0] (app-weekly): cron expression '0 2 30 2 *' can never fire",
        ),
        (
            ('cron: "0 6 * * *"', 'rrule: "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"'),
            18,
            "RRULE 'FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30' can never fire",
        ),
        (
            ('cron: "0 6 * * *"', 'rrule: "FREQ=DAILY;INTERVAL=0"'),
            18,
            "INTERVAL must be a whole number >= 1",
        ),
        (("start: 2026-12-21", "start: 2026-13-01"), 8, "'2026-13-01' is not a date"),
        (("jobs:", "notify: [a, b]\njobs:"), 12, "top level: notify must be a mapping"),
        (
            ("    misfire_grace: 30m\n", "    misfire_grace: 30m\n    notify: [a]\n"),
            18,
            "jobs[0] (patch): notify must be a mapping",
        ),
        (("  - name: app-weekly", "  - name: [app-weekly]"), 3, "a window's name must be"),
        (("window: app-weekly\n", "window: [app-weekly]\n"), 13, "window must be text"),
        (("misfire_grace: 30m", "misfire_grace: 99999999999999999999"), 13, "is too long"),
        (("misfire_grace: 30m", "misfire_grace: 30m\n    limit: [app]"), 13, "limit must be text"),
        (
            ("changes_hosts: false", "changes_hosts: false\n    enabled: 'no'"),
            18,
            "enabled must be",
        ),
        (("windows:\n", "windows: 5\nold_windows:\n"), 2, "windows must be a list"),
    ],
)
def test_malformed_values_are_errors_not_crashes(tmp_path, change, line, message):
    """Each once crashed `techops schedule validate` (exit 250, a traceback) or loaded."""
    assert_load_error(tmp_path, change, line, message)


def test_an_invalid_window_is_the_only_error_of_the_jobs_that_use_it(tmp_path):
    text = GOOD.replace("duration: 3h", "duration: soon")
    with pytest.raises(ScheduleError) as info:
        load(write(tmp_path, text))
    assert info.value.problems == [
        f"{tmp_path / 'schedules.yml'}:3: windows[0] (app-weekly): duration 'soon' is not like "
        "'4h', '90m', '1d 2h' or a number of minutes"
    ]


def test_every_invalid_window_is_reported_and_the_valid_ones_still_checked(tmp_path):
    text = GOOD.replace(
        "freezes:",
        '  - {name: broken, cron: "0 2 30 2 *", duration: 1h}\n'
        '  - {name: early, cron: "0 5 * * 2", duration: 1h}\nfreezes:',
    ).replace("window: app-weekly", "window: early")
    with pytest.raises(ScheduleError) as info:
        load(write(tmp_path, text))
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert ":7: windows[1] (broken): cron expression" in problems[0]
    assert ":15: jobs[0] (patch): it can never fire inside its window 'early'" in problems[1]


def test_invalid_yaml_gives_the_line(tmp_path):
    path = write(tmp_path, "jobs:\n  - name: x\n    cron: [unclosed\n")
    with pytest.raises(ScheduleError, match=r"schedules.yml:\d+: not valid YAML"):
        load(path)


# ------------------------------------------------------------------ the gate


@pytest.fixture
def schedules(tmp_path):
    return load(write(tmp_path, GOOD))


def test_inside_the_window_fires(schedules):
    now = datetime(2026, 11, 24, 2, 31, tzinfo=PARIS)
    decision = gate.decide(schedules, schedules.jobs["patch"], now, {"app"})
    assert decision.action == "fire"
    assert decision.scheduled_for == datetime(2026, 11, 24, 2, 30, tzinfo=PARIS)


def test_outside_the_window_is_refused_with_the_next_opening(schedules):
    now = datetime(2026, 11, 24, 2, 35, tzinfo=PARIS)
    job = schedules.jobs["patch"]
    late_window = gate.decide(
        schedules, job, now + timedelta(hours=3), {"app"}, scheduled_for=now + timedelta(hours=3)
    )
    assert late_window.action == "refuse"
    assert "outside window 'app-weekly'" in late_window.reason
    assert "2026-12-01T02:00:00+01:00" in late_window.reason


def test_a_freeze_refuses_and_an_override_with_a_reason_fires(schedules):
    now = datetime(2026, 12, 22, 2, 31, tzinfo=PARIS)
    job = schedules.jobs["patch"]
    refused = gate.decide(schedules, job, now, {"app"})
    assert refused.action == "refuse"
    assert "change freeze 'year-end'" in refused.reason
    forced = gate.decide(schedules, job, now, {"app"}, override_reason="CVE-2026-0001 hotfix")
    assert forced.action == "fire"
    assert "CVE-2026-0001" in forced.reason
    assert forced.as_record()["override_reason"] == "CVE-2026-0001 hotfix"


def test_a_missed_start_beyond_the_grace_is_skipped(schedules):
    job = schedules.jobs["patch"]
    due = datetime(2026, 11, 24, 2, 30, tzinfo=PARIS)
    assert (
        gate.decide(schedules, job, due + timedelta(minutes=29), {"app"}, scheduled_for=due).action
        == "fire"
    )
    late = gate.decide(schedules, job, due + timedelta(minutes=31), {"app"}, scheduled_for=due)
    assert late.action == "skip"
    assert "beyond the misfire grace of 30m" in late.reason


def test_a_job_never_overlaps_itself(schedules):
    now = datetime(2026, 11, 24, 2, 31, tzinfo=PARIS)
    decision = gate.decide(schedules, schedules.jobs["patch"], now, {"app"}, running="run-1")
    assert decision.action == "skip"
    assert "run-1" in decision.reason


def test_jobs_that_change_nothing_ignore_windows_and_freezes(schedules):
    now = datetime(2026, 12, 22, 6, 0, tzinfo=PARIS)
    assert gate.decide(schedules, schedules.jobs["report"], now, {"app"}).action == "fire"


def test_list_shows_local_and_utc_times_and_freezes(schedules):
    rows = describe(schedules, count=2, now=datetime(2026, 12, 14, 12, 0, tzinfo=UTC))
    patch = next(r for r in rows if r["job"] == "patch")
    assert patch["next"][0]["local"] == "2026-12-15T02:30:00+01:00"
    assert patch["next"][0]["utc"] == "2026-12-15T01:30:00+00:00"
    assert patch["next"][1]["frozen_by"] == ["year-end"]


def test_list_flags_a_freeze_only_where_the_gate_would_apply_it(tmp_path):
    text = (
        GOOD.replace(
            "    reason: year-end freeze\n", "    reason: year-end freeze\n    groups: [app]\n"
        )
        .replace("    misfire_grace: 30m\n", "    misfire_grace: 30m\n    limit: app\n")
        .replace('cron: "0 6 * * *"', 'cron: "30 3 * * *"\n    window: app-weekly')
        + """\
  - name: db-patch
    playbook: playbooks/site.yml
    cron: "45 2 * * 2"
    window: app-weekly
    limit: db
"""
    )
    schedules = load(write(tmp_path, text))
    rows = describe(schedules, count=8, now=datetime(2026, 12, 14, 12, 0, tzinfo=UTC))
    fires = {r["job"]: r["next"] for r in rows}
    frozen = {  # 22 December, inside year-end
        job: next(f for f in each if f["local"].startswith("2026-12-22"))
        for job, each in fires.items()
    }
    # The freeze covers app: the job limited to app is refused, for certain.
    assert frozen["patch"]["frozen_by"] == ["year-end"]
    # A job on db is refused only if some db host is also in app: the inventory says.
    assert frozen["db-patch"]["frozen_by"] == []
    assert frozen["db-patch"]["may_be_frozen_by"] == ["year-end"]
    # A job that changes no hosts: the gate applies neither freezes nor windows.
    assert frozen["report"]["frozen_by"] == frozen["report"]["may_be_frozen_by"] == []
    assert {f["in_window"] for f in fires["report"]} == {None}
    listing = format_listing(rows, schedules)
    assert "frozen by year-end if it touches hosts in their groups" in listing


# ------------------------------------------------------------------ systemd


def _systemd_next(calendar: str, count: int) -> list[datetime]:
    """The next elapses systemd computes for a calendar, from now, in UTC."""
    proc = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", calendar],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )
    found = []
    for line in proc.stdout.splitlines():
        if "elapse" in line or line.strip().startswith("Iter."):
            text = line.split(":", 1)[1].strip().split(" ", 1)[1].replace(" UTC", "")
            found.append(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC))
    return found


@pytest.mark.parametrize(
    "cron",
    ["30 2 * * 2", "0 3 * * 1-5", "*/15 * * * *", "0 0 1 * *", "15 4 * 1,7 0", "0 22 * * 6,0"],
)
def test_oncalendar_fires_when_croniter_says(tmp_path, cron):
    if subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode != 0:
        pytest.skip("systemd-analyze is not installed")
    calendar = cron_to_oncalendar(cron, "Europe/Paris")
    assert calendar is not None
    text = GOOD.replace('cron: "0 6 * * *"', f'cron: "{cron}"')
    job = load(write(tmp_path, text)).jobs["report"]
    now = datetime.now(UTC).replace(microsecond=0)
    systemd = _systemd_next(calendar, 3)
    ours = [f.astimezone(UTC) for f in job.next_fires(now, 3)]
    if systemd and ours and systemd[0] != ours[0] and ours[0] - now < timedelta(seconds=2):
        ours = [f.astimezone(UTC) for f in job.next_fires(now + timedelta(seconds=2), 3)]
    assert systemd == ours, calendar


def test_cron_with_both_day_fields_has_no_oncalendar_form_and_lists_dates(tmp_path):
    assert cron_to_oncalendar("0 2 1 * 1", "UTC") is None
    text = GOOD.replace('cron: "0 6 * * *"', 'rrule: "FREQ=MONTHLY;BYDAY=1SA;BYHOUR=4"')
    units = render_units(load(write(tmp_path, text)), "/opt/techops/.venv/bin/techops")
    timer = units["techops-job-report.timer"]
    assert timer.count("OnCalendar=") in (12, 13)
    assert "Re-run `techops schedule install --systemd`" in timer
    assert (
        "ExecStart=/opt/techops/.venv/bin/techops run --schedule report"
        in units["techops-job-report.service"]
    )


def test_a_due_time_never_fires_twice(schedules):
    now = datetime(2026, 11, 24, 2, 31, tzinfo=PARIS)
    decision = gate.decide(schedules, schedules.jobs["patch"], now, {"app"}, already_fired="run-7")
    assert decision.action == "skip"
    assert "never fires twice" in decision.reason and "run-7" in decision.reason
