"""`techops incident`: list, show, ack, note, resolve; every refusal one line, non-zero,
nothing written."""

from __future__ import annotations

import json

import pytest

from runner.cli import main
from runner.core.identity import real_user
from runner.monitoring.incidents import ACKED, CLOSED, NOTED, load_incidents
from tests.ledgers import add_run
from tests.unit.monitoring.seed import at, fire, resolve

START = "2026-11-02T10:00:00Z"


@pytest.fixture
def incident(ledger) -> str:
    return fire(ledger, "a1b2c3d4e5f60718", START)


def run(capsys, ledger_url, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--ledger", ledger_url])
    out, err = capsys.readouterr()
    return code, out, err


def count(ledger) -> int:
    return sum(1 for _ in ledger.entries())


def test_ack_note_and_resolve_are_recorded_with_who(
    ledger, ledger_url, incident, capsys, monkeypatch
):
    add_run(ledger, "20261102T101500Z-abc123", {"app1": "changed"}, playbook="base.yml")
    with at(monkeypatch, "2026-11-02T10:04:00.000000+00:00"):
        code, out, _ = run(capsys, ledger_url, "incident", "ack", incident[:14], "--note", "on it")
    assert code == 0
    assert out.startswith(f"incident {incident} acknowledged by user:")
    with at(monkeypatch, "2026-11-02T10:20:00.000000+00:00"):
        code, out, _ = run(
            capsys, ledger_url, "incident", "note", incident, "restarted node_exporter"
        )
    assert code == 0
    with at(monkeypatch, "2026-11-02T10:30:00.000000+00:00"):
        code, out, _ = run(
            capsys,
            ledger_url,
            "incident",
            "resolve",
            incident,
            "--run",
            "20261102T1015",
            "--note",
            "base role reapplied",
        )
    assert code == 0
    assert "fixed by 20261102T101500Z-abc123" in out

    found = load_incidents(ledger)[incident]
    assert [e.kind for e in found.entries[1:]] == [ACKED, NOTED, CLOSED]
    assert found.acked.body["who"] == real_user()
    assert found.runs == ["20261102T101500Z-abc123"]
    assert found.time_to_ack == 240
    assert found.time_to_resolve == 1800
    assert found.status == "resolved"

    code, out, _ = run(capsys, ledger_url, "incident", "show", incident)
    assert code == 0
    assert "acknowledged 2026-11-02 10:04:00 UTC by user:" in out
    assert "(after 4 min 00 s)" in out
    assert "fixed by     20261102T101500Z-abc123" in out
    assert "restarted node_exporter" in out
    code, out, _ = run(capsys, ledger_url, "incident", "show", incident, "--json")
    shown = json.loads(out)
    assert (shown["time_to_ack_s"], shown["time_to_resolve_s"]) == (240, 1800)
    assert [n["text"] for n in shown["notes"]] == [
        "on it",
        "restarted node_exporter",
        "base role reapplied",
    ]


def test_list_and_open(ledger, ledger_url, incident, capsys):
    other = fire(ledger, "ffff000011112222", "2026-11-03T08:00:00Z", alertname="DiskFull")
    resolve(ledger, "ffff000011112222", "2026-11-03T08:00:00Z", "2026-11-03T08:20:00Z")
    code, out, _ = run(capsys, ledger_url, "incident", "list")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [incident, other]
    assert "open" in lines[0] and "HostDown" in lines[0] and "app1" in lines[0]
    assert "resolved" in lines[1] and "DiskFull" in lines[1]
    code, out, _ = run(capsys, ledger_url, "incident", "list", "--open", "--json")
    assert [i["id"] for i in json.loads(out)] == [incident]


def _refused(capsys, ledger, ledger_url, *argv: str) -> str:
    before = count(ledger)
    code, out, err = run(capsys, ledger_url, "incident", *argv)
    assert code != 0
    assert out == ""
    assert err.startswith("techops: error: ") and err.count("\n") == 1
    assert count(ledger) == before
    return err


def test_refusals_write_nothing(ledger, ledger_url, incident, capsys):
    assert "no incident 'inc-nosuch'" in _refused(capsys, ledger, ledger_url, "ack", "inc-nosuch")
    assert "no run 'nosuchrun'" in _refused(
        capsys, ledger, ledger_url, "resolve", incident, "--run", "nosuchrun"
    )
    assert run(capsys, ledger_url, "incident", "ack", incident)[0] == 0
    assert "already acknowledged by user:" in _refused(capsys, ledger, ledger_url, "ack", incident)
    assert run(capsys, ledger_url, "incident", "resolve", incident)[0] == 0
    assert "already resolved by user:" in _refused(capsys, ledger, ledger_url, "resolve", incident)
    assert "a note needs some text" in _refused(capsys, ledger, ledger_url, "note", incident, " ")
    # A note is still welcome after the end.
    assert run(capsys, ledger_url, "incident", "note", incident, "post-mortem: CHG-12")[0] == 0


def test_an_incident_alertmanager_resolved_cannot_be_acked_but_can_be_closed(
    ledger, ledger_url, incident, capsys, monkeypatch
):
    resolve(ledger, "a1b2c3d4e5f60718", START, "2026-11-02T10:10:00Z")
    err = _refused(capsys, ledger, ledger_url, "ack", incident)
    assert "already resolved (by Alertmanager)" in err
    add_run(ledger, "20261102T100500Z-fix001", {"app1": "changed"})
    with at(monkeypatch, "2026-11-02T10:15:00.000000+00:00"):
        code, _, _ = run(
            capsys, ledger_url, "incident", "resolve", incident, "--run", "20261102T100500Z-fix001"
        )
    assert code == 0
    found = load_incidents(ledger)[incident]
    # Both facts are kept; it was resolved at the earlier.
    assert found.resolutions[0][1] == "Alertmanager"
    assert len(found.resolutions) == 2
    assert found.time_to_resolve == 600
    assert found.runs == ["20261102T100500Z-fix001"]


def test_secrets_in_notes_are_redacted(ledger, ledger_url, incident, capsys, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "sup3r-s3cret-value")
    text = "rotated sup3r-s3cret-value and postgresql://app:hunter22@db1/app"
    assert run(capsys, ledger_url, "incident", "note", incident, text)[0] == 0
    note = load_incidents(ledger)[incident].notes[0].body["note"]
    assert "sup3r-s3cret-value" not in note and "hunter22" not in note


def test_an_ambiguous_prefix_is_refused(ledger, ledger_url, incident, capsys):
    fire(ledger, "ffff000011112222", START)
    assert "is ambiguous" in _refused(capsys, ledger, ledger_url, "ack", "inc-2026")
