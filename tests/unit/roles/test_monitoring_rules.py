"""The monitoring role's alert rules under promtool: each alert fires on the condition it is
for, with its host's own threshold, and stays silent otherwise; every alert has a runbook.

The rules are rendered from the role's template by Ansible (tests/fixtures/monitoring/
render.yml) with an inventory where app1's group sets its own disk threshold, then
checked with `promtool check rules` and `promtool test rules` (Prometheus's own rule
evaluator, on synthetic series). scripts/test fetches promtool from Debian's package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, load_plugin, render_with_ansible

INVENTORY = {
    "all": {
        "hosts": {"localhost": {"ansible_connection": "local"}},
        "children": {
            "monitored": {
                "children": {
                    "app": {
                        "hosts": {
                            # The app group's own disk threshold, set on the host here.
                            "app1": {
                                "ansible_host": "192.0.2.21",
                                "monitoring_thresholds": {"disk_full_days": 2},
                            },
                            "app2": {"ansible_host": "192.0.2.22"},
                        }
                    },
                    "bastion": {"hosts": {"bastion1": {"ansible_host": "192.0.2.10"}}},
                    "backup_server": {"hosts": {"backup1": {"ansible_host": "192.0.2.30"}}},
                    # A name with the characters a regular expression could misread.
                    "db": {"hosts": {"db-1.example": {"ansible_host": "192.0.2.40"}}},
                }
            }
        },
    }
}
monitoring = load_plugin("plugins/filter/monitoring.py")
RUNBOOK_SECTIONS = ("## What it means", "## How to confirm", "## How to fix", "## When to escalate")


def promtool_path() -> str:
    given = os.environ.get("TECHOPS_PROMTOOL")
    if given:
        assert Path(given).is_file(), f"TECHOPS_PROMTOOL={given} does not exist"
        return given
    found = shutil.which("promtool")
    if not found:
        pytest.skip(
            "promtool is not installed: run through scripts/test, which fetches it from "
            "Debian's prometheus package (TECHOPS_PROMTOOL)"
        )
    return found


def render(tmp: Path, inventory: dict, **extra: object) -> subprocess.CompletedProcess[str]:
    return render_with_ansible(
        "tests/fixtures/monitoring/render.yml", inventory, tmp, {"out": str(tmp), **extra}
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("rules")
    done = render(tmp, INVENTORY)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp


@pytest.fixture(scope="module")
def rules(rendered) -> list[dict]:
    data = yaml.safe_load((rendered / "techops.rules.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_the_configuration(rendered):
    promtool = promtool_path()
    checked = subprocess.run(
        [promtool, "check", "rules", str(rendered / "techops.rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = rendered / "prometheus.yml"
    config.write_text(
        config.read_text().replace(
            "/etc/prometheus/rules/techops.rules.yml", str(rendered / "techops.rules.yml")
        )
    )
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_links_a_runbook_that_says_what_to_do(rules):
    names = {rule["alert"] for rule in rules}
    assert len(names) >= 15
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        name = url.rsplit("/", 1)[-1]
        assert name == f"{rule['alert']}.md", url
        runbook = REPO / "docs" / "runbooks" / name
        assert runbook.is_file(), f"{rule['alert']} has no runbook {runbook}"
        text = runbook.read_text()
        missing = [s for s in RUNBOOK_SECTIONS if s not in text]
        assert not missing, f"{runbook.name} lacks {missing}"
        # A runbook names the command or playbook that fixes the condition.
        assert re.search(r"`(techops|ansible|systemctl|journalctl|borg|apt|wg|df|du)", text)


def test_a_host_that_sets_its_own_threshold_gets_its_own_rule(rules):
    disk = [r for r in rules if r["alert"] == "TechopsDiskFullSoon"]
    by_threshold = {r["labels"]["threshold"]: r["expr"] for r in disk}
    assert set(by_threshold) == {"2 days", "4 days"}
    assert 'instance=~"^(app1)$"' in by_threshold["2 days"]
    assert 'instance=~"^(app2|backup1|bastion1|db-1\\\\.example)$"' in by_threshold["4 days"]


def expand(text: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


def expected(rules: list[dict], alert: str, series_labels: dict[str, str]) -> dict:
    """The alert as promtool must report it: the series' labels, the rule's labels, and the
    annotations expanded with them (the rule for the host's own threshold)."""
    for rule in rules:
        if rule["alert"] != alert:
            continue
        selector = re.search(r'instance=~"([^"]+)"', rule["expr"])
        if selector and not re.fullmatch(selector.group(1), series_labels.get("instance", "")):
            continue
        labels = {**series_labels, **rule["labels"]}
        return {
            "exp_labels": labels,
            "exp_annotations": {k: expand(v, labels) for k, v in rule["annotations"].items()},
        }
    raise AssertionError(f"no rule {alert} for {series_labels}")


def firing(rules, alert, eval_time, *series_labels) -> dict:
    return {
        "eval_time": eval_time,
        "alertname": alert,
        "exp_alerts": [expected(rules, alert, labels) for labels in series_labels],
    }


def silent(alert, eval_time) -> dict:
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": []}


def series(name: str, labels: dict[str, str], values: str) -> dict:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


FS = {"fstype": "ext4", "device": "/dev/vdb", "mountpoint": "/srv"}


def cases(rules: list[dict]) -> list[dict]:
    app1, app2 = {"instance": "app1", "job": "node"}, {"instance": "app2", "job": "node"}
    ssh = {"instance": "bastion1", "job": "ssh"}
    # A filesystem of 3 GB losing 1 GB a day: full in 3 days. app1 alerts within 2 days
    # (its own threshold), app2 within 4: only app2 fires.
    per_minute = 1_000_000_000 // 1440
    shrinking = f"3000000000-{per_minute}x120"
    return [
        {
            "interval": "1m",
            "input_series": [
                series("up", app1, "0x10"),
                series("up", app2, "1x10"),
                series("up", {"instance": "monitor1", "job": "alertmanager"}, "0x15"),
                series("probe_success", ssh, "0x10"),
                series("probe_success", {"instance": "web", "job": "http"}, "1x10"),
            ],
            "alert_rule_test": [
                silent("TechopsHostDown", "2m"),  # not yet for its 3m
                firing(rules, "TechopsHostDown", "5m", app1),
                silent("TechopsScrapeFailing", "5m"),
                firing(
                    rules,
                    "TechopsScrapeFailing",
                    "12m",
                    {"instance": "monitor1", "job": "alertmanager"},
                ),
                firing(rules, "TechopsProbeFailed", "7m", ssh),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series("node_filesystem_avail_bytes", {**app1, **FS}, shrinking),
                series("node_filesystem_avail_bytes", {**app2, **FS}, shrinking),
                series("node_filesystem_readonly", {**app1, **FS}, "0x120"),
                series("node_filesystem_readonly", {**app2, **FS}, "0x120"),
                # systemd's runtime tmpfs filling up is not a disk to forecast.
                series(
                    "node_filesystem_avail_bytes",
                    {**app2, "fstype": "tmpfs", "device": "tmpfs", "mountpoint": "/run"},
                    shrinking,
                ),
                series(
                    "node_filesystem_readonly",
                    {**app2, "fstype": "tmpfs", "device": "tmpfs", "mountpoint": "/run"},
                    "0x120",
                ),
            ],
            "alert_rule_test": [
                silent("TechopsDiskFullSoon", "20m"),  # not yet for its 30m
                firing(rules, "TechopsDiskFullSoon", "60m", {**app2, **FS}),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series("node_memory_MemAvailable_bytes", app1, "500000000x20"),
                series("node_memory_MemTotal_bytes", app1, "10000000000x20"),
                series("node_memory_MemAvailable_bytes", app2, "5000000000x20"),
                series("node_memory_MemTotal_bytes", app2, "10000000000x20"),
                series("node_filesystem_files_free", {**app1, **FS}, "50x20"),
                series("node_filesystem_files", {**app1, **FS}, "1000x20"),
                series("node_filesystem_files_free", {**app2, **FS}, "900x20"),
                series("node_filesystem_files", {**app2, **FS}, "1000x20"),
                series("node_timex_sync_status", app1, "0x20"),
                series("node_timex_maxerror_seconds", app1, "16x20"),
                series("node_timex_offset_seconds", app1, "0x20"),
                series("node_timex_sync_status", app2, "1x20"),
                series("node_timex_maxerror_seconds", app2, "0.01x20"),
                series("node_timex_offset_seconds", app2, "0.001x20"),
            ],
            "alert_rule_test": [
                firing(rules, "TechopsMemoryPressure", "17m", app1),
                firing(rules, "TechopsInodePressure", "17m", {**app1, **FS}),
                firing(rules, "TechopsClockNotSynchronised", "15m", app1),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                # app1's last backup at 0 s, its RPO 600 s; app2 backs up every minute.
                series("techops_backup_last_success_timestamp_seconds", app1, "0x40"),
                series("techops_backup_rpo_target_seconds", app1, "600x40"),
                series("techops_backup_last_success_timestamp_seconds", app2, "0+60x40"),
                series("techops_backup_rpo_target_seconds", app2, "600x40"),
                series(
                    "techops_backup_check_success",
                    {"instance": "backup1", "job": "node", "repository": "app1"},
                    "0x40",
                ),
                series(
                    "techops_backup_check_success",
                    {"instance": "backup1", "job": "node", "repository": "app2"},
                    "1x40",
                ),
                series("techops_drill_success", {**app1, "system": "app1"}, "0x40"),
                series("techops_vpn_peer_expected", {**app1, "peer": "alice"}, "1x40"),
                series(
                    "techops_vpn_peer_last_handshake_timestamp_seconds",
                    {**app1, "peer": "alice"},
                    "0x40",
                ),
                series("techops_vpn_peer_expected", {**app1, "peer": "bob"}, "1x40"),
                series(
                    "techops_vpn_peer_last_handshake_timestamp_seconds",
                    {**app1, "peer": "bob"},
                    "0+60x40",
                ),
                series(
                    "techops_job_last_success_timestamp_seconds",
                    {**app1, "job_name": "backup-daily"},
                    "0x40",
                ),
                series(
                    "techops_job_max_interval_seconds",
                    {**app1, "job_name": "backup-daily"},
                    "600x40",
                ),
                series(
                    "techops_job_last_success_timestamp_seconds",
                    {**app1, "job_name": "drill-monthly"},
                    "0+60x40",
                ),
                series(
                    "techops_job_max_interval_seconds",
                    {**app1, "job_name": "drill-monthly"},
                    "600x40",
                ),
            ],
            "alert_rule_test": [
                silent("TechopsBackupTooOld", "20m"),  # older than its RPO since 10m, for 15m
                firing(rules, "TechopsBackupTooOld", "30m", app1),
                firing(
                    rules,
                    "TechopsBackupCheckFailed",
                    "1m",
                    {"instance": "backup1", "job": "node", "repository": "app1"},
                ),
                firing(rules, "TechopsDrillFailed", "1m", {**app1, "system": "app1"}),
                silent("TechopsVpnPeerDown", "4m"),
                firing(rules, "TechopsVpnPeerDown", "10m", {**app1, "peer": "alice"}),
                firing(rules, "TechopsJobMissed", "15m", {**app1, "job_name": "backup-daily"}),
            ],
        },
        {
            "interval": "1h",
            "input_series": [
                series(
                    "techops_backup_check_last_timestamp_seconds",
                    {"instance": "backup1", "job": "node", "repository": "app1"},
                    "0x40",
                ),
                series(
                    "techops_backup_check_last_timestamp_seconds",
                    {"instance": "backup1", "job": "node", "repository": "app2"},
                    "0+3600x40",
                ),
            ],
            "alert_rule_test": [
                silent("TechopsBackupCheckOverdue", "30h"),
                firing(
                    rules,
                    "TechopsBackupCheckOverdue",
                    "37h",
                    {"instance": "backup1", "job": "node", "repository": "app1"},
                ),
            ],
        },
        {
            "interval": "1d",
            "input_series": [
                series("techops_apt_security_updates_pending", app1, "3x45"),
                series("techops_apt_security_pending_since_timestamp_seconds", app1, "1x45"),
                series("techops_apt_security_updates_pending", app2, "0x45"),
                series("techops_apt_security_pending_since_timestamp_seconds", app2, "1x45"),
                series("techops_reboot_required_since_timestamp_seconds", app1, "1x45"),
                series("techops_reboot_required_since_timestamp_seconds", app2, "0x45"),
                series("techops_drill_last_timestamp_seconds", {**app1, "system": "app1"}, "0x45"),
                series(
                    "techops_drill_last_timestamp_seconds",
                    {**app2, "system": "app2"},
                    "0+86400x45",
                ),
            ],
            "alert_rule_test": [
                silent("TechopsSecurityUpdatesPending", "6d"),
                firing(rules, "TechopsSecurityUpdatesPending", "8d", app1),
                silent("TechopsRebootRequired", "6d"),
                firing(rules, "TechopsRebootRequired", "8d", app1),
                silent("TechopsDrillOverdue", "39d"),
                firing(rules, "TechopsDrillOverdue", "41d", {**app1, "system": "app1"}),
            ],
        },
    ]


def test_each_alert_fires_on_its_condition_and_only_then(rendered, rules):
    promtool = promtool_path()
    tested = {t["alertname"] for case in cases(rules) for t in case["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in rules}, "an alert without a promtool test"
    spec = rendered / "rules.test.yml"
    spec.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rendered / "techops.rules.yml")],
                "evaluation_interval": "1m",
                "tests": cases(rules),
            },
            sort_keys=False,
        )
    )
    done = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        (
            {"disk_full_days": "soon"},
            "host app2: monitoring_thresholds.disk_full_days must be a number",
        ),
        ({"memory_available_ratio": 2}, "memory_available_ratio must be above 0 and at most 1"),
        ({"host_down_for": "3 minutes"}, "host_down_for must be a Prometheus duration"),
        ({"disk_ful_days": 3}, "unknown threshold(s) disk_ful_days"),
        ("4 days", "host app2: monitoring_thresholds must be a mapping"),
    ],
)
def test_a_malformed_threshold_is_named_with_its_host(thresholds, message):
    defaults = yaml.safe_load((REPO / "roles/monitoring/defaults/main.yml").read_text())
    hostvars = {"app1": {}, "app2": {"monitoring_thresholds": thresholds}}
    with pytest.raises(monitoring.AnsibleFilterError) as caught:
        monitoring.alert_scopes(hostvars, ["app1", "app2"], defaults["monitoring_thresholds"])
    assert message in str(caught.value)


def test_a_malformed_threshold_stops_the_play_before_any_file_is_written(tmp_path):
    inventory = yaml.safe_load(yaml.safe_dump(INVENTORY))
    app = inventory["all"]["children"]["monitored"]["children"]["app"]["hosts"]
    app["app2"]["monitoring_thresholds"] = {"disk_full_days": "soon"}
    done = render(tmp_path, inventory)
    assert done.returncode != 0
    assert "host app2: monitoring_thresholds.disk_full_days must be a number" in done.stdout
    assert not (tmp_path / "techops.rules.yml").exists()


def test_alerts_reach_the_incident_receiver_with_its_token_and_its_ca(tmp_path):
    """The route to `techops alerts serve`: its token from a file only Alertmanager reads,
    and, for an https receiver with a private CA (and mutual TLS), the CA and the client
    certificate."""
    done = render(
        tmp_path,
        INVENTORY,
        monitoring_incident_receiver_url="https://controller.example:9095/alerts",
        monitoring_incident_receiver_ca_file="/etc/techops/alerts-ca.pem",
        monitoring_incident_receiver_cert_file="/etc/techops/alertmanager.pem",
        monitoring_incident_receiver_key_file="/etc/techops/alertmanager.key",
        monitoring_alert_webhooks=["http://127.0.0.1:9999/hook"],
    )
    assert done.returncode == 0, done.stdout[-2000:]
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    incident, hook = config["receivers"][0]["webhook_configs"]
    assert incident["url"] == "https://controller.example:9095/alerts"
    assert incident["send_resolved"] is True
    assert incident["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/prometheus/techops-incident-receiver.token",
    }
    assert incident["http_config"]["tls_config"] == {
        "ca_file": "/etc/techops/alerts-ca.pem",
        "cert_file": "/etc/techops/alertmanager.pem",
        "key_file": "/etc/techops/alertmanager.key",
    }
    assert hook == {"url": "http://127.0.0.1:9999/hook", "send_resolved": True}
    assert config["inhibit_rules"][0]["equal"] == ["instance"]
