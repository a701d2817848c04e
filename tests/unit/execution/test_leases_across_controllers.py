"""Two controllers on one PostgreSQL ledger: `techops run` processes, each with a checkout
(and so a .techops state directory) of its own, running a playbook on local hosts.

No container and no address: the inventory's hosts are names with `ansible_connection:
local`. The playbook holds its hosts until the test lets go (a file handshake, no guessed
sleeps). Skipped with the reason without TECHOPS_TEST_PG_URL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from runner.ledger import leases
from runner.ledger.store import Ledger
from tests.helpers import REPO

TECHOPS = Path(sys.executable).parent / "techops"
PLAYBOOK = REPO / "tests" / "fixtures" / "playbooks" / "held.yml"
# What a checkout needs for `techops run` (the inventories are not among them).
CHECKOUT = ("ansible.cfg", "plugins", "collections", "roles", "playbooks", "environments.yml")
STARTUP_S = 30  # a controller starting ansible-playbook on a loaded machine


@dataclass
class Controller:
    """One controller: a checkout of its own, with its own .techops, on the shared ledger."""

    root: Path
    ledger_url: str
    inventory: Path

    def env(self, lease_seconds: int | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TECHOPS_")}
        env.update(TECHOPS_ROOT=str(self.root), TECHOPS_LEDGER=self.ledger_url)
        if lease_seconds is not None:
            env["TECHOPS_LEASE_SECONDS"] = str(lease_seconds)
        return env

    def argv(self, handshake: Path) -> list[str]:
        held = f"held_started={handshake}.started held_release={handshake}.release"
        return [str(TECHOPS), "run", str(PLAYBOOK), "-i", str(self.inventory), "-e", held]

    def start(self, handshake: Path, lease_seconds: int | None = None) -> subprocess.Popen[str]:
        """A run that holds its hosts until `handshake`.release exists; it has them once
        `handshake`.started exists. Its own session, so the test can kill it whole."""
        proc = subprocess.Popen(
            self.argv(handshake),
            cwd=self.root,
            env=self.env(lease_seconds),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started = Path(f"{handshake}.started")
        deadline = time.monotonic() + STARTUP_S
        while not started.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(
                    f"the run ended before it started ({proc.returncode}):\n{out}{err}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the run did not start within {STARTUP_S} s")
            time.sleep(0.05)
        return proc

    def run(self, handshake: Path) -> subprocess.CompletedProcess[str]:
        """A run to completion (its release given in advance: it does not wait)."""
        Path(f"{handshake}.release").touch()
        return subprocess.run(
            self.argv(handshake),
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=STARTUP_S,
            check=False,
        )


@pytest.fixture
def controllers(tmp_path, pg_ledger_url) -> Iterator[tuple[Controller, Controller]]:
    inventory = tmp_path / "hosts.yml"
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    }
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"app1": local, "app2": local}}}))
    made = []
    for name in ("controller-a", "controller-b"):
        root = tmp_path / name
        root.mkdir()
        for part in CHECKOUT:
            (root / part).symlink_to(REPO / part)
        made.append(Controller(root, pg_ledger_url, inventory))
    yield made[0], made[1]
    # Let go of anything still waiting (a killed controller's orphans, a failed test).
    for started in tmp_path.glob("*.started"):
        started.with_suffix(".release").touch()


def run_ids(ledger_url: str, kind: str) -> list[str]:
    ledger = Ledger.open(ledger_url, create=False)
    try:
        return [e.run_id for e in ledger.entries(kinds=[kind])]
    finally:
        ledger.close()


def test_a_second_controller_is_refused_naming_the_first_run(controllers, tmp_path):
    a, b = controllers
    first = a.start(tmp_path / "first")
    try:
        [first_id] = run_ids(a.ledger_url, "run.started")
        second = b.run(tmp_path / "second")
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"run {first_id} by " in second.stderr
        assert "is already running held.yml on app1" in second.stderr
        assert f"from controller {socket.gethostname()}" in second.stderr
        assert not (tmp_path / "second.started").exists()  # it never ran
    finally:
        (tmp_path / "first.release").touch()
        out, err = first.communicate(timeout=STARTUP_S)
    assert first.returncode == 0, out + err
    ledger = Ledger.open(a.ledger_url, create=False)
    try:
        [refused] = list(ledger.entries(kinds=["run.refused"]))
        assert refused.run_id != first_id
        assert refused.body["held_by"]["run_id"] == first_id
        assert refused.body["held_by"]["host"] == "app1"
        assert refused.body["hosts"] == ["app1", "app2"]
        assert leases.holders(ledger) == {}  # the first run released its hosts
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_a_killed_controllers_lease_lapses_then_another_controller_runs(controllers, tmp_path):
    a, b = controllers
    lease_s = 6  # long enough for the next controller to start while it is alive
    killed = a.start(tmp_path / "killed", lease_seconds=lease_s)
    [killed_id] = run_ids(a.ledger_url, "run.started")
    os.killpg(killed.pid, signal.SIGKILL)  # the controller dies: nothing releases its lease
    killed.communicate(timeout=STARTUP_S)
    refused = b.run(tmp_path / "refused")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"run {killed_id} by " in refused.stderr
    assert "if its controller died, its lease lapses within" in refused.stderr
    # The database's clock says when the lease lapses; nothing renews it any more.
    ledger = Ledger.open(a.ledger_url, create=False)
    try:
        deadline = time.monotonic() + lease_s + 5
        while leases.holders(ledger):
            assert time.monotonic() < deadline, "the dead controller's lease never lapsed"
            time.sleep(0.1)
        after = b.run(tmp_path / "after")
        assert after.returncode == 0, after.stdout + after.stderr
        assert f"took over the lapsed lease of run {killed_id}" in after.stderr
        [refusal] = list(ledger.entries(kinds=["run.refused"]))
        assert refusal.body["held_by"]["run_id"] == killed_id
        # This machine's next run saw the killed one's process gone and closed it.
        assert [e.run_id for e in ledger.entries(kinds=["run.interrupted"])] == [killed_id]
        assert leases.holders(ledger) == {}
    finally:
        ledger.close()
