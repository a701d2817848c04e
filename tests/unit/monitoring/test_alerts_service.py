"""`techops alerts`: the token file it insists on, TLS and mutual TLS, the systemd unit,
and a graceful stop on SIGTERM."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runner.cli import main
from runner.core.errors import UserError
from runner.monitoring.receiver import TOKEN_CREDENTIAL, parse_listen, read_token, tls_context
from runner.monitoring.unit import ReceiverUnit, render_unit
from tests.helpers import REPO
from tests.ledgers import add_run
from tests.unit.monitoring.alerting import TOKEN, alert, open_ledger, payload, start, stop


def token_file(tmp_path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = tmp_path / "alerts.token"
    path.write_text(text)
    path.chmod(mode)
    return path


# ---------------------------------------------------------------------- the token


def test_a_private_token_file_is_read_without_its_newline(tmp_path):
    assert read_token(token_file(tmp_path)) == TOKEN


@pytest.mark.parametrize(
    "text,mode,reason",
    [
        (TOKEN, 0o640, "open to its group or others (mode 0640): chmod 600"),
        (TOKEN, 0o604, "open to its group or others (mode 0604)"),
        (TOKEN, 0o620, "open to its group or others"),
        ("", 0o600, "is empty"),
        ("\n  \n", 0o600, "is empty"),
        ("short", 0o600, "at least 16 characters"),
        ("two words of a token", 0o600, "one word"),
    ],
)
def test_a_token_file_that_is_not_private_or_not_a_token_is_refused(tmp_path, text, mode, reason):
    with pytest.raises(UserError, match=re.escape(reason)):
        read_token(token_file(tmp_path, text, mode))


def test_a_missing_token_file_or_a_directory_is_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_token(tmp_path / "nosuch")
    with pytest.raises(UserError, match="not a regular file"):
        read_token(tmp_path)


def test_a_systemd_credential_is_trusted_with_its_acl_mode(tmp_path, monkeypatch):
    """systemd gives a credential 0400 and an ACL for the service's user, which shows as
    a group bit: the directory is the service's alone."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o500)
    path = credentials / TOKEN_CREDENTIAL
    path.write_text(TOKEN)
    path.chmod(0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert read_token(path) == TOKEN


def test_serve_refuses_to_start_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    open_token = token_file(tmp_path, mode=0o644)
    code = main(
        [
            "alerts",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            str(open_token),
            "--ledger",
            ledger,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "chmod 600" in err
    assert main(["alerts", "serve", "--listen", "127.0.0.1:0", "--ledger", ledger]) == 5
    assert "give --token-file" in capsys.readouterr().err
    assert main(["alerts", "serve", "--listen", "nowhere", "--token-file", str(open_token)]) == 5


@pytest.mark.parametrize(
    "text,expected",
    [("127.0.0.1:9095", ("127.0.0.1", 9095)), ("[::1]:0", ("::1", 0)), ("mon1:80", ("mon1", 80))],
)
def test_listen_addresses(text, expected):
    assert parse_listen(text) == expected


# ---------------------------------------------------------------------- TLS


def _certificate(name: str, key, issuer=None, issuer_key=None, *, ca: bool = False):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(tmp_path: Path, name: str, cert, key) -> tuple[Path, Path]:
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("techops test CA", ca_key, ca=True)
    paths = {"ca": _write(tmp_path, "ca", ca, ca_key)[0]}
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        paths[name], paths[f"{name}_key"] = _write(
            tmp_path, name, _certificate(name, key, ca, ca_key), key
        )
    return paths


def _tls_post(port: int, pki, *, client_cert: bool) -> int:
    context = ssl.create_default_context(cafile=pki["ca"])
    if client_cert:
        context.load_cert_chain(pki["client"], pki["client_key"])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request(
            "POST",
            "/alerts",
            body=json.dumps(payload(alert())),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def test_mutual_tls_requires_a_client_certificate_and_the_token(tmp_path, pki):
    ledger = open_ledger(tmp_path)
    tls = tls_context(pki["server"], pki["server_key"], pki["ca"])
    running, thread = start(ledger, tls=tls)
    try:
        assert running.server.url.startswith("https://127.0.0.1:")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _tls_post(running.port, pki, client_cert=False)
        assert running.count() == 0
        assert _tls_post(running.port, pki, client_cert=True) == 200
        assert running.count() == 1
        assert any("connection failed" in line for line in running.log)
    finally:
        stop(running, thread)
        ledger.close()


# ---------------------------------------------------------------------- systemd


def test_the_unit_loads_the_token_as_a_credential_and_is_hardened(tmp_path):
    token = token_file(tmp_path)
    text = render_unit(
        ReceiverUnit(
            techops_bin="/opt/techops/.venv/bin/techops",
            listen="0.0.0.0:9095",
            token_file=token,
            ledger_url=f"sqlite:///{tmp_path / 'state dir' / 'ledger.sqlite3'}",
            user="techops",
            tls_cert=Path("/etc/techops/alerts.crt"),
            tls_key=Path("/etc/techops/alerts.key"),
        )
    )
    lines = text.splitlines()
    assert f"LoadCredential=techops-alerts-token:{token}" in lines
    assert "LoadCredential=techops-alerts-tls-key:/etc/techops/alerts.key" in lines
    (exec_start,) = [line for line in lines if line.startswith("ExecStart=")]
    assert exec_start.startswith(
        "ExecStart=/opt/techops/.venv/bin/techops alerts serve --listen 0.0.0.0:9095 --ledger "
    )
    assert f'"sqlite:///{tmp_path}/state dir/ledger.sqlite3"' in exec_start  # quoted
    assert "--token-file" not in exec_start and "--tls-key" not in exec_start
    assert TOKEN not in text
    for setting in (
        "User=techops",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={tmp_path / 'state dir'}",
        "PrivateTmp=yes",
        "KillSignal=SIGTERM",
        "WantedBy=multi-user.target",
    ):
        assert setting in lines


def test_install_writes_the_unit_and_refuses_what_would_not_start(tmp_path, capsys):
    token = token_file(tmp_path)
    out = tmp_path / "units"
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    argv = ["alerts", "install", "--systemd", "--listen", "127.0.0.1:9095", "--output", str(out)]
    assert main([*argv, "--token-file", str(token), "--ledger", ledger]) == 0
    unit = (out / "techops-alerts.service").read_text()
    assert f"--ledger sqlite:///{tmp_path}/ledger.sqlite3" in unit
    capsys.readouterr()
    token.chmod(0o644)
    assert main([*argv, "--token-file", str(token), "--ledger", ledger]) == 1
    assert "chmod 600" in capsys.readouterr().err
    token.chmod(0o600)
    secret_url = "postgresql://techops:hunter2@db1/techops"
    assert main([*argv, "--token-file", str(token), "--ledger", secret_url]) == 5
    err = capsys.readouterr().err
    assert "holds a password" in err and "hunter2" not in err
    assert main([*argv, "--ledger", ledger]) == 5  # no --token-file


# ---------------------------------------------------------------------- SIGTERM


def test_serve_records_then_stops_gracefully_on_sigterm(tmp_path):
    token = token_file(tmp_path)
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "alerts",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            str(token),
            "--ledger",
            ledger,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("alerts: listening on http://127.0.0.1:"), first
        port = int(first.split("127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST",
            "/alerts",
            body=json.dumps(payload(alert())),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines()[-1] == "alerts: stopped"
    assert TOKEN not in out + err
    ledger_handle = open_ledger(tmp_path)
    assert [e.kind for e in ledger_handle.entries()] == ["incident.fired"]
    ledger_handle.close()


# ---------------------------------------------------------------------- /metrics


def _serve_and_scrape(tmp_path: Path, *options: str, env: dict[str, str]) -> tuple[str, str]:
    """`techops alerts serve` in a process of its own, scraped twice then stopped: the
    body of the second scrape and what it printed."""
    token = token_file(tmp_path)
    ledger = open_ledger(tmp_path)
    add_run(ledger, "r1", {"app1": "ok"}, playbook="playbooks/site.yml")
    ledger.close()
    argv = ["alerts", "serve", "--listen", "127.0.0.1:0", "--token-file", str(token)]
    argv += ["--ledger", f"sqlite:///{tmp_path / 'ledger.sqlite3'}", *options]
    clean = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", *env)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **env},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        port = int(first.split("127.0.0.1:")[1].split("/")[0])
        for _ in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            assert response.status == 200
            body = response.read().decode()
            conn.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return body, first + out


def test_serve_reports_the_jobs_of_the_schedules_file_it_is_given(tmp_path):
    schedules = tmp_path / "jobs.yml"
    schedules.write_text(
        "jobs:\n  - name: nightly\n    playbook: playbooks/site.yml\n"
        "    cron: '0 2 * * *'\n    changes_hosts: false\n"
    )
    # The default is the scheduler's: TECHOPS_SCHEDULES, else the repository's file.
    body, _ = _serve_and_scrape(tmp_path, env={"TECHOPS_SCHEDULES": str(schedules)})
    assert 'techops_job_max_interval_seconds{job_name="nightly"} ' in body
    assert 'techops_run_last_success{playbook="playbooks/site.yml",host="app1"} 1' in body


def test_serve_goes_on_without_job_metrics_when_the_schedules_file_is_broken(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("jobs: [\n")
    body, out = _serve_and_scrape(
        tmp_path, "--schedules", str(broken), env={"TECHOPS_SCHEDULES": str(REPO / "nowhere")}
    )
    assert "techops_job_" not in body
    assert 'techops_run_last_success{playbook="playbooks/site.yml",host="app1"} 1' in body
    said = [line for line in out.splitlines() if "job metrics left out" in line]
    assert len(said) == 1 and f"schedules: {broken}:" in said[0]
