"""A remote run stopped here (Ctrl-C, SIGTERM, the time limit) ends its transport and leaves
no staged job behind, even when the node never answers."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from runner.core.paths import state_dir
from runner.execution import remote
from runner.execution.request import RunRequest
from tests.helpers import REPO


@pytest.fixture
def silent_node(monkeypatch, tmp_path):
    """A node whose transport starts but never answers (a hung SSH session)."""
    pidfile = tmp_path / "worker.pid"
    argv = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)",
    ]
    monkeypatch.setattr(remote.Node, "worker_argv", lambda self: argv)
    return remote.Node(name="silent", ssh="ansible@node.invalid"), pidfile


def test_cancelling_stops_the_transport_and_cleans_the_staged_job(silent_node):
    node, pidfile = silent_node
    request = RunRequest(
        playbook=REPO / "tests/fixtures/playbooks/node_probe.yml", inventory="localhost,"
    )
    asked = threading.Event()
    threading.Timer(2.0, asked.set).start()
    started = time.monotonic()
    result = remote.execute_remote(request, node, lambda event: True, asked.is_set)
    assert result.status == "canceled"
    assert time.monotonic() - started < 30  # not the worker's 120 s, nor a 60 s wait
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not (state_dir() / "transmit" / request.run_id).exists()


def test_a_node_that_cannot_be_reached_leaves_no_staged_job(monkeypatch):
    monkeypatch.setattr(remote.Node, "worker_argv", lambda self: ["/nonexistent/ssh"])
    request = RunRequest(
        playbook=REPO / "tests/fixtures/playbooks/node_probe.yml", inventory="localhost,"
    )
    with pytest.raises(remote.UserError, match="cannot start /nonexistent/ssh"):
        remote.execute_remote(
            request, remote.Node(name="x", ssh="a@b"), lambda e: True, lambda: False
        )
    assert not (state_dir() / "transmit" / request.run_id).exists()
