"""Maintenance windows and freezes, including daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import load_plugin

m = load_plugin("plugins/filter/maintenance.py")
PARIS = ZoneInfo("Europe/Paris")

DATA = {
    "timezone": "Europe/Paris",
    "windows": [
        {"name": "app-tuesday", "groups": ["app"], "cron": "30 2 * * 2", "duration": "2h"},
        {
            "name": "all-sunday",
            "groups": ["all"],
            "rrule": "FREQ=WEEKLY;BYDAY=SU;BYHOUR=22;BYMINUTE=0",
            "duration": 90,
        },
    ],
    "freezes": [
        {
            "name": "year-end",
            "start": "2026-12-20",
            "end": "2027-01-03",
            "reason": "year-end trading",
        },
    ],
}


def at(*args, tz=PARIS):
    return datetime(*args, tzinfo=tz)


def test_inside_and_outside_a_cron_window():
    inside = m.status(DATA, ["app"], at(2026, 11, 24, 3, 0))  # a Tuesday, 03:00 Paris
    assert inside["open"] and inside["may_start"]
    assert inside["open_windows"][0]["name"] == "app-tuesday"
    outside = m.status(DATA, ["app"], at(2026, 11, 24, 4, 31))
    assert not outside["open"]
    assert outside["next_open"] == "2026-11-29T22:00:00+01:00"  # the Sunday window


def test_windows_apply_by_group():
    assert not m.status(DATA, ["backup_server"], at(2026, 11, 24, 3, 0))["open"]
    assert m.status(DATA, ["backup_server"], at(2026, 11, 29, 22, 30))["open"]


def test_a_freeze_blocks_even_inside_a_window():
    result = m.status(DATA, ["app"], at(2026, 12, 22, 3, 0))  # a Tuesday in the freeze
    assert result["open"] and result["frozen"] and not result["may_start"]
    assert result["freeze"]["reason"] == "year-end trading"
    # The freeze's end date is inclusive: the whole of 3 January.
    assert m.status(DATA, ["app"], at(2027, 1, 3, 23, 59))["frozen"]
    assert not m.status(DATA, ["app"], at(2027, 1, 4, 0, 0))["frozen"]


def test_spring_forward_start_in_the_skipped_hour_still_opens():
    # 29 March 2026: Paris skips 02:00-03:00. Daily window at 02:30 for an hour.
    data = {
        "timezone": "Europe/Paris",
        "windows": [{"name": "w", "cron": "30 2 * * *", "duration": "1h"}],
    }
    opened = m.status(data, ["all"], at(2026, 3, 29, 3, 45))
    assert opened["open"]
    assert opened["open_windows"][0]["opened"] == "2026-03-29T02:30:00+01:00"  # = 03:30 CEST
    assert not m.status(data, ["all"], at(2026, 3, 29, 4, 31))["open"]


def test_fall_back_start_in_the_repeated_hour_opens_once_for_its_duration():
    # 25 October 2026: Paris repeats 02:00-03:00. Window at 02:30 for 45 minutes.
    data = {
        "timezone": "Europe/Paris",
        "windows": [{"name": "w", "cron": "30 2 * * *", "duration": "45m"}],
    }
    first = datetime(2026, 10, 25, 0, 40, tzinfo=UTC)  # 02:40 CEST, first pass
    second = datetime(2026, 10, 25, 1, 40, tzinfo=UTC)  # 02:40 CET, second pass
    assert m.status(data, ["all"], first)["open"]
    assert not m.status(data, ["all"], second)["open"]


def test_next_open_across_a_dst_change_keeps_wall_clock_time():
    data = {
        "timezone": "America/New_York",
        "windows": [{"name": "w", "cron": "0 1 * * *", "duration": "1h"}],
    }
    result = m.status(data, ["all"], datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    assert result["next_open"] == "2026-11-02T01:00:00-05:00"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"windows": [{"name": "w", "cron": "61 * * * *", "duration": "1h"}]}, "bad cron"),
        ({"windows": [{"name": "w", "rrule": "FREQ=SOMETIMES", "duration": "1h"}]}, "bad RRULE"),
        ({"windows": [{"name": "w", "cron": "0 2 * * *", "duration": "soon"}]}, "duration"),
        (
            {
                "windows": [
                    {"name": "w", "cron": "0 2 * * *", "duration": "1h", "timezone": "Mars/Olympus"}
                ]
            },
            "unknown timezone",
        ),
        (
            {
                "windows": [
                    {"name": "w", "cron": "0 2 * * *", "duration": "1h"},
                    {"name": "w", "cron": "0 3 * * *", "duration": "1h"},
                ]
            },
            "duplicate",
        ),
        ({"freezes": [{"start": "2026-12-20", "end": "2026-12-01", "reason": "x"}]}, "ends before"),
        ({"freezes": [{"start": "2026-12-20", "end": "2026-12-21"}]}, "needs reason"),
        (
            {"windows": [{"name": "w", "cron": "0 2 30 2 *", "duration": "1h"}]},
            r"windows\[0\] \(w\): cron expression '0 2 30 2 \*' can never fire",
        ),
        (
            {"windows": [{"name": "w", "rrule": "FREQ=DAILY;INTERVAL=0", "duration": "1h"}]},
            "INTERVAL must be",
        ),
        (
            {"windows": [{"name": "w", "rrule": "FREQ=DAILY;COUNT=0", "duration": "1h"}]},
            "can never fire",
        ),
        ({"windows": [{"name": ["w"], "cron": "0 2 * * *", "duration": "1h"}]}, "name must be"),
        ({"windows": {"name": "w"}}, "windows must be a list"),
        (
            {"freezes": [{"start": "2026-13-01", "end": "2027-01-01", "reason": "x"}]},
            r"not a date .*\(month must be in 1..12\)",
        ),
    ],
)
def test_bad_data_names_the_entry_and_the_problem(data, message):
    with pytest.raises(m.MaintenanceError, match=message):
        m.status(data, ["all"], datetime.now(UTC))


def test_every_bad_entry_is_reported_and_the_good_ones_kept():
    data = {
        "windows": [
            {"name": "broken", "cron": "0 2 30 2 *", "duration": "1h"},
            {"name": "good", "cron": "0 2 * * *", "duration": "1h"},
            {"name": "good", "cron": "0 3 * * *", "duration": "1h"},
        ],
        "freezes": [{"start": "2026-12-20", "end": "2026-12-01", "reason": "x"}],
    }
    windows, freezes, problems = m.parse_entries(data)
    assert [w.name for w in windows] == ["good"]
    assert freezes == []
    assert [str(p).split(":")[0] for p in problems] == [
        "windows[0] (broken)",
        "windows[2] (good)",
        "freezes[0] (None)",
    ]


def test_the_filter_raises_ansible_filter_errors():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="techops_maintenance_status"):
        m.techops_maintenance_status({"windows": [{"name": "w"}]}, ["all"])
    result = m.techops_maintenance_status(DATA, ["app"], "2026-11-24T03:00:00+01:00")
    assert result["may_start"]
