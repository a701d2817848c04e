"""`techops alerts install --systemd`: the service unit of the alert receiver.

The token reaches the service as a systemd credential (`LoadCredential=`), as scheduled
jobs get their vault passwords: systemd copies the file into the service's private
credentials directory at start, and the unit holds only its path, never the token. The
receiver finds it there ($CREDENTIALS_DIRECTORY) when no --token-file is given. The
service may write the ledger's directory (a SQLite ledger) and nothing else of the system.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from runner.core.errors import BadOptions
from runner.core.paths import repo_root
from runner.monitoring.receiver import TLS_KEY_CREDENTIAL, TOKEN_CREDENTIAL

UNIT_NAME = "techops-alerts.service"


@dataclass(frozen=True)
class ReceiverUnit:
    """What the unit says: where the receiver listens, what it reads and as whom."""

    techops_bin: str
    listen: str
    token_file: Path
    ledger_url: str
    max_body: int | None = None
    user: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None


def absolute_ledger_url(ledger_url: str) -> str:
    """The URL with a SQLite ledger's path made absolute: the service runs elsewhere."""
    try:
        url = sa.engine.make_url(ledger_url)
    except sa.exc.ArgumentError:
        raise BadOptions(
            f"ledger {ledger_url!r} is not a database URL: use sqlite:///PATH or "
            "postgresql://USER@HOST/DB"
        ) from None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return ledger_url
    return url.set(database=str(Path(url.database).resolve())).render_as_string(hide_password=False)


def _quote(argument: str) -> str:
    """An argument of ExecStart= as systemd reads it back: specifiers (%) and variables
    ($) escaped, quoted when it holds a space or a quote."""
    text = argument.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() for c in text) or '"' in text or "\\" in text or "'" in text:
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _writable(ledger_url: str) -> list[Path]:
    """The directories the service must write: a SQLite ledger's (the file, its -wal and
    -shm beside it); none for PostgreSQL."""
    url = sa.engine.make_url(ledger_url)
    if url.password:
        raise BadOptions(
            "the ledger URL holds a password, which a unit file would show to every user: "
            "use a URL without it (a ~/.pgpass of the service's user, or certificate "
            "authentication)"
        )
    if url.get_backend_name() == "sqlite" and url.database:
        return [Path(url.database).resolve().parent]
    return []


def _path(path: Path) -> str:
    """An absolute path in a unit setting, its specifier character escaped."""
    return str(path.resolve()).replace("%", "%%")


def render_unit(unit: ReceiverUnit) -> str:
    root = repo_root()
    command = [unit.techops_bin, "alerts", "serve", "--listen", unit.listen]
    command += ["--ledger", unit.ledger_url]
    if unit.max_body is not None:
        command += ["--max-body", str(unit.max_body)]
    credentials = [f"LoadCredential={TOKEN_CREDENTIAL}:{_path(unit.token_file)}"]
    if unit.tls_cert is not None and unit.tls_key is not None:
        command += ["--tls-cert", str(unit.tls_cert)]
        credentials.append(f"LoadCredential={TLS_KEY_CREDENTIAL}:{_path(unit.tls_key)}")
        if unit.client_ca is not None:
            command += ["--client-ca", str(unit.client_ca)]
    writable = _writable(unit.ledger_url)
    lines = [
        "[Unit]",
        "Description=techops alert receiver (Alertmanager notifications to the ledger)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        *([f"User={unit.user}"] if unit.user else []),
        f"WorkingDirectory={root}",
        f"Environment=TECHOPS_ROOT={root}",
        "# The token (and the TLS key) as credentials: the receiver reads them from",
        "# $CREDENTIALS_DIRECTORY, private to this service; this file holds only their paths.",
        *credentials,
        "ExecStart=" + " ".join(_quote(part) for part in command),
        "Restart=on-failure",
        "RestartSec=5",
        "# SIGTERM: stop accepting, let the requests in flight finish (each at most 10 s).",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "# Hardening: the receiver reads the repository and writes the ledger's directory.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        *[f"ReadWritePaths={_path(path)}" for path in writable],
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "UMask=0077",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
