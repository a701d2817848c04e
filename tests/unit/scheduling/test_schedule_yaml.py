"""schedules.yml read as its authors write it: YAML 1.1 booleans and dates, real text."""

from __future__ import annotations

import pytest

from runner.scheduling import notify
from runner.scheduling.model import ScheduleError, load
from tests.helpers import REPO

BASE = """\
timezone: UTC
windows:
  - {name: nightly, cron: "0 1 * * *", duration: 2h}
notify: {on: [failure, skip], webhook: "https://chat.example.com/hooks/techops"}
jobs:
  - name: nightly-job
    playbook: playbooks/site.yml
    cron: "30 1 * * *"
    window: nightly
  - name: own-events
    playbook: playbooks/site.yml
    cron: "45 1 * * *"
    window: nightly
    notify:
      on: [success]
"""


def write(tmp_path, text):
    path = tmp_path / "schedules.yml"
    path.write_text(text)
    return path


def events(schedules, job: str) -> list[str]:
    return notify.settings(schedules.data.get("notify"), schedules.jobs[job].notify)["on"]


def test_an_unquoted_on_key_is_the_event_list_not_the_boolean_true(tmp_path):
    schedules = load(write(tmp_path, BASE))
    assert events(schedules, "nightly-job") == ["failure", "skip"]
    assert events(schedules, "own-events") == ["success"]


def test_the_repository_schedules_use_their_configured_events():
    schedules = load(REPO / "schedules.yml")
    assert events(schedules, "backup-daily") == ["failure", "skip", "refuse", "override"]
    assert events(schedules, "patch-weekly") == ["failure", "skip", "refuse", "success"]


def test_the_readme_example_loads_with_its_events(tmp_path):
    # The example of README.md's "Schedules" section, as written there.
    text = """\
timezone: Europe/Paris            # default zone for every entry
windows:                          # when changes may start, per inventory group
  - {name: app-weekly, groups: [app], cron: "0 2 * * 2", duration: 3h}
  - {name: infra-weekly, groups: [bastion, backup_server], rrule: "FREQ=WEEKLY;BYDAY=WE;BYHOUR=3", duration: 2h}
freezes:                          # no job that changes hosts starts inside one (end date inclusive)
  - {name: year-end, start: 2026-12-21, end: 2027-01-02, reason: Year-end change freeze}
notify: {on: [failure, skip, refuse], webhook: "https://chat.example.com/hooks/techops"}
jobs:
  - name: patch-weekly
    playbook: playbooks/patch.yml
    inventory: inventories/production/hosts.yml
    cron: "15 2 * * 2"            # or rrule: "FREQ=…"; wall-clock time in the zone
    timezone: Europe/Paris
    window: app-weekly            # the window it must start in (jobs that change hosts)
    max_runtime: 2h               # cancelled and recorded as timed out past this
    misfire_grace: 30m            # run once if missed by less; otherwise skip and record
    limit: app                    # also: tags, skip_tags, extra_vars, changes_hosts, enabled, notify
"""  # noqa: E501 - kept as the README has it
    schedules = load(write(tmp_path, text))
    assert events(schedules, "patch-weekly") == ["failure", "skip", "refuse"]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "notify: {on: [failure, skip],",
            "notify: {on: [failure, skip], channel: ops,",
            4,
            "top level: notify has unknown key(s) channel (known: on, webhook, email)",
        ),
        (
            "      on: [success]\n",
            "      on: [success]\n      webhok: https://x.example.com\n",
            14,
            "jobs[1] (own-events): notify has unknown key(s) webhok",
        ),
        ("      on: [success]\n", "      true: [success]\n", 14, "unknown key(s) true"),
        (
            "notify: {on: [failure, skip],",
            "notify: {on: [failure, sometimes],",
            4,
            "notify.on has unknown event(s) ['sometimes']",
        ),
        ("      on: [success]\n", "      on: success\n", 14, "notify.on must be a list"),
    ],
)
def test_notify_keys_and_events_are_checked_with_their_line(tmp_path, old, new, line, message):
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ScheduleError) as info:
        load(path)
    assert f"{path}:{line}: " in str(info.value), info.value
    assert message in str(info.value)


def test_a_date_that_does_not_exist_is_reported_at_its_freeze(tmp_path):
    text = BASE.replace(
        "notify:",
        "freezes:\n  - {name: f, start: 2026-13-01, end: 2026-12-24, reason: x}\nnotify:",
        1,
    )
    path = write(tmp_path, text)
    with pytest.raises(ScheduleError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}:5: freezes[0] (f): '2026-13-01' is not a date (YYYY-MM-DD) or an ISO 8601 "
        "date-time (month must be in 1..12)"
    )


@pytest.mark.parametrize(
    ("groups", "listed"),
    [('"app, db"', "[app, db]"), ('"app:db"', "[app, db]"), ('"app db"', "[app, db]")],
)
def test_a_window_s_groups_as_one_string_of_several_names_is_refused(tmp_path, groups, listed):
    text = BASE.replace(
        '  - {name: nightly, cron: "0 1 * * *", duration: 2h}',
        f'  - {{name: nightly, groups: {groups}, cron: "0 1 * * *", duration: 2h}}',
    )
    with pytest.raises(ScheduleError) as raised:
        load(write(tmp_path, text))
    message = str(raised.value)
    assert "is not an inventory group name" in message
    assert f"groups: {listed}" in message
    assert "schedules.yml:3:" in message  # the window's line


def test_a_window_s_groups_as_one_group_name_is_that_group(tmp_path):
    text = BASE.replace(
        '  - {name: nightly, cron: "0 1 * * *", duration: 2h}',
        '  - {name: nightly, groups: app, cron: "0 1 * * *", duration: 2h}',
    )
    assert load(write(tmp_path, text)).windows[0].groups == ("app",)
