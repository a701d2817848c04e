"""The incident report: MTTA and MTTR from known times, per alert, per host and over all,
in HTML, JSON and CSV; an incident never acknowledged or still open is named, never
counted as a time."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from runner.cli import main
from runner.core.identity import real_user
from runner.monitoring import incidents
from runner.monitoring.incident_report import incident_data, incident_report
from runner.monitoring.incidents import load_incidents
from tests.ledgers import add_run
from tests.unit.monitoring.seed import at, fire, resolve

NOW = datetime(2026, 11, 10, tzinfo=UTC)
SINCE = "2026-11-01T00:00:00.000000+00:00"


def _ack(ledger, incident_id, when, monkeypatch):
    with at(monkeypatch, when):
        found = load_incidents(ledger)[incident_id]
        incidents.acknowledge(ledger, found, real_user())


def _close(ledger, incident_id, when, monkeypatch, runs=()):
    with at(monkeypatch, when):
        found = load_incidents(ledger)[incident_id]
        incidents.close(ledger, found, real_user(), "fixed", runs)


@pytest.fixture
def seeded(ledger, monkeypatch) -> dict[str, str]:
    """Five incidents at known times; the first started before the period.

    | incident | alert    | host | acked after | resolved after          |
    | old      | HostDown | app1 | -           | -  (before the period)  |
    | one      | HostDown | app1 | 240 s       | 1800 s (Alertmanager; a person at 2100 s) |
    | two      | HostDown | app2 | 600 s       | 3600 s (a person)       |
    | three    | DiskFull | app1 | never       | 1200 s (Alertmanager)   |
    | four     | DiskFull | app2 | never       | open                    |
    """
    add_run(ledger, "20261102T102000Z-fix001", {"app1": "changed"})
    ids = {}
    ids["old"] = fire(ledger, "0000000000000001", "2026-10-01T00:00:00Z")
    ids["one"] = fire(ledger, "0000000000000002", "2026-11-02T10:00:00Z")
    _ack(ledger, ids["one"], "2026-11-02T10:04:00.000000+00:00", monkeypatch)
    resolve(ledger, "0000000000000002", "2026-11-02T10:00:00Z", "2026-11-02T10:30:00Z")
    _close(
        ledger,
        ids["one"],
        "2026-11-02T10:35:00.000000+00:00",
        monkeypatch,
        runs=["20261102T102000Z-fix001"],
    )
    ids["two"] = fire(ledger, "0000000000000003", "2026-11-03T08:00:00Z", instance="app2:9100")
    _ack(ledger, ids["two"], "2026-11-03T08:10:00.000000+00:00", monkeypatch)
    _close(ledger, ids["two"], "2026-11-03T09:00:00.000000+00:00", monkeypatch)
    ids["three"] = fire(
        ledger,
        "0000000000000004",
        "2026-11-04T00:00:00Z",
        alertname="DiskFull",
        runbook_url="https://runbooks.example.com/disk-full",
    )
    resolve(ledger, "0000000000000004", "2026-11-04T00:00:00Z", "2026-11-04T00:20:00Z")
    ids["four"] = fire(
        ledger,
        "0000000000000005",
        "2026-11-05T00:00:00Z",
        alertname="DiskFull",
        instance="app2:9100",
        runbook_url="javascript:alert(1)",
    )
    return ids


def test_mtta_and_mttr_per_alert_per_host_and_overall(ledger, seeded):
    data = incident_data(ledger, SINCE, now=NOW)
    assert [i["id"] for i in data["incidents"]] == [
        seeded["one"],
        seeded["two"],
        seeded["three"],
        seeded["four"],
    ]
    assert data["title"] == "Incidents since 2026-11-01 00:00 UTC until 2026-11-10 00:00 UTC"
    assert data["overall"] == {
        "incidents": 4,
        "acknowledged": 2,
        "not_acknowledged": 2,
        "mtta_s": 420.0,
        "mtta_median_s": 420.0,
        "resolved": 3,
        "open": 1,
        "mttr_s": 2200.0,
        "mttr_median_s": 1800.0,
    }
    by_alert = {g["name"]: g for g in data["by_alert"]}
    assert (by_alert["HostDown"]["mtta_s"], by_alert["HostDown"]["mttr_s"]) == (420.0, 2700.0)
    assert by_alert["DiskFull"]["mtta_s"] is None
    assert by_alert["DiskFull"]["not_acknowledged"] == 2
    assert (by_alert["DiskFull"]["mttr_s"], by_alert["DiskFull"]["open"]) == (1200.0, 1)
    by_host = {g["name"]: g for g in data["by_host"]}
    assert (by_host["app1"]["mtta_s"], by_host["app1"]["not_acknowledged"]) == (240.0, 1)
    assert by_host["app1"]["mttr_s"] == 1500.0
    assert (by_host["app2"]["mtta_s"], by_host["app2"]["mttr_s"]) == (600.0, 3600.0)
    assert by_host["app2"]["open"] == 1

    one, two, three, four = data["incidents"]
    assert (one["time_to_ack_s"], one["time_to_resolve_s"]) == (240, 1800)
    assert one["resolved_by"] == "Alertmanager"
    assert [r["by"][:5] for r in one["resolutions"]] == ["Alert", "user:"]
    assert one["runs"] == ["20261102T102000Z-fix001"]
    assert two["resolved_by"].startswith("user:")
    assert three["time_to_ack_s"] is None and three["acknowledged"] is None
    assert four["status"] == "open" and four["time_to_resolve_s"] is None


def test_until_limits_the_period(ledger, seeded):
    data = incident_data(ledger, SINCE, "2026-11-03T23:59:59.999999+00:00", now=NOW)
    assert [i["id"] for i in data["incidents"]] == [seeded["one"], seeded["two"]]
    assert data["overall"]["mttr_s"] == 2700.0


def test_json(ledger, seeded):
    data = json.loads(incident_report(ledger, SINCE, None, "json", now=NOW))
    assert data["overall"]["mtta_s"] == 420.0
    assert data["overall"]["mttr_s"] == 2200.0
    assert data["ledger"]["verified"] is True


def test_csv(ledger, seeded):
    rows = list(csv.DictReader(io.StringIO(incident_report(ledger, SINCE, None, "csv", now=NOW))))
    by_incident = {r["incident"]: r for r in rows if r["scope"] == "incident"}
    assert by_incident[seeded["one"]]["time_to_ack_s"] == "240.0"
    assert by_incident[seeded["one"]]["time_to_resolve_s"] == "1800.0"
    assert by_incident[seeded["one"]]["runs"] == "20261102T102000Z-fix001"
    assert by_incident[seeded["three"]]["time_to_ack_s"] == "not acknowledged"
    assert by_incident[seeded["four"]]["time_to_resolve_s"] == "not resolved"
    (overall,) = [r for r in rows if r["scope"] == "all"]
    assert (overall["mtta_s"], overall["not_acknowledged"]) == ("420.0", "2")
    assert (overall["mttr_s"], overall["mttr_median_s"], overall["open"]) == (
        "2200.0",
        "1800.0",
        "1",
    )
    disk = next(r for r in rows if r["scope"] == "alert" and r["name"] == "DiskFull")
    assert (disk["mtta_s"], disk["not_acknowledged"]) == ("none acknowledged", "2")
    hosts = {r["name"] for r in rows if r["scope"] == "host"}
    assert hosts == {"app1", "app2"}


def test_html(ledger, seeded):
    page = incident_report(ledger, SINCE, None, "html", now=NOW)
    assert "Content-Security-Policy" in page
    assert "7 min 00 s" in page  # the MTTA, 420 s
    assert "36 min 40 s" in page  # the MTTR, 2200 s
    assert "4 min 00 s" in page and "30 min 00 s" in page  # incident one
    assert "not acknowledged" in page and "<strong>open</strong>" in page
    assert '<a href="https://runbooks.example.com/disk-full">runbook</a>' in page
    assert 'href="javascript:' not in page  # shown as text, never a link
    assert "verified internally only" in page


def test_an_empty_period(ledger):
    data = incident_data(ledger, SINCE, now=NOW)
    assert data["overall"]["incidents"] == 0 and data["overall"]["mtta_s"] is None
    assert "No incident started in the period" in incident_report(ledger, SINCE, None, "html")


def test_the_report_command(ledger_url, ledger, seeded, capsys, tmp_path):
    assert (
        main(
            [
                "report",
                "incidents",
                "--since",
                "2026-11-01",
                "--format",
                "json",
                "--ledger",
                ledger_url,
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["overall"]["incidents"] == 4
    assert (
        main(
            [
                "report",
                "incidents",
                "--since",
                "2026-11-01",
                "--until",
                "2026-11-03",
                "--format",
                "csv",
                "--ledger",
                ledger_url,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert seeded["two"] in out and seeded["three"] not in out
    assert main(["report", "incidents", "--format", "md", "--ledger", ledger_url]) == 1
    assert "html, json or csv" in capsys.readouterr().err
    assert main(["report", "compliance", "--until", "2026-11-03", "--ledger", ledger_url]) == 5
