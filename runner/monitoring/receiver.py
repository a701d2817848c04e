"""The alert receiver: Alertmanager's webhook notifications, appended to the ledger, and
the ledger's runs and scheduled jobs as metrics for Prometheus.

`techops alerts serve` listens on one address for `POST /alerts` carrying Alertmanager's
webhook payload (version 4) and turns every alert in it into an incident entry:
`incident.fired` while it fires, `incident.resolved` once Alertmanager says it resolved
(runner.monitoring.incidents names the incident). What it accepts, and in what order it
refuses the rest, each refusal writing nothing:

1. one path (404 elsewhere, /metrics aside) and one method (405 for the others);
2. `Authorization: Bearer TOKEN`, compared in constant time with the token read once from
   a file at start (401): what Alertmanager's `http_config.authorization.credentials_file`
   sends;
3. `Content-Type: application/json` (415) and a `Content-Length` (411; a chunked body
   has no length to check before reading it);
4. a body of at most `max_body` bytes, refused with 413 before any of it is read;
5. JSON in Alertmanager's shape (400), checked whole before anything is written.

`GET /metrics` takes the same token (401 without it; Prometheus' scrape config sends it
with `authorization: {credentials_file: ...}`), and GET alone (405). It answers in
Prometheus' text format (version 0.0.4) the last run per playbook and host, and each
scheduled job's last success and the longest it may go without one
(runner.monitoring.metrics says what each gauge means). The body is worked out from the
ledger at most once per `metrics_ttl` seconds, reading only the entries appended since the
last time; scrapes take none of the slots of `POST /alerts` and never wait on it. A
schedules file that cannot be read leaves the job metrics out (said once in the log); a
ledger that cannot be read is a 503.

Notifications repeat by design: Alertmanager re-sends firing alerts every
`repeat_interval`, retries a notification that failed, and a replayed request carries the
same bytes. An alert already recorded in a state writes nothing the second time (the
ledger checks under its append lock), and the answer is still 200, saying how many alerts
were new: Alertmanager must not retry what is already safe.

Why the standard library's ThreadingHTTPServer: no dependency to install on a monitoring
host, and the load is small (Alertmanager batches alerts into a few notifications a
minute). Its limits are set here: a timeout on every connection, so a client that stops
sending holds a thread for seconds, not forever; a bounded number of requests reading
bodies and writing to the ledger at once (503 beyond, which Alertmanager retries); one
request per connection. Labels, annotations and URLs pass through the redactor, as other
free text does, before they are stored; the token is a known secret to it.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import signal
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from runner.core.errors import BadOptions, UserError
from runner.ledger.redact import Redactor, secret_values
from runner.ledger.store import AlreadyRecorded, Ledger
from runner.monitoring.incidents import FIRED, RESOLVED, incident_id
from runner.monitoring.metrics import CACHE_S, CONTENT_TYPE, JobLimits, Metrics, MetricsUnavailable

PATH = "/alerts"
METRICS_PATH = "/metrics"
# Alertmanager's notifications are a few KiB; 256 KiB holds hundreds of alerts.
MAX_BODY = 256 * 1024
# Requests reading a body or writing to the ledger at once; more are answered 503.
MAX_ACTIVE = 16
# Seconds a client may take to send its request (or to read the answer) on a connection.
REQUEST_TIMEOUT_S = 10.0
# The whole of a request, however slowly its bytes trickle in: then its connection is shut.
REQUEST_DEADLINE_S = 30.0
# Connections open at once (each a thread); more are closed at once, unanswered.
MAX_CONNECTIONS = 64
# After refusing a request whose body was not read, what is read and thrown away before
# closing (at most this much, for at most this long), so the client receives the answer
# instead of a reset connection. Nothing of it is kept.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_S = 2.0
# A shared token shorter than this is refused at start.
MIN_TOKEN_LENGTH = 16
# The systemd credentials the unit loads (`techops alerts install --systemd`).
TOKEN_CREDENTIAL = "techops-alerts-token"  # noqa: S105 (a name, not a token)
TLS_KEY_CREDENTIAL = "techops-alerts-tls-key"
PAYLOAD_VERSION = "4"
# Alertmanager's fingerprint is 16 hex digits; anything this shape is accepted.
_FINGERPRINT = re.compile(r"[0-9A-Za-z]{1,64}")
# Go's zero time, which Alertmanager sends as the end of an alert that has none.
_NO_TIME_BEFORE_YEAR = 2


class BadPayload(ValueError):
    """A body that is not Alertmanager's webhook payload: the reason, without its content."""


# ---------------------------------------------------------------------- the token


def credential(given: str | None, name: str) -> Path | None:
    """The file an option names, else the systemd credential of that name when the unit
    loaded one ($CREDENTIALS_DIRECTORY), else None."""
    if given:
        return Path(given)
    loaded = os.environ.get("CREDENTIALS_DIRECTORY")
    if loaded and (Path(loaded) / name).is_file():
        return Path(loaded) / name
    return None


def _in_credentials(path: Path) -> bool:
    """Whether a file is one systemd loaded for this service. Its mode is systemd's own
    (0400, with an ACL for the service's user when that is not root, which shows as a
    group bit): the directory is readable by the service alone."""
    loaded = os.environ.get("CREDENTIALS_DIRECTORY")
    if not loaded:
        return False
    try:
        return path.resolve().parent == Path(loaded).resolve()
    except OSError:
        return False


def read_token(path: Path) -> str:
    """The shared token, or one line saying why the receiver will not start: the file
    must exist, be a regular file readable by its owner only, and hold a token of at least
    MIN_TOKEN_LENGTH characters (surrounding whitespace is dropped, as Alertmanager drops
    it from its credentials_file)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"token file {path} does not exist") from None
    except OSError as exc:
        raise UserError(f"token file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"token file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and not _in_credentials(path):
        raise UserError(
            f"token file {path} is open to its group or others (mode {mode:04o}): chmod 600 {path}"
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UserError(f"token file {path}: {reason}") from None
    if not token:
        raise UserError(f"token file {path} is empty")
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise UserError(
            f"token file {path}: the token must be one word of at least {MIN_TOKEN_LENGTH} "
            "characters (e.g. openssl rand -hex 32)"
        )
    return token


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """A server TLS context (1.2 at least); with a client CA, clients must present a
    certificate it signed (mutual TLS), in addition to the token."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"cannot load the TLS certificate, key or client CA: {exc}") from None
    return context


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT; port 0 asks the kernel for a free one."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535 or "[" in host:
        raise BadOptions(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:9095 or [::1]:9095")
    return host, int(port)


# ---------------------------------------------------------------------- the payload


@dataclass(frozen=True)
class Alert:
    """One alert of a notification, as checked."""

    status: str
    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str

    @property
    def incident(self) -> str:
        return incident_id(self.fingerprint, self.starts_at)


@dataclass(frozen=True)
class Notification:
    """One webhook notification, as checked."""

    receiver: str
    status: str
    group_key: str
    external_url: str
    truncated: int
    alerts: list[Alert] = field(default_factory=list)


def _reject_constant(name: str) -> NoReturn:
    raise BadPayload(f"the body is not JSON: {name} is not a JSON value")


def _strings(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadPayload(f"{where} must be an object of strings")
    return dict(value)


def _text(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadPayload(f"{where}{key} must be a string")
    return value


def _time(value: Any, where: str) -> datetime | None:
    """An RFC 3339 time as UTC; None for Go's zero time (an end not set)."""
    if not isinstance(value, str):
        raise BadPayload(f"{where} must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadPayload(f"{where} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise BadPayload(f"{where} has no zone offset")
    if parsed.year < _NO_TIME_BEFORE_YEAR:
        return None
    return parsed.astimezone(UTC)


def _alert(data: Any, index: int) -> Alert:
    where = f"alerts[{index}]."
    if not isinstance(data, dict):
        raise BadPayload(f"alerts[{index}] must be an object")
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise BadPayload(f"{where}status must be firing or resolved")
    fingerprint = data.get("fingerprint")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise BadPayload(f"{where}fingerprint must be Alertmanager's fingerprint of the alert")
    starts_at = _time(data.get("startsAt"), f"{where}startsAt")
    if starts_at is None:
        raise BadPayload(f"{where}startsAt must be set")
    ends_at = _time(data.get("endsAt", "0001-01-01T00:00:00Z"), f"{where}endsAt")
    if status == "resolved" and ends_at is None:
        raise BadPayload(f"{where}endsAt must be set for a resolved alert")
    return Alert(
        status=status,
        fingerprint=fingerprint,
        starts_at=starts_at,
        ends_at=ends_at,
        labels=_strings(data.get("labels"), f"{where}labels"),
        annotations=_strings(data.get("annotations", {}), f"{where}annotations"),
        generator_url=_text(data, "generatorURL", where),
    )


def parse_payload(body: bytes) -> Notification:
    """Alertmanager's webhook payload, checked whole; BadPayload says what is wrong
    without quoting the body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("the body is not UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except BadPayload:
        raise
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deep"
        raise BadPayload(f"the body is not JSON: {reason}") from None
    if not isinstance(data, dict):
        raise BadPayload("the body must be a JSON object")
    if data.get("version") != PAYLOAD_VERSION:
        raise BadPayload(
            f'version must be "{PAYLOAD_VERSION}" (Alertmanager\'s webhook payload version)'
        )
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise BadPayload("status must be firing or resolved")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload("alerts must be a list")
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if key in data:
            _strings(data[key], key)
    truncated = data.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise BadPayload("truncatedAlerts must be a count")
    return Notification(
        receiver=_text(data, "receiver", "", required=True),
        status=status,
        group_key=_text(data, "groupKey", ""),
        external_url=_text(data, "externalURL", ""),
        truncated=truncated,
        alerts=[_alert(alert, i) for i, alert in enumerate(alerts)],
    )


# ---------------------------------------------------------------------- the ledger


class IncidentWriter:
    """Appends each alert of a notification as its incident's entry, once per state."""

    def __init__(self, ledger: Ledger, redactor: Redactor) -> None:
        self.ledger = ledger
        self.redactor = redactor

    def body(self, alert: Alert, notification: Notification, remote: str) -> dict[str, Any]:
        clean = self.redactor
        return {
            "incident": alert.incident,
            "status": alert.status,
            "fingerprint": alert.fingerprint,
            "starts_at": alert.starts_at.isoformat(timespec="microseconds"),
            "ends_at": alert.ends_at.isoformat(timespec="microseconds") if alert.ends_at else None,
            "labels": clean.data(alert.labels),
            "annotations": clean.data(alert.annotations),
            "generator_url": clean.text(alert.generator_url),
            "receiver": clean.text(notification.receiver),
            "group_key": clean.text(notification.group_key),
            "external_url": clean.text(notification.external_url),
            "received_from": remote,
        }

    def record(self, notification: Notification, remote: str) -> int:
        """How many of the notification's alerts were new: each incident's firing is
        recorded once, and its resolution once, in whatever order they arrive (a retry can
        deliver a firing after the resolution; the incident stays resolved)."""
        new = 0
        for alert in notification.alerts:
            kind = FIRED if alert.status == "firing" else RESOLVED
            body = self.body(alert, notification, remote)
            try:
                self.ledger.append(kind, alert.incident, body, unless=(kind,))
            except AlreadyRecorded:
                continue
            new += 1
        return new


# ---------------------------------------------------------------------- the server


class Receiver(ThreadingHTTPServer):
    """The HTTP server: its token, limits and writer, shared by the request threads."""

    # In-flight requests finish before the server closes (a graceful stop): request
    # threads are waited for, not killed. Each is bounded by REQUEST_TIMEOUT_S.
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        token: str,
        writer: IncidentWriter,
        metrics: Metrics,
        max_body: int = MAX_BODY,
        max_active: int = MAX_ACTIVE,
        tls: ssl.SSLContext | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.token = token.encode()
        self.writer = writer
        self.metrics = metrics
        self.max_body = max_body
        self.slots = threading.BoundedSemaphore(max_active)
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.tls = tls
        self._log = log or _print
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, but never more than MAX_CONNECTIONS: a client that
        opens connections and trickles bytes cannot pile up threads."""
        if not self.connections.acquire(blocking=False):
            self.log(f"alerts: {client_address[0]} refused: {MAX_CONNECTIONS} connections open")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def server_bind(self) -> None:
        super().server_bind()
        if self.tls is not None:
            # The handshake happens in the request's thread (Handler.setup), under the
            # request timeout, never in the thread that accepts connections.
            self.socket = self.tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"{'https' if self.tls else 'http'}://{shown}:{port}{PATH}"

    def log(self, line: str) -> None:
        self._log(line)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed outside the handler's own answers (a TLS handshake, a
        connection reset): one line, and the server goes on."""
        exc = sys.exc_info()[1]
        address = client_address[0] if client_address else "?"
        self.log(f"alerts: {address} connection failed: {type(exc).__name__}: {exc}")


_print_lock = threading.Lock()


def printable(text: str) -> str:
    """Text with its control characters escaped: a path or a label sent by a client must
    not drive the terminal that shows the log."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _print(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


class Handler(BaseHTTPRequestHandler):
    """One request. Every answer is JSON but the metrics; the log line names the client,
    method, path (without its query), status and what was recorded, never the token or
    the body."""

    server: Receiver
    server_version = "techops-alerts"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.0"  # one request per connection

    def setup(self) -> None:
        # The per-read timeout does not bound a client that sends a byte every few
        # seconds: past the deadline, its connection is shut and its thread ends.
        self._deadline = threading.Timer(REQUEST_DEADLINE_S, self._expire)
        self._deadline.daemon = True
        self._deadline.start()
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()
        self._started = time.monotonic()
        self._outcome = ""

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def _expire(self) -> None:
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ methods
    def do_POST(self) -> None:
        if self._path() != PATH:
            self._other()
            return
        if not self._authorized():
            self._unauthorized()
            return
        length = self._length()
        if length is None:
            return
        if not self.server.slots.acquire(blocking=False):
            self._answer(503, {"error": "busy: try again"}, {"Retry-After": "5"})
            return
        try:
            self._receive(length)
        finally:
            self.server.slots.release()

    def do_GET(self) -> None:
        if self._path() != METRICS_PATH:
            self._other()
            return
        if not self._authorized():
            self._unauthorized()
            return
        self._metrics()

    def _other(self) -> None:
        path = self._path()
        if path == PATH:
            self._answer(405, {"error": f"{PATH} takes POST only"}, {"Allow": "POST"})
        elif path == METRICS_PATH:
            self._answer(405, {"error": f"{METRICS_PATH} takes GET only"}, {"Allow": "GET"})
        else:
            self._answer(
                404,
                {
                    "error": f"not found: Alertmanager posts to {PATH}, "
                    f"Prometheus scrapes {METRICS_PATH}"
                },
            )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _other

    def _unauthorized(self) -> None:
        self._answer(
            401,
            {"error": "a valid Authorization: Bearer token is required"},
            {"WWW-Authenticate": 'Bearer realm="techops-alerts"'},
        )

    # ------------------------------------------------------------------ checks
    def _path(self) -> str:
        return urlsplit(self.path).path

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            given = ""
        # compare_digest takes the same time whatever the bytes, wrong or right.
        return hmac.compare_digest(given.strip().encode(), self.server.token)

    def _length(self) -> int | None:
        """The body's announced length, or None once the request was refused for it."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            self._answer(415, {"error": "the body must be application/json"})
            return None
        if self.headers.get("Transfer-Encoding"):
            self._answer(411, {"error": "a Content-Length is required, not a chunked body"})
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            self._answer(411, {"error": "a Content-Length is required"})
            return None
        if not re.fullmatch(r"[0-9]{1,12}", text.strip()):
            self._answer(400, {"error": "Content-Length is not a number"})
            return None
        length = int(text)
        if length > self.server.max_body:
            self._answer(413, {"error": f"the body is over {self.server.max_body} bytes: not read"})
            return None
        return length

    def _receive(self, length: int) -> None:
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            # 503, not 408: Alertmanager retries 5xx answers only.
            self._answer(503, {"error": "the body did not arrive in time"}, body_read=True)
            return
        if len(body) < length:
            self._answer(
                400, {"error": "the body is shorter than its Content-Length"}, body_read=True
            )
            return
        try:
            notification = parse_payload(body)
        except BadPayload as exc:
            self._answer(400, {"error": str(exc)}, body_read=True)
            return
        try:
            new = self.server.writer.record(notification, self.client_address[0])
        except UserError as exc:
            # The ledger could not be written (locked too long, unreachable): Alertmanager
            # retries, and what was written already is not written twice.
            self.server.log(f"alerts: ledger: {exc}")
            self._answer(503, {"error": "the ledger cannot be written now"}, body_read=True)
            return
        total = len(notification.alerts)
        self._outcome = f" alerts={total} new={new}"
        if notification.truncated:
            # Alertmanager's max_alerts left these out: they never reached the receiver.
            self._outcome += f" truncated={notification.truncated}"
        self._answer(
            200,
            {"alerts": total, "new": new, "already_recorded": total - new},
            body_read=True,
        )

    def _metrics(self) -> None:
        """The metrics, worked out now or kept from a scrape a moment ago. A GET carries
        no body: nothing is left unread."""
        try:
            body, worked_out = self.server.metrics.scrape(wait=REQUEST_TIMEOUT_S)
        except MetricsUnavailable as exc:
            self._answer(503, {"error": str(exc)}, {"Retry-After": "15"}, body_read=True)
            return
        self._outcome = f" metrics={'new' if worked_out else 'kept'} bytes={len(body)}"
        self._send(200, body, CONTENT_TYPE, body_read=True)

    # ------------------------------------------------------------------ answers
    def _answer(
        self,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        body_read: bool = False,
    ) -> None:
        data = (json.dumps(payload) + "\n").encode()
        self._send(status, data, "application/json", headers, body_read=body_read)

    def _send(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        *,
        body_read: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()
        if not body_read:
            self._linger()

    def _linger(self) -> None:
        """Read and drop what the client still sends (bounded in bytes and time) after an
        answer given without reading its body: closing on unread data makes the kernel
        reset the connection, and the client would lose the answer. The answer is complete
        first (the write side is shut), so a client that reads it and closes ends this."""
        left = LINGER_BYTES
        deadline = time.monotonic() + LINGER_S
        with contextlib.suppress(OSError, ValueError):
            self.connection.shutdown(socket.SHUT_WR)
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        elapsed = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
        method = getattr(self, "command", None) or "-"
        path = printable(self._path()) if getattr(self, "path", None) else "-"
        self.server.log(
            f"alerts: {self.client_address[0]} {method} {path} {code}"
            f"{getattr(self, '_outcome', '')} ({elapsed:.0f} ms)"
        )

    def log_error(self, format: str, *args: Any) -> None:
        """The base class's errors come with an answer, which log_request logs; a request
        whose line or headers did not arrive in time has none, and is logged here."""
        if format.startswith("Request timed out"):
            self.server.log(f"alerts: {self.client_address[0]} request timed out")

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing else is logged: the base class would print the request line as sent."""


# ---------------------------------------------------------------------- serving


def make_server(
    address: tuple[str, int],
    *,
    token: str,
    ledger: Ledger,
    max_body: int = MAX_BODY,
    max_active: int = MAX_ACTIVE,
    tls: ssl.SSLContext | None = None,
    log: Callable[[str], None] | None = None,
    schedules: JobLimits | None = None,
    metrics_ttl: float = CACHE_S,
) -> Receiver:
    """A receiver bound to `address` (port 0: any free port), not yet serving.
    `schedules` gives the jobs /metrics reports on (without it, no job metrics)."""
    if max_body < 1:
        raise BadOptions(f"--max-body must be at least 1 (got {max_body})")
    redactor = Redactor(secret_values(dict(os.environ)) | {token})
    say = log or _print
    metrics = Metrics(
        ledger,
        redactor,
        jobs=schedules,
        ttl=metrics_ttl,
        log=lambda line: say(printable(line)),
    )
    server_class: type[Receiver] = Receiver
    if ":" in address[0]:
        server_class = type("Receiver6", (Receiver,), {"address_family": socket.AF_INET6})
    try:
        return server_class(
            address,
            token=token,
            writer=IncidentWriter(ledger, redactor),
            metrics=metrics,
            max_body=max_body,
            max_active=max_active,
            tls=tls,
            log=log,
        )
    except OSError as exc:
        raise UserError(
            f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
        ) from None


def serve(server: Receiver) -> int:
    """Serve until SIGTERM or SIGINT; then stop accepting, let the requests in flight
    finish, and return 0."""
    stopping = threading.Event()

    def stop(*_: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever to return: never from its own thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    server.log(f"alerts: listening on {server.url} (body limit {server.max_body} bytes)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    server.log("alerts: stopped")
    return 0
