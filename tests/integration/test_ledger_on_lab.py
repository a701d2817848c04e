"""Runs on the lab leave complete, verifiable, secret-free records and readable reports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, techops

PG_URL = os.environ.get("TECHOPS_TEST_PG_URL")
CANARIES = ("CANARY-extra-9b2c", "CANARY-inventory-41aa", "CANARY-task-only-5d1e")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    if not PG_URL:
        pytest.skip("TECHOPS_TEST_PG_URL is not set: scripts/test starts PostgreSQL for this")
    import sqlalchemy as sa

    from runner.ledger import metadata

    engine = sa.create_engine(sa.engine.make_url(PG_URL).set(drivername="postgresql+psycopg"))
    metadata.drop_all(engine)
    engine.dispose()
    return PG_URL


@pytest.fixture
def canary_inventory(lab_inventory, tmp_path) -> Path:
    """A copy of the lab inventory with a secret planted in its group_vars."""
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(lab_inventory, inventory / "hosts.yml")
    for source in (REPO / "inventories/lab/group_vars/all").glob("*.yml"):
        shutil.copy(source, inventory / "group_vars/all" / source.name)
    (inventory / "group_vars/all/secrets.yml").write_text(
        yaml.safe_dump({"canary_api_token": CANARIES[1]})
    )
    return inventory / "hosts.yml"


def console_errors(html: Path) -> list[str]:
    """Console messages and failed loads Chromium reports while rendering a page."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: scripts/test installs it")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                html.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert "</html>" in proc.stdout, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if "CONSOLE" in line]


def test_the_console_check_catches_an_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>"
    )
    assert console_errors(page)


def test_a_real_run_is_recorded_reported_and_free_of_secrets(
    lab_inventory, canary_inventory, ledger_url, tmp_path
):
    proc = techops(
        "run",
        "tests/fixtures/playbooks/canary.yml",
        "-i",
        str(canary_inventory),
        "-e",
        f"db_password={CANARIES[0]}",
        "--reason",
        "canary check",
        "--ticket",
        "SEC-7",
        "--ledger",
        ledger_url,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = json.loads(proc.stdout[proc.stdout.index("{") :])["run_id"]

    listed = techops("runs", "--ledger", ledger_url, "--json", "--playbook", "canary")
    runs = json.loads(listed.stdout)
    assert [r["run_id"] for r in runs] == [run_id]
    record = runs[0]
    assert record["status"] == "successful"
    assert record["start"]["reason"] == "canary check"
    assert record["start"]["ticket"] == "SEC-7"
    assert set(record["end"]["hosts"]) == {"app1", "app2"}
    assert record["end"]["evidence"]["app1"]["access"] == {"checked": True}
    assert techops("runs", "--ledger", ledger_url, "--host", "app1").stdout.count(run_id) == 1
    assert run_id not in techops("runs", "--ledger", ledger_url, "--host", "bastion1").stdout

    outputs = {}
    for fmt in ("html", "json", "md"):
        out = tmp_path / f"report.{fmt}"
        report = techops(
            "report", run_id[:18], "--format", fmt, "-o", str(out), "--ledger", ledger_url
        )
        assert report.returncode == 0, report.stderr
        outputs[fmt] = out
    html = outputs["html"].read_text()
    assert "http://" not in html and "https://" not in html  # self-contained
    assert "canary check" in html and "app1" in html and "verified" in html
    assert console_errors(outputs["html"]) == []
    compliance = tmp_path / "compliance.csv"
    assert (
        techops(
            "report",
            "compliance",
            "--since",
            "2000-01-01",
            "--format",
            "csv",
            "-o",
            str(compliance),
            "--ledger",
            ledger_url,
        ).returncode
        == 0
    )
    assert compliance.read_text().startswith("host,last_patch")

    # Every byte the run left behind: artifacts, ledger, reports, and what was printed.
    leftovers = [proc.stdout, proc.stderr]
    artifacts = REPO / ".techops" / "runs" / run_id
    assert artifacts.is_dir()
    files = [p for p in artifacts.rglob("*") if p.is_file()] + list(outputs.values())
    if ledger_url.startswith("sqlite"):
        db = Path(ledger_url.removeprefix("sqlite:///"))
        files += [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    else:
        leftovers.append(
            techops("report", run_id, "--format", "json", "--ledger", ledger_url).stdout
        )
        from runner.ledger import Ledger

        leftovers.append(json.dumps(Ledger.open(ledger_url).run_events(run_id)))
    blob = b"".join(p.read_bytes() for p in files) + "".join(leftovers).encode()
    for canary in CANARIES:
        assert canary.encode() not in blob, f"{canary} leaked"
    # ...and the run really handled them (the check above is not vacuous).
    assert b"**redacted**" in blob


def _start_slow(inventory: Path, ledger_url: str, seconds: int = 60) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "tests/fixtures/playbooks/slow.yml",
            "-i",
            str(inventory),
            "-e",
            f"slow_seconds={seconds}",
            "--ledger",
            ledger_url,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and "PLAY [Slow]" not in line:
        line = proc.stderr.readline()
    assert "PLAY [Slow]" in line, "the slow run did not start"
    time.sleep(2)
    return proc


def test_overlapping_runs_are_refused_and_a_cancelled_run_is_recorded(lab_inventory, tmp_path):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    first = _start_slow(lab_inventory, ledger_url)
    try:
        second = techops(
            "run",
            "tests/fixtures/playbooks/slow.yml",
            "-i",
            str(lab_inventory),
            "--ledger",
            ledger_url,
            "--limit",
            "app1",
        )
        assert second.returncode == 1
        assert "is already running" in second.stderr
        runs = json.loads(techops("runs", "--ledger", ledger_url, "--json").stdout)
        assert [r["status"] for r in runs] == ["running"]
        assert runs[0]["run_id"] in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 99, err[-2000:]
    runs = json.loads(techops("runs", "--ledger", ledger_url, "--json").stdout)
    assert [r["status"] for r in runs] == ["canceled"]
    assert techops("audit", "verify", "--ledger", ledger_url).returncode == 0


def test_a_killed_run_is_recorded_as_interrupted(lab_inventory, tmp_path):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    proc = _start_slow(lab_inventory, ledger_url, seconds=20)
    proc.kill()
    proc.wait(timeout=30)
    # The orphaned ansible-playbook may still run; wait for the host lock to be free.
    runs = json.loads(techops("runs", "--ledger", ledger_url, "--json").stdout)
    assert [r["status"] for r in runs] == ["interrupted"]
    assert "ended before it recorded" in runs[0]["end"]["detail"]
