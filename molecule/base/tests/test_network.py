"""The firewall and node exporter, seen from this machine over the scenario's network."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

LISTENER_PORT = 8080
LISTENER_UNIT = "molecule-verify-listener"


def wait_listening(host, port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if host.socket(f"tcp://0.0.0.0:{port}").is_listening:
            return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on port {port} inside {host.backend.name}")


@pytest.fixture
def listener(host):
    """A web server on a port the firewall does not allow, for the length of one test."""
    host.run(f"systemctl stop {LISTENER_UNIT}")
    host.run_expect(
        [0],
        f"systemd-run --unit={LISTENER_UNIT} --collect"
        f" python3 -m http.server --bind 0.0.0.0 {LISTENER_PORT}",
    )
    try:
        wait_listening(host, LISTENER_PORT)
        yield LISTENER_PORT
    finally:
        host.run(f"systemctl stop {LISTENER_UNIT}")


def test_unlisted_port_is_dropped_from_outside(host, address, listener):
    # Inside the host the server answers (loopback is allowed) ...
    host.run_expect(
        [0],
        "python3 -c 'import urllib.request as u; "
        f'u.urlopen("http://127.0.0.1:{listener}/", timeout=5).read()\'',
    )
    # ... from outside the connection attempt gets no answer at all (dropped, not refused).
    with pytest.raises(TimeoutError):
        socket.create_connection((address, listener), timeout=3).close()


def test_ssh_port_is_open_from_outside(address):
    with socket.create_connection((address, 22), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")


def test_node_exporter_serves_metrics_from_outside(address):
    conn = http.client.HTTPConnection(address, 9100, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200
    assert "node_exporter_build_info" in body
