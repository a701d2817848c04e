"""Detection on the lab, from outside: monitor1's Prometheus and Alertmanager watch the lab,
and alerts reach `techops alerts serve` on the controller, which writes the incident
timeline into a ledger of its own.

The site is converged with faster intervals than production's (scrape and evaluate every
5 s, a host down after 20 s) so that each alert's way from a host to the ledger takes
seconds; the rules, routes and receivers are the ones the inventory gives. Every fault is
made on the lab's own containers (a stopped exporter or sshd, an aged metric file, a tmpfs
made for the test) and undone after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from runner.lab.hosts import LAB_HOSTS
from tests.helpers import REPO, container_address, techops

from .conftest import LAB

# The token the lab's inventory gives Alertmanager and Prometheus (inventories/lab).
TOKEN = "lab-only-alert-receiver-token-not-a-secret"
PORT = 9095
HOST_DOWN_FOR = 20
FAST = {
    "monitoring_scrape_interval": "5s",
    "monitoring_evaluation_interval": "5s",
    "monitoring_alert_group_wait": "5s",
    "monitoring_alert_group_interval": "10s",
    "monitoring_alert_repeat_interval": "1h",
    "monitoring_probe_failed_for": "15s",
    "monitoring_backup_too_old_for": "10s",
    "monitoring_thresholds": {
        "host_down_for": f"{HOST_DOWN_FOR}s",
        "disk_full_days": 4,
        "memory_available_ratio": 0.1,
        "inode_free_ratio": 0.1,
        "clock_offset_seconds": 0.5,
        "backup_check_max_age_hours": 36,
        "security_pending_days": 7,
        "reboot_required_days": 7,
        "drill_max_age_days": 40,
        "vpn_handshake_max_age_seconds": 300,
    },
}
# What an alert's way may take: the host-down hold, a scrape and an evaluation interval,
# Alertmanager's group wait, and room for a loaded 2-core machine.
DELIVERY_BUDGET = HOST_DOWN_FOR + 5 + 5 + 5 + 45


def container(host: str) -> str:
    return f"{LAB}-{host}"


def sh_in(host: str, script: str, *, privileged: bool = False) -> str:
    argv = ["podman", "exec", *(["--privileged"] if privileged else []), container(host)]
    proc = subprocess.run(
        [*argv, "sh", "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, f"{host}: {script}: {proc.stdout} {proc.stderr}"
    return proc.stdout


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last seen: {last!r})")


class Monitor:
    """monitor1's APIs, as the controller reaches them (the lab admits it)."""

    def __init__(self, address: str) -> None:
        self.prometheus = f"http://{address}:9090"
        self.alertmanager = f"http://{address}:9093"

    def _get(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (http only)
            return json.load(answer)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return self._get(url)["data"]["result"]

    def values(self, expr: str, label: str = "instance") -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}

    def alerts(self) -> list[dict[str, Any]]:
        return self._get(f"{self.alertmanager}/api/v2/alerts")


class Timeline:
    """The receiver's ledger, read as an operator reads it."""

    def __init__(self, ledger: str) -> None:
        self.ledger = ledger

    def incidents(self) -> list[dict[str, Any]]:
        proc = techops("incident", "list", "--json", "--ledger", self.ledger, check=True)
        return json.loads(proc.stdout)

    def find(self, alert: str, host: str, status: str | None = None) -> dict[str, Any] | None:
        for incident in self.incidents():
            if (incident["alert"], incident["host"]) == (alert, host) and (
                status is None or incident["status"] == status
            ):
                return incident
        return None


@pytest.fixture(scope="module")
def monitored(lab_inventory, tmp_path_factory) -> Iterator[dict[str, Any]]:
    inventory = yaml.safe_load(lab_inventory.read_text())
    controller = inventory["all"]["vars"]["techops_controller_addresses"][0]
    address = container_address(container("monitor1"))
    work = tmp_path_factory.mktemp("monitoring")
    token = work / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    ledger = f"sqlite:///{work / 'incidents.sqlite3'}"
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "alerts",
            "serve",
            "--listen",
            f"{controller}:{PORT}",
            "--token-file",
            str(token),
            "--ledger",
            ledger,
        ],
        cwd=REPO,
        stdout=(work / "receiver.log").open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "TECHOPS_SCHEDULES": str(REPO / "schedules.yml")},
    )
    try:
        fast = work / "fast.yml"
        fast.write_text(yaml.safe_dump(FAST))
        # Into the receiver's ledger: its /metrics serves this run per playbook and host.
        run = techops("run", "site", "-i", str(lab_inventory), "-e", f"@{fast}", "--ledger", ledger)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        monitor = Monitor(address)
        everyone = {h.name for h in LAB_HOSTS}
        wait_for(
            "every node exporter scraped, the ledger's metrics and the SSH probe up",
            lambda: (
                set(monitor.values('up{job="node"} == 1')) == everyone
                and monitor.values('up{job="techops"} == 1')
                and monitor.values('probe_success{job="ssh"} == 1')
            ),
            timeout=90,
        )
        yield {
            "monitor": monitor,
            "timeline": Timeline(ledger),
            "ledger": ledger,
            "log": work / "receiver.log",
        }
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)


def test_every_host_publishes_its_state_and_only_the_monitor_scrapes_it(monitored):
    monitor: Monitor = monitored["monitor"]
    everyone = {h.name for h in LAB_HOSTS}
    wait_for(
        "every host's update metrics",
        lambda: set(monitor.values("techops_apt_upgrades_pending")) == everyone,
        timeout=30,
    )
    assert set(monitor.values("techops_reboot_required")) == everyone
    rpo = monitor.values("techops_backup_rpo_target_seconds")
    assert set(rpo) == {"app1", "app2"} and set(rpo.values()) == {93600.0}
    # The ledger's figures, from the receiver: the site run above, per playbook and host.
    last = monitor.values(
        'techops_run_last_timestamp_seconds{playbook="playbooks/site.yml"}', "host"
    )
    assert everyone <= set(last), last
    assert all(time.time() - t < 3600 for t in last.values()), last
    # The SSH banner of the bastion, checked from outside.
    assert monitor.values('probe_success{job="ssh"}') == {"bastion1": 1.0}
    # Node exporter answers the monitoring host and nobody else: not another lab host.
    connect = (
        "python3 -c \"import socket; socket.create_connection(('app1', 9100), 3); print('open')\""
    )
    assert sh_in("monitor1", connect).strip() == "open"
    refused = subprocess.run(
        ["podman", "exec", container("app2"), "sh", "-c", connect],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "open" not in refused.stdout


def test_a_host_down_reaches_the_ledger_and_its_incident_is_acknowledged_and_resolved(
    monitored, tmp_path
):
    timeline: Timeline = monitored["timeline"]
    stopped = time.monotonic()
    sh_in("app2", "systemctl stop prometheus-node-exporter")
    try:
        fired = wait_for(
            "TechopsHostDown for app2 in the ledger",
            lambda: timeline.find("TechopsHostDown", "app2", "open"),
            timeout=DELIVERY_BUDGET,
        )
        delivered = time.monotonic() - stopped
        assert delivered <= DELIVERY_BUDGET
        assert fired["runbook_url"].endswith("/TechopsHostDown.md")
        assert (REPO / "docs" / "runbooks" / "TechopsHostDown.md").is_file()
        techops(
            "incident", "ack", fired["id"], "--note", "exporter stopped by the test",
            "--ledger", monitored["ledger"], check=True,
        )  # fmt: skip
    finally:
        sh_in("app2", "systemctl start prometheus-node-exporter")
    resolved = wait_for(
        "the resolution of TechopsHostDown for app2",
        lambda: timeline.find("TechopsHostDown", "app2", "resolved"),
        timeout=60 + 10 + 5,
    )
    assert resolved["acknowledged_by"] and resolved["time_to_ack_s"] > 0
    assert resolved["time_to_resolve_s"] >= resolved["time_to_ack_s"]
    report = tmp_path / "incidents.json"
    since = datetime.fromtimestamp(time.time() - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    techops(
        "report", "incidents", "--since", since, "--format", "json", "-o", str(report),
        "--ledger", monitored["ledger"], check=True,
    )  # fmt: skip
    data = json.loads(report.read_text())
    down = next(group for group in data["by_alert"] if group["name"] == "TechopsHostDown")
    assert down["mtta_s"] == pytest.approx(resolved["time_to_ack_s"], abs=1)
    assert down["mttr_s"] == pytest.approx(resolved["time_to_resolve_s"], abs=1)
    print(
        f"host down -> ledger {delivered:.0f} s; MTTA {down['mtta_s']} s, MTTR {down['mttr_s']} s"
    )


def test_an_old_backup_alerts_and_a_down_host_silences_its_other_alerts(monitored):
    monitor: Monitor = monitored["monitor"]
    timeline: Timeline = monitored["timeline"]
    # app1's last backup, aged past its RPO, as if the backups had stopped two days ago.
    aged = int(time.time()) - 2 * 86400
    sh_in(
        "app1",
        "cd /var/lib/prometheus/node-exporter && cp -p techops_backup.prom /root/backup.prom.kept"
        " 2>/dev/null; printf '%s\\n' '# TYPE techops_backup_last_success_timestamp_seconds gauge'"
        f" 'techops_backup_last_success_timestamp_seconds {aged}' > .aged"
        " && mv .aged techops_backup.prom",
    )
    # The bastion goes dark: its exporter first, then its sshd. The SSH probe fails too,
    # but the host-down alert inhibits it: one page, not two.
    sh_in("bastion1", "systemctl stop prometheus-node-exporter")
    try:
        wait_for(
            "TechopsBackupTooOld for app1 and TechopsHostDown for bastion1 in the ledger",
            lambda: (
                timeline.find("TechopsBackupTooOld", "app1", "open")
                and timeline.find("TechopsHostDown", "bastion1", "open")
            ),
            timeout=DELIVERY_BUDGET + 30,
        )
        sh_in("bastion1", "systemctl stop ssh")

        def probe_suppressed() -> list[dict[str, Any]]:
            return [
                a
                for a in monitor.alerts()
                if a["labels"].get("alertname") == "TechopsProbeFailed"
                and a["labels"].get("instance") == "bastion1"
                and a["status"]["state"] == "suppressed"
                and a["status"]["inhibitedBy"]
            ]

        wait_for("the bastion's failed SSH probe, inhibited", probe_suppressed, timeout=90)
        # Past a group wait and interval, still nothing of it in the timeline.
        time.sleep(20)
        assert timeline.find("TechopsProbeFailed", "bastion1") is None
        assert timeline.find("TechopsBackupTooOld", "app2") is None
    finally:
        sh_in("bastion1", "systemctl start ssh; systemctl start prometheus-node-exporter")
        sh_in(
            "app1",
            "cd /var/lib/prometheus/node-exporter && if [ -e /root/backup.prom.kept ]; then"
            " mv /root/backup.prom.kept techops_backup.prom; else rm -f techops_backup.prom; fi",
        )
    wait_for(
        "the bastion's SSH probe back",
        lambda: monitor.values('probe_success{job="ssh"}') == {"bastion1": 1.0},
        timeout=60,
    )


def test_capacity_forecasts_a_filling_filesystem(monitored, tmp_path):
    """A 64 MiB tmpfs made for the test on app2, filled 2 MiB every 5 s: the report's fill
    date must fall within 25 % (of the time left) of the straight line's."""
    monitor: Monitor = monitored["monitor"]
    mount = "/srv/techops-fill"
    sh_in(
        "app2",
        f"mkdir -p {mount} && mount -t tmpfs -o size=64m techops-fill {mount}",
        privileged=True,
    )
    try:
        wait_for(
            "the test filesystem scraped",
            lambda: monitor.values(f'node_filesystem_size_bytes{{mountpoint="{mount}"}}'),
            timeout=30,
        )
        start = datetime.now(UTC)
        step_mib, every, steps = 2, 5, 24
        for i in range(steps):
            sh_in("app2", f"dd if=/dev/zero of={mount}/f{i} bs=1M count={step_mib} status=none")
            time.sleep(every)
        end = time.time()
        avail = monitor.values(f'node_filesystem_avail_bytes{{mountpoint="{mount}"}}')["app2"]
        expected_s = avail / (step_mib * 2**20 / every)
        out = tmp_path / "capacity.json"
        proc = techops(
            "report", "capacity", "--prometheus", monitor.prometheus, "--format", "json",
            "--since", start.strftime("%Y-%m-%dT%H:%M:%SZ"), "--step", "5s", "-o", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = json.loads(out.read_text())
        host = next(h for h in data["hosts"] if h["host"] == "app2")
        fs = next(f for f in host["filesystems"] if f["mountpoint"] == mount)
        forecast = fs["forecast"]
        assert forecast["status"] == "forecast", forecast
        full_at = datetime.fromisoformat(forecast["fill_date"]).timestamp()
        left = full_at - end
        print(f"fill forecast: {left:.0f} s left, straight line {expected_s:.0f} s")
        assert abs(left - expected_s) <= 0.25 * expected_s + every, (left, expected_s, forecast)
    finally:
        sh_in("app2", f"umount {mount} && rmdir {mount}", privileged=True)
