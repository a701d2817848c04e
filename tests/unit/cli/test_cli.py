"""The command line as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import json

import pytest

from runner.ledger.store import Ledger
from tests.helpers import techops
from tests.ledgers import add_drill, add_run


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


def test_a_ledger_given_as_a_path_says_which_url_to_give(tmp_path):
    proc = techops("runs", "--ledger", str(tmp_path / "ledger.sqlite3"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert f"use sqlite:///{tmp_path / 'ledger.sqlite3'}" in proc.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_a_bad_date_is_one_clear_error():
    proc = techops("runs", "--since", "last tuesday", "--ledger", "sqlite:///:memory:")
    assert proc.returncode == 1
    assert "bad date 'last tuesday'" in proc.stderr


def _ledger_with_a_drill(tmp_path) -> str:
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


def one_line_refusal(proc, exit_code: int, says: str) -> None:
    assert proc.returncode == exit_code, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("forks", ["0", "-3"])
def test_forks_below_one_are_refused_before_anything_runs(tmp_path, forks):
    ledger = tmp_path / "ledger.sqlite3"
    proc = techops(
        "run", "site", "-i", "localhost,", "-f", forks, "--ledger", f"sqlite:///{ledger}"
    )
    one_line_refusal(proc, 5, f"-f/--forks must be at least 1 (got {forks})")
    assert not ledger.exists()  # nothing started, nothing recorded


@pytest.mark.parametrize("count", ["0", "-2"])
def test_a_listing_of_zero_or_fewer_starts_is_refused(count):
    proc = techops("schedule", "list", "--count", count)
    one_line_refusal(proc, 5, f"--count must be at least 1 (got {count})")


@pytest.mark.parametrize("last", ["0", "-1"])
def test_runs_last_needs_a_positive_count(tmp_path, last):
    url = _ledger_with_a_drill(tmp_path)
    proc = techops("runs", "--last", last, "--ledger", url)
    one_line_refusal(proc, 5, f"--last must be at least 1 (got {last})")


def test_runs_last_applies_to_the_json_listing_too(tmp_path):
    url = _ledger_with_a_drill(tmp_path)
    proc = techops("runs", "--last", "2", "--json", "--ledger", url)
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [
        "20261104T033000Z-bbbbbb",
        "20261105T000000Z-cccccc",
    ]


def test_until_before_since_is_refused(tmp_path):
    url = _ledger_with_a_drill(tmp_path)
    proc = techops("runs", "--since", "2026-11-05", "--until", "2026-11-04", "--ledger", url)
    one_line_refusal(proc, 5, "--until 2026-11-04 is before --since 2026-11-05")
    # The same day for both is that whole day, not an empty range.
    listed = json.loads(techops("runs", "--json", "--ledger", url, check=True).stdout)
    day = listed[-1]["started"][:10]
    proc = techops("runs", "--since", day, "--until", day, "--ledger", url)
    assert proc.returncode == 0, proc.stderr
    assert "20261105T000000Z-cccccc" in proc.stdout


def test_a_report_into_a_missing_directory_is_refused_before_it_is_made(tmp_path):
    url = _ledger_with_a_drill(tmp_path)
    target = tmp_path / "no" / "such" / "report.html"
    proc = techops("report", "compliance", "-o", str(target), "--ledger", url)
    one_line_refusal(proc, 5, f"directory {target.parent} does not exist (create it first)")
    assert not (tmp_path / "no").exists()
    proc = techops("report", "compliance", "-o", str(tmp_path), "--ledger", url)
    one_line_refusal(proc, 5, "is a directory: give a file name")
