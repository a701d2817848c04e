"""The command line as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def techops(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        env=env,
        check=False,
    )


def test_missing_playbook_exits_non_zero_with_one_line():
    proc = techops("run", "playbooks/nosuch.yml", "-i", "localhost,")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "playbook 'playbooks/nosuch.yml' not found" in proc.stderr


def test_missing_inventory_names_it():
    proc = techops("run", "site", "-i", "inventories/nosuch/hosts.yml")
    assert proc.returncode == 1
    assert "inventory inventories/nosuch/hosts.yml does not exist" in proc.stderr


def test_malformed_extra_vars_stop_before_running():
    proc = techops("run", "site", "-i", "localhost,", "-e", "{broken")
    assert proc.returncode == 1
    assert "malformed extra vars" in proc.stderr


def test_bad_option_exits_5_like_ansible_playbook():
    proc = techops("run", "--no-such-option")
    assert proc.returncode == 5


def test_bad_lab_name_says_what_to_do():
    proc = techops("lab", "status", "--name", "Bad Name!")
    assert proc.returncode == 1
    assert "bad lab name 'Bad Name!'" in proc.stderr


def test_lab_without_podman_says_to_run_setup(tmp_path):
    env = {"PATH": str(tmp_path), "TECHOPS_ROOT": str(tmp_path)}
    proc = techops("lab", "status", env=env)
    assert proc.returncode == 1
    assert "podman is not installed: run scripts/setup" in proc.stderr


def test_version():
    proc = techops("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("techops ")


def test_a_corrupt_ledger_stops_the_run_before_it_starts(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    ledger.write_bytes(b"garbage" * 200)
    proc = techops("run", "site", "-i", "localhost,", "--ledger", f"sqlite:///{ledger}")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "damaged" in proc.stderr
    assert ledger.read_bytes() == b"garbage" * 200  # untouched


def test_an_unknown_ledger_url_is_refused(tmp_path):
    proc = techops("runs", "--ledger", "mysql://x@y/z")
    assert proc.returncode == 1
    assert "unsupported ledger URL" in proc.stderr


def test_a_bad_date_is_one_clear_error():
    proc = techops("runs", "--since", "last tuesday", "--ledger", "sqlite:///:memory:")
    assert proc.returncode == 1
    assert "bad date 'last tuesday'" in proc.stderr


def _ledger_with_a_drill(tmp_path) -> str:
    from runner.ledger.store import Ledger
    from tests.unit.test_reports import add_drill, add_run

    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger.open(url)
    add_drill(ledger, "20261007T033000Z-aaaaaa")
    add_drill(ledger, "20261104T033000Z-bbbbbb", status="failed", passed=False, reason="RPO")
    add_run(ledger, "20261105T000000Z-cccccc", {"app1": "ok"})
    ledger.close()
    return url


def test_report_drill_writes_the_report_with_its_trend(tmp_path):
    url = _ledger_with_a_drill(tmp_path)
    proc = techops("report", "drill", "20261104T033000Z-b", "--format", "json", "--ledger", url)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["run_id"] == "20261104T033000Z-bbbbbb" and data["passed"] is False
    assert [t["passed"] for t in data["drills"][0]["trend"]] == [True, False]
    out = tmp_path / "drill.html"
    proc = techops("report", "drill", "20261104T033000Z-b", "-o", str(out), "--ledger", url)
    assert proc.returncode == 0, proc.stderr
    assert "RTO (start to verified service)" in out.read_text()


def test_report_drill_says_what_is_missing(tmp_path):
    url = _ledger_with_a_drill(tmp_path)
    proc = techops("report", "drill", "--ledger", url)
    assert proc.returncode == 5
    assert "which drill? techops report drill RUN_ID" in proc.stderr
    proc = techops("report", "drill", "20261105T000000Z-c", "--ledger", url)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "recorded no drill result" in proc.stderr
    proc = techops("report", "drill", "20261104T", "--format", "csv", "--ledger", url)
    assert proc.returncode == 1
    assert "a drill report comes as html, json or md" in proc.stderr
    proc = techops("report", "compliance", "20261104T", "--ledger", url)
    assert proc.returncode == 5
    assert "only 'drill' takes a run id" in proc.stderr
