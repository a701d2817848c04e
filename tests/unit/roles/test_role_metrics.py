"""What the vpn and dr_drill roles publish for Prometheus (node exporter's textfile collector),
offline.

The vpn role's script runs here against a stand-in `wg` on PATH that prints a realistic
`wg show wg0 dump`, with the peers file the role's own variables produce (rendered by
Ansible, tests/fixtures/metrics/render.yml); the dr_drill role's template is rendered by
Ansible the same way. Every file must parse as Prometheus's text format, carry the series
the monitoring role's alert rules read, and, with TECHOPS_PROMTOOL, pass
`promtool check metrics`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, render_with_ansible

SCRIPT = REPO / "roles/vpn/files/usr/local/libexec/techops/vpn-metrics"
RULES = REPO / "roles/monitoring/templates/etc/prometheus/rules/techops.rules.yml.j2"
NOW = 1_760_000_000


def key(name: str) -> str:
    """A WireGuard-shaped public key (44 base64 characters), stable per name."""
    return base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()


ALICE, BOB, CAROL, APP1, DB1, STRANGER = map(
    key, ("alice", "bob", "carol", "app1", "db-1.example", "stranger")
)
USERS = [
    {"name": "alice", "public_key": ALICE, "always_on": True},
    {"name": "bob", "public_key": BOB},
    {"name": "carol", "public_key": CAROL, "state": "absent"},
]
INVENTORY = {
    "all": {
        "children": {
            "vpn_gateway": {"hosts": {"gw": {"ansible_connection": "local"}}},
            "vpn_peer": {
                "hosts": {
                    "app1": {"__vpn_public_key": APP1},
                    "db-1.example": {"__vpn_public_key": DB1},
                    # Not run yet: no public key, so not in the peers file.
                    "newhost": {},
                }
            },
        }
    }
}
DRILL_CASES = [
    {
        "id": "passed",
        "source": "backup-app",
        "reasons": [],
        "rto": 123.4,
        "rpo": 4567.8,
        "started": 1_718_000_000.25,
    },
    {
        "id": "failed-early",
        "source": "db-1.example",
        "reasons": ["Find the latest archive of the source: Connection refused"],
        "rto": None,
        "rpo": None,
        "started": 1_718_000_100.0,
    },
    {
        "id": "odd-name",
        "source": 'odd host/"x"',
        "reasons": ["RTO 700 s exceeds the target 600 s"],
        "rto": None,
        "rpo": 100.0,
        "started": 1_718_000_200.0,
    },
]
FAKE_WG = """#!/bin/sh
# Stands in for wg: `wg show IFACE dump` prints $FAKE_WG_DUMP; FAKE_WG_FAIL makes it fail as
# wg does when the interface is down.
if [ "$1" != show ] || [ "$3" != dump ]; then
    echo "fake wg: unexpected arguments: $*" >&2; exit 64
fi
if [ -n "${FAKE_WG_FAIL:-}" ] || [ "$2" != "${FAKE_WG_INTERFACE:-wg0}" ]; then
    echo "Unable to access interface: No such device" >&2; exit 1
fi
cat "$FAKE_WG_DUMP"
"""


def dump(*peers: tuple[str, str, int, int, int]) -> str:
    """`wg show wg0 dump`: the interface (private key, public key, port, fwmark), then per
    peer: key, preshared key, endpoint, allowed IPs, handshake, rx, tx, keepalive."""
    lines = [f"{key('gateway-private')}\t{key('gateway')}\t51820\toff"]
    for number, (public, endpoint, handshake, rx, tx) in enumerate(peers, start=2):
        lines.append(
            f"{public}\t(none)\t{endpoint}\t10.200.0.{number}/32\t{handshake}\t{rx}\t{tx}\toff"
        )
    return "\n".join(lines) + "\n"


RUNNING = dump(
    (ALICE, "198.51.100.7:40112", NOW - 30, 1_234_567, 7_654_321),
    (BOB, "(none)", 0, 0, 0),
    (APP1, "192.0.2.21:51820", NOW - 100, 42, 4_200_000_000_000),
    (STRANGER, "203.0.113.9:51820", NOW - 5, 10, 20),
)


# --- Prometheus's text format ---------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')
TYPES = {"counter", "gauge", "untyped", "histogram", "summary"}


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> dict[str, dict]:
    """Families by name: help, type and samples ({labels: value}). Stricter than the format
    where node exporter's textfile collector is: no timestamps, HELP and TYPE before the
    samples, one block per family, no duplicate series, counters named *_total."""
    assert text == "" or text.endswith("\n"), "the last line has no newline"
    families: dict[str, dict] = {}
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number}: {line!r}"
        assert line.strip(), f"{where}: empty line"
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, *rest = line.split(" ", 3)
            assert re.fullmatch(NAME, name), where
            family = families.setdefault(name, {"samples": {}})
            assert not family["samples"], f"{where}: {kind} after the samples"
            assert kind.lower() not in family, f"{where}: second {kind}"
            family[kind.lower()] = rest[0] if rest else ""
            if kind == "TYPE":
                assert family["type"] in TYPES, where
            current = name
            continue
        assert not line.startswith("#"), f"{where}: a comment among the metrics"
        match = SAMPLE.match(line)
        assert match, f"{where}: not a sample (or a sample with a timestamp)"
        name, labels_text, value = match.groups()
        assert name == current, f"{where}: a sample outside its family's block"
        labels, pos = {}, 0
        while labels_text and pos < len(labels_text):
            label = LABEL.match(labels_text, pos)
            assert label, f"{where}: bad labels"
            assert label.group(1) not in labels, f"{where}: label {label.group(1)} twice"
            labels[label.group(1)] = _unescape(label.group(2))
            pos = label.end()
        series = tuple(sorted(labels.items()))
        family = families[name]
        assert series not in family["samples"], f"{where}: duplicate series"
        family["samples"][series] = float(value)
    for name, family in families.items():
        assert family.get("help"), f"{name} has no HELP"
        assert family.get("type"), f"{name} has no TYPE"
        assert family["samples"], f"{name} has no sample"
        if family["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} is not named *_total"
            assert all(v >= 0 for v in family["samples"].values()), name
    return families


def values(families: dict[str, dict], metric: str, label: str) -> dict[str, float]:
    """{label value: sample value} of one metric."""
    return {dict(series)[label]: value for series, value in families[metric]["samples"].items()}


def promtool_check(path: Path) -> None:
    promtool = os.environ.get("TECHOPS_PROMTOOL")
    if not promtool:
        pytest.skip(
            "TECHOPS_PROMTOOL is not set: scripts/test fetches promtool from Debian's "
            "prometheus package; the format is still checked by this module's parser"
        )
    assert Path(promtool).is_file(), f"TECHOPS_PROMTOOL={promtool} does not exist"
    with path.open() as metrics:
        checked = subprocess.run(
            [promtool, "check", "metrics"], stdin=metrics, capture_output=True, text=True
        )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def alerted_metrics(prefix: str) -> set[str]:
    return set(re.findall(rf"\b({prefix}\w+)", RULES.read_text()))


# --- The roles' files, rendered by Ansible -----------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("metrics")
    # Extra variables: the roles' defaults are loaded as vars_files, which outrank the
    # inventory's.
    extra = {
        "out": str(tmp),
        "vpn_users": USERS,
        "vpn_metrics_dir": str(tmp / "textfile") + "/",
        "drill_cases": DRILL_CASES,
    }
    done = render_with_ansible("tests/fixtures/metrics/render.yml", INVENTORY, tmp, extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp


@pytest.fixture
def gateway(rendered, tmp_path):
    """A gateway's pieces in tmp_path: the role's peers file (its output moved here), a
    stand-in wg in bin/, and a function that runs the script."""
    config = json.loads((rendered / "vpn-peers.json").read_text())
    textfile = tmp_path / "textfile"
    config["output"] = str(textfile / Path(config["output"]).name)
    peers_file = tmp_path / "vpn-peers.json"
    peers_file.write_text(json.dumps(config))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "wg").write_text(FAKE_WG)
    (bin_dir / "wg").chmod(0o755)
    wg_dump = tmp_path / "wg-dump.txt"
    wg_dump.write_text(RUNNING)

    def run(path: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), str(peers_file)],
            capture_output=True,
            text=True,
            check=False,
            env={
                **os.environ,
                "PATH": path or f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                "FAKE_WG_DUMP": str(wg_dump),
                **env,
            },
        )

    return {"run": run, "dir": textfile, "file": Path(config["output"]), "dump": wg_dump}


# --- vpn ----------------------------------------------------------------------------------------


def test_the_peers_file_names_each_configured_peer_and_whether_it_should_be_up(rendered):
    config = json.loads((rendered / "vpn-peers.json").read_text())
    assert config["interface"] == "wg0"
    assert config["output"] == str(rendered / "textfile" / "techops_vpn.prom")
    assert config["peers"] == {
        ALICE: {"name": "alice", "expected": True},  # always_on
        BOB: {"name": "bob", "expected": False},  # users by default
        APP1: {"name": "app1", "expected": True},  # managed hosts
        DB1: {"name": "db-1.example", "expected": True},
    }  # carol is revoked; newhost has no key yet


def test_the_script_publishes_every_peer(gateway):
    done = gateway["run"]()
    assert done.returncode == 0, done.stderr
    assert [p.name for p in gateway["dir"].iterdir()] == ["techops_vpn.prom"], "a leftover file"
    assert gateway["file"].stat().st_mode & 0o777 == 0o644
    families = parse(gateway["file"].read_text())
    assert families["techops_vpn_peer_last_handshake_timestamp_seconds"]["type"] == "gauge"
    assert families["techops_vpn_peer_expected"]["type"] == "gauge"
    assert families["techops_vpn_peer_received_bytes_total"]["type"] == "counter"
    assert families["techops_vpn_peer_sent_bytes_total"]["type"] == "counter"
    stranger = f"unknown:{STRANGER[:8]}"
    assert values(families, "techops_vpn_peer_last_handshake_timestamp_seconds", "peer") == {
        "alice": NOW - 30,
        "bob": 0,  # never
        "app1": NOW - 100,
        stranger: NOW - 5,
        "db-1.example": 0,  # configured but not on the interface
    }
    assert values(families, "techops_vpn_peer_expected", "peer") == {
        "alice": 1,
        "bob": 0,
        "app1": 1,
        stranger: 0,
        "db-1.example": 1,
    }
    assert values(families, "techops_vpn_peer_received_bytes_total", "peer") == {
        "alice": 1_234_567,
        "bob": 0,
        "app1": 42,
        stranger: 10,
    }
    assert values(families, "techops_vpn_peer_sent_bytes_total", "peer") == {
        "alice": 7_654_321,
        "bob": 0,
        "app1": 4_200_000_000_000,
        stranger: 20,
    }
    # The private key of the interface's line never reaches the file.
    assert key("gateway-private") not in gateway["file"].read_text()
    assert alerted_metrics("techops_vpn_") <= set(families)


def test_the_script_output_passes_promtool(gateway):
    assert gateway["run"]().returncode == 0
    promtool_check(gateway["file"])


def test_each_run_replaces_the_file_in_one_rename(gateway):
    assert gateway["run"]().returncode == 0
    first = gateway["file"].stat().st_ino
    gateway["dump"].write_text(dump((ALICE, "198.51.100.7:40112", NOW + 60, 2, 3)))
    assert gateway["run"]().returncode == 0
    assert gateway["file"].stat().st_ino != first, "the file was rewritten in place"
    assert [p.name for p in gateway["dir"].iterdir()] == ["techops_vpn.prom"]
    families = parse(gateway["file"].read_text())
    assert values(families, "techops_vpn_peer_last_handshake_timestamp_seconds", "peer") == {
        "alice": NOW + 60,
        "bob": 0,
        "app1": 0,
        "db-1.example": 0,
    }
    assert values(families, "techops_vpn_peer_sent_bytes_total", "peer") == {"alice": 3}


@pytest.mark.parametrize(
    "case", ["interface-down", "no-wg", "garbled-dump", "no-interface-line", "no-peers-file"]
)
def test_a_failure_writes_nothing_and_says_why(gateway, case, tmp_path):
    gateway["dir"].mkdir()
    previous = "# HELP x y\n# TYPE x gauge\nx 1\n"
    gateway["file"].write_text(previous)
    os.utime(gateway["file"], (NOW, NOW))
    env: dict[str, str] = {}
    path = None
    if case == "interface-down":
        env["FAKE_WG_FAIL"] = "1"
    elif case == "no-wg":
        (tmp_path / "empty").mkdir()
        path = str(tmp_path / "empty")
    elif case == "garbled-dump":
        gateway["dump"].write_text(RUNNING.replace(f"\t{NOW - 30}\t", "\tsoon\t"))
    elif case == "no-interface-line":
        gateway["dump"].write_text("")
    else:
        (tmp_path / "vpn-peers.json").unlink()
    done = gateway["run"](path, **env)
    assert done.returncode != 0
    assert done.stderr.startswith("vpn-metrics: "), done.stderr
    if case == "interface-down":
        assert "No such device" in done.stderr
    assert gateway["file"].read_text() == previous
    assert gateway["file"].stat().st_mtime == NOW, "the stale file must keep its age"
    assert [p.name for p in gateway["dir"].iterdir()] == ["techops_vpn.prom"]


def test_two_peers_of_one_name_stay_two_series(gateway, tmp_path):
    peers_file = tmp_path / "vpn-peers.json"
    config = json.loads(peers_file.read_text())
    config["peers"][STRANGER] = {"name": "alice", "expected": False}
    peers_file.write_text(json.dumps(config))
    assert gateway["run"]().returncode == 0
    families = parse(gateway["file"].read_text())
    assert values(families, "techops_vpn_peer_expected", "peer") == {
        "alice": 1,
        f"alice:{STRANGER[:8]}": 0,
        "bob": 0,
        "app1": 1,
        "db-1.example": 1,
    }


def test_the_role_runs_the_script_from_a_timer_and_never_writes_its_file():
    tasks = yaml.safe_load((REPO / "roles/vpn/tasks/metrics.yml").read_text())
    text = json.dumps(tasks)
    assert "__vpn_metrics_file" not in text, "a task manages the script's output"
    timer = REPO / "roles/vpn/templates/etc/systemd/system/techops-vpn-metrics.timer.j2"
    assert "OnCalendar=minutely" in timer.read_text()
    service = REPO / "roles/vpn/templates/etc/systemd/system/techops-vpn-metrics.service.j2"
    assert "Type=oneshot" in service.read_text()


# --- dr_drill -----------------------------------------------------------------------------------


def drill_file(rendered: Path, case: str) -> Path:
    files = list((rendered / case).iterdir())
    assert len(files) == 1, files
    return files[0]


def test_the_drill_files_are_named_after_the_system(rendered):
    names = {case["id"]: drill_file(rendered, case["id"]).name for case in DRILL_CASES}
    assert names == {
        "passed": "techops_drill_backup-app.prom",
        "failed-early": "techops_drill_db-1.example.prom",
        "odd-name": "techops_drill_odd_host__x_.prom",
    }


def test_a_passed_drill_publishes_every_figure(rendered):
    families = parse(drill_file(rendered, "passed").read_text())
    assert {name: values(families, name, "system") for name in families} == {
        "techops_drill_success": {"backup-app": 1},
        "techops_drill_last_timestamp_seconds": {"backup-app": 1_718_000_000.25},
        "techops_drill_rto_seconds": {"backup-app": 123.4},
        "techops_drill_rpo_seconds": {"backup-app": 4567.8},
        "techops_drill_rto_target_seconds": {"backup-app": 3600},
        "techops_drill_rpo_target_seconds": {"backup-app": 93600},
    }
    assert all(family["type"] == "gauge" for family in families.values())
    assert alerted_metrics("techops_drill_") <= set(families)


def test_a_failed_drill_leaves_out_what_it_did_not_measure(rendered):
    families = parse(drill_file(rendered, "failed-early").read_text())
    assert {name: values(families, name, "system") for name in families} == {
        "techops_drill_success": {"db-1.example": 0},
        "techops_drill_last_timestamp_seconds": {"db-1.example": 1_718_000_100},
        "techops_drill_rto_target_seconds": {"db-1.example": 3600},
        "techops_drill_rpo_target_seconds": {"db-1.example": 93600},
    }
    families = parse(drill_file(rendered, "odd-name").read_text())
    assert values(families, "techops_drill_success", "system") == {'odd host/"x"': 0}
    assert values(families, "techops_drill_rpo_seconds", "system") == {'odd host/"x"': 100}
    assert "techops_drill_rto_seconds" not in families


@pytest.mark.parametrize("case", [case["id"] for case in DRILL_CASES])
def test_the_drill_files_pass_promtool(rendered, case):
    promtool_check(drill_file(rendered, case))


def test_the_drill_is_published_before_the_verdict_fails_the_play():
    tasks = yaml.safe_load((REPO / "roles/dr_drill/tasks/result.yml").read_text())
    names = [task["name"] for task in tasks]
    publish = names.index("Publish the drill's result for Prometheus")
    verdict = names.index("Fail the drill on any miss, with its reason")
    assert publish < verdict
    block = tasks[publish]
    assert "rescue" in block, "a failure to write the metrics would hide the verdict"
    steps = {task["name"]: task for task in block["block"]}
    written = steps["Write the drill's metrics beside their file"]["ansible.builtin.template"]
    assert written["dest"] == "{{ __dr_drill_metrics_file }}.tmp"
    moved = steps["Put the drill's metrics in place"]["ansible.builtin.command"]["argv"]
    assert moved[:2] == ["mv", "-f"] and moved[2] == written["dest"]
