"""The monitoring role, verified from outside: Prometheus scrapes both instances and
probes their SSH, loads every alert with its runbook, and an alert reaches Alertmanager's
webhook when a host's node exporter stops, then its resolution when it is back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from tests.helpers import REPO

INSTANCES = ("monitoring-deb12", "monitoring-deb13")


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(2)
    raise AssertionError(f"{what} not within {timeout:.0f} s (last: {last!r})")


def test_every_target_is_scraped_and_up(prometheus):
    def healthy():
        targets = prometheus("/api/v1/targets")["data"]["activeTargets"]
        found = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        return found if all(h == "up" for h in found.values()) and len(found) >= 6 else None

    found = wait_for(healthy, 90, "every target up")
    assert {(job, i) for job, i in found if job in ("node", "ssh")} == {
        (job, i) for job in ("node", "ssh") for i in INSTANCES
    }
    assert {"prometheus", "alertmanager"} <= {job for job, _ in found}


def test_every_alert_is_loaded_with_its_runbook(prometheus):
    groups = prometheus("/api/v1/rules?type=alert")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["name"] for rule in rules}
    assert len(names) == 16, names
    for rule in rules:
        runbook = rule["annotations"]["runbook_url"].rsplit("/", 1)[-1]
        assert (REPO / "docs" / "runbooks" / runbook).is_file(), rule["name"]
        assert rule["health"] == "ok", rule


def test_the_configuration_files_pass_their_own_checks(host):
    assert host.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    assert host.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0
    assert host.file("/etc/prometheus/alertmanager.yml").mode == 0o640


def test_alertmanager_runs_alone_with_the_inhibition(alertmanager):
    status = alertmanager("/api/v2/status")
    assert status["cluster"]["status"] == "disabled"
    assert "TechopsHostDown" in status["config"]["original"]
    assert "inhibit_rules" in status["config"]["original"]


def test_a_stopped_node_exporter_alerts_then_resolves(host):
    """Stops node exporter on the other instance: this instance's Prometheus fires
    TechopsHostDown for it, Alertmanager posts it to the webhook, and posts its resolution
    once node exporter is back."""
    other = next(i for i in INSTANCES if i != host.backend.name)
    other_host = host.get_host(f"podman://{other}")

    def notifications() -> list[dict]:
        out = host.run("cat /var/tmp/webhook.jsonl 2>/dev/null").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def about_other(status: str) -> list[dict]:
        return [
            alert
            for message in notifications()
            for alert in message["alerts"]
            if alert["labels"].get("alertname") == "TechopsHostDown"
            and alert["labels"].get("instance") == other
            and alert["status"] == status
        ]

    assert other_host.run("systemctl stop prometheus-node-exporter").rc == 0
    try:
        fired = wait_for(lambda: about_other("firing"), 120, f"TechopsHostDown for {other}")
        alert = fired[0]
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook_url"].endswith("/TechopsHostDown.md")
    finally:
        assert other_host.run("systemctl start prometheus-node-exporter").rc == 0
    wait_for(lambda: about_other("resolved"), 120, f"the resolution for {other}")
