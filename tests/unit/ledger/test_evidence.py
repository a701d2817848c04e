"""Evidence is checked against its declaration when a run is recorded, and read through it
by reports: what does not fit is named, recorded anyway, and never read as something else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from runner.execution.request import RunRequest, RunResult
from runner.ledger import evidence
from runner.ledger.recorder import Recorder
from tests.ledgers import drill_evidence


def backup_evidence(**changes):
    """What roles/backup/tasks/evidence.yml publishes for a client with one archive."""
    return {
        "client": "app1",
        "server": "backup1",
        "repository": "ssh://borg@backup1:22/srv/borg/app1/repo",
        "ran_now": True,
        "archive": "app1-2026-11-21T01:00:00",
        "archive_time": "2026-11-21T01:00:00+00:00",
        "age_s": 812,
        "archives": 3,
        "files": 120,
        "bytes": 52340,
        "paths": ["/etc", "/srv"],
        "databases": [],
        "retention": {"daily": 7, "weekly": 4, "monthly": 6},
        **changes,
    }


def test_evidence_as_the_roles_publish_it_fits():
    assert evidence.check("backup", backup_evidence()) == []
    assert evidence.check("drill", drill_evidence()) == []
    no_archive = backup_evidence(archive=None, archive_time=None, age_s=None, files=None)
    assert evidence.check("backup", no_archive) == []


def test_every_departure_is_named():
    problems = evidence.check(
        "backup",
        {
            **backup_evidence(archives="3", ran_now=None, archive_time="2026-11-21 01:00"),
            "paths": ["/etc", 7],
            "retention": {"daily": True, "weekly": 4, "monthly": 6},
            "extra": 1,
        },
    )
    assert problems == [
        "ran_now: is null, expected true or false",
        "archive_time: expected a date-time with its UTC offset or null, got '2026-11-21 01:00'",
        "archives: expected an integer, got '3'",
        "paths[1]: expected text, got 7",
        "retention.daily: expected an integer, got True",
        "extra: not declared",
    ]
    del_client = backup_evidence()
    del del_client["client"]
    assert evidence.check("backup", del_client) == ["client: missing"]
    assert evidence.check("backup", ["not", "a", "mapping"]) == ["expected a mapping, got a list"]
    assert evidence.check("backup", None) == ["is null, expected a mapping"]


def test_a_patch_is_checked_against_the_shape_its_status_chooses():
    refused = {
        "check_mode": False,
        "status": "refused",
        "started": "2026-11-24T01:00:00.000000Z",
        "window": {
            "enforced": True,
            "open": False,
            "next_open": "2026-12-01T02:00:00+01:00",
            "frozen": False,
            "freeze": None,
        },
        "forced_reason": None,
    }
    assert evidence.check("patch", refused) == []
    assert evidence.check("patch", {**refused, "status": "done"}) == [
        "status: expected 'ok' or 'failed' or 'refused', got 'done'"
    ]
    assert "updates_applied: missing" in evidence.check("patch", {**refused, "status": "ok"})


def test_an_area_without_a_declaration_is_not_checked():
    assert evidence.check("fixture", {"anything": [1, {"x": None}]}) == []
    assert evidence.check_run({"app1": {"fixture": 3}}) == []


def test_check_run_names_host_and_area():
    problems = evidence.check_run(
        {
            "app2": {"backup": backup_evidence(archive_time=7)},
            "app1": "garbage",
            "standby1": {"drill": drill_evidence()},
        }
    )
    assert problems == [
        {"host": "app1", "area": "", "problem": "not a mapping of areas"},
        {
            "host": "app2",
            "area": "backup",
            "problem": "archive_time: expected a date-time with its UTC offset or null, got 7",
        },
    ]


def test_reading_leaves_out_what_does_not_fit_and_keeps_published_nulls():
    reading = evidence.read(
        "backup", backup_evidence(archive_time=None, archives="many", files=None, age_s=True)
    )
    assert reading.known("archive_time") and reading.get("archive_time") is None
    assert reading.known("files") and reading.get("files") is None
    assert not reading.known("archives") and reading.unreadable("archives")
    assert not reading.known("age_s")  # a boolean is no number of seconds
    assert not reading.unreadable("nothing-published")
    assert any(p.startswith("archives:") for p in reading.problems)


def test_reading_takes_text_forms_older_ansible_recorded_but_check_does_not():
    text_forms = drill_evidence(rto_s="412.3", passed="False", files_verified="119")
    reading = evidence.read("drill", text_forms)
    assert (reading.get("rto_s"), reading.get("passed"), reading.get("files_verified")) == (
        412.3,
        False,
        119,
    )
    assert reading.problems == ()
    assert len(evidence.check("drill", text_forms)) == 3
    # Text that spells nothing of the kind is not read as anything.
    assert not evidence.read("drill", drill_evidence(passed="maybe")).known("passed")
    assert not evidence.read("drill", drill_evidence(rto_s="nan")).known("rto_s")


def test_one_bad_element_makes_a_list_unknown_rather_than_shorter():
    reading = evidence.read("drill", drill_evidence(mismatches=[{"path": "/a"}, "garbage"]))
    assert not reading.known("mismatches")


def test_a_drill_start_in_utc_without_an_offset_is_read_as_utc():
    """dr_drill notes its start with now(utc=true).isoformat(), which gives no offset."""
    published = drill_evidence(started="2026-11-21T03:30:00.123456")
    assert evidence.check("drill", published) == []
    reading = evidence.read("drill", published)
    assert reading.get("started") == "2026-11-21T03:30:00.123456+00:00"
    assert evidence.check("drill", drill_evidence(started="early")) == [
        "started: expected a date-time in UTC or null, got 'early'"
    ]


def test_timestamps_need_their_offset():
    assert evidence.moment("2026-11-21T01:00:00+01:00") == datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    assert evidence.moment("2026-11-24T01:00:00.000000Z") is not None
    assert evidence.moment("2026-11-21T01:00:00") is None
    assert evidence.moment("yesterday") is None
    assert evidence.moment(1795000000) is None


# ---------------------------------------------------------------------- the recorder


def _set_stats(counter: int, host: str, areas: dict) -> dict:
    return {
        "event": "runner_on_ok",
        "counter": counter,
        "event_data": {
            "host": host,
            "task": "Publish the evidence",
            "resolved_action": "ansible.builtin.set_stats",
            "res": {
                "changed": False,
                "ansible_stats": {
                    "data": {"techops_evidence": areas},
                    "per_host": True,
                    "aggregate": True,
                },
            },
        },
    }


def _record(ledger, tmp_path: Path, events: list[dict]) -> dict:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    app1:\n    app2:\n")
    request = RunRequest(playbook=Path("playbooks/backup.yml"), inventory=str(inventory))
    recorder = Recorder(ledger)
    recorder.on_start(request)
    for event in events:
        recorder.on_event(event)
    now = datetime.now(UTC)
    recorder.on_finish(RunResult(request.run_id, "successful", 0, {}, None, now, now))
    return next(ledger.entries(kinds=["run.finished"])).body


def test_evidence_that_does_not_fit_is_recorded_with_its_problems_and_said_once(
    ledger, tmp_path, capsys
):
    bad = backup_evidence(archive_time="last night", archives=None)
    body = _record(
        ledger,
        tmp_path,
        [
            _set_stats(1, "app1", {"backup": bad}),
            _set_stats(2, "app2", {"backup": backup_evidence(client="app2")}),
        ],
    )
    assert body["evidence"]["app1"]["backup"] == bad  # kept as published
    assert body["evidence_problems"] == [
        {
            "host": "app1",
            "area": "backup",
            "problem": "archive_time: expected a date-time with its UTC offset or null, "
            "got 'last night'",
        },
        {"host": "app1", "area": "backup", "problem": "archives: is null, expected an integer"},
    ]
    assert ledger.verify().ok
    err = capsys.readouterr().err
    assert err.count("does not match its declaration") == 1
    assert "app1 backup: archive_time" in err and "app1 backup: archives" in err


def test_evidence_that_fits_adds_nothing(ledger, tmp_path, capsys):
    body = _record(ledger, tmp_path, [_set_stats(1, "app1", {"backup": backup_evidence()})])
    assert "evidence_problems" not in body
    assert "declaration" not in capsys.readouterr().err


def test_the_warning_lists_a_few_problems_and_says_where_the_rest_are():
    problems = [{"host": f"h{i}", "area": "base", "problem": "x: missing"} for i in range(25)]
    text = evidence.problems_warning("r1", problems)
    assert text.count("\n") == evidence.WARN_PROBLEMS + 1
    assert "and 15 more" in text and "techops report r1 --format json" in text
