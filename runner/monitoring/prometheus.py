"""A small client for Prometheus's HTTP API: range queries with a timeout, optional
credentials read from a file, and every failure as one line a user can act on.

urllib is enough for a GET with a timeout and a header, and it is already there: the
project depends on no HTTP library, and adding one for this would be a dependency
without a need. Credentials go in a header that is never sent on to another host after
a redirect (`add_unredirected_header`), and no message, repr or report ever holds them.
"""

from __future__ import annotations

import json
import math
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.core.errors import BadOptions, UserError

URL_ENV = "TECHOPS_PROMETHEUS_URL"
# Prometheus refuses a range query that would return more points than this per series.
MAX_POINTS = 11_000
# How much of a message Prometheus sends back a one-line error quotes.
QUOTED_CHARS = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class PrometheusError(UserError):
    """Prometheus could not be asked, or did not answer a range query: one line."""


def one_line(text: str, limit: int = QUOTED_CHARS) -> str:
    """Text from elsewhere (an error Prometheus sent, an OS message) as one printable line:
    no newline breaks the CLI's one-line error and no escape sequence reaches a terminal."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Credentials:
    """The value of the Authorization header: read from a file, never shown."""

    header: str = field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(<hidden>)"


def read_credentials(token_file: str | None, basic_auth_file: str | None) -> Credentials | None:
    """A bearer token (the file's content) or basic auth (`user:password` on the file's
    first line), as Prometheus's own `bearer_token_file` and `password_file` keep them
    out of command lines and shell history. Errors name the file, never its content."""
    if token_file and basic_auth_file:
        raise BadOptions("give a token file or a basic auth file for Prometheus, not both")
    path = token_file or basic_auth_file
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        raise UserError(f"cannot read Prometheus credentials from {path}: {reason}") from None
    if token_file:
        token = text.strip()
        if not token or any(c.isspace() for c in token):
            raise UserError(f"{path} must hold one bearer token, with no space in it")
        return Credentials(f"Bearer {token}")
    line = text.splitlines()[0].strip() if text.strip() else ""
    if ":" not in line or not line.split(":", 1)[0]:
        raise UserError(f"{path} must hold user:password on its first line")
    return Credentials("Basic " + b64encode(line.encode()).decode())


def base_url(given: str | None, env: str | None) -> str:
    """Prometheus's base URL (a path prefix such as /prometheus kept), from the option or
    the environment; credentials in it are refused, since messages show the URL."""
    url = (given or env or "").strip()
    if not url:
        raise BadOptions(f"which Prometheus? give --prometheus URL or set {URL_ENV}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here, not later)
    except ValueError:
        raise BadOptions(f"bad Prometheus URL {one_line(url)!r}") from None
    if parts.username is not None or parts.password is not None:
        raise BadOptions(
            "the Prometheus URL holds credentials: give them in "
            "--prometheus-basic-auth-file or --prometheus-token-file instead"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadOptions(
            f"bad Prometheus URL {one_line(url)!r}: use http(s)://host:port, e.g. "
            "http://prometheus.example:9090"
        )
    if parts.query or parts.fragment:
        raise BadOptions(f"the Prometheus URL {one_line(url)!r} must have no ?query or #fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels, and its samples as (unix time, value), the
    NaN and infinite values Prometheus can return left out."""

    labels: dict[str, str]
    samples: list[tuple[float, float]]


@dataclass
class Prometheus:
    """Where Prometheus is and how to ask it. `warnings` gathers those Prometheus attaches
    to its answers (a partial answer, for one), for the report to show."""

    url: str
    timeout: float = 30.0
    credentials: Credentials | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    def query_range(
        self, query: str, start: datetime, end: datetime, step: int, *, what: str
    ) -> list[Series]:
        """The series `query` evaluates to, every `step` seconds from `start` to `end`.
        `what` names the query in errors ("CPU use")."""
        params = urllib.parse.urlencode(
            {"query": query, "start": start.timestamp(), "end": end.timestamp(), "step": step}
        )
        data = self._get(f"/api/v1/query_range?{params}", what)
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise PrometheusError(
                f"Prometheus at {self.url} answered the query for {what} with something "
                "other than a range result (is it Prometheus's API?)"
            )
        if not isinstance(result, list):
            raise PrometheusError(f"Prometheus at {self.url}: no result list for {what}")
        return [self._series(item, what) for item in result]

    def _series(self, item: Any, what: str) -> Series:
        try:
            labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
            samples = []
            for stamp, text in item.get("values", []):
                value = float(text)
                if math.isfinite(value):
                    samples.append((float(stamp), value))
        except (AttributeError, TypeError, ValueError):
            raise PrometheusError(
                f"Prometheus at {self.url} answered the query for {what} with a series "
                "that is not [time, value] pairs"
            ) from None
        return Series(labels, samples)

    def _get(self, path: str, what: str) -> Any:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked: http or https)
            self.url + path, headers={"Accept": "application/json", "User-Agent": "techops"}
        )
        if self.credentials is not None:
            request.add_unredirected_header("Authorization", self.credentials.header)
        where = f"Prometheus at {self.url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                body = answer.read()
                kind = answer.headers.get("Content-Type") or "no content type"
        except urllib.error.HTTPError as exc:
            raise PrometheusError(self._http_error(exc, what)) from None
        except urllib.error.URLError as exc:
            raise PrometheusError(self._unreachable(exc.reason)) from None
        except TimeoutError:
            raise PrometheusError(self._timed_out()) from None
        except (OSError, ValueError) as exc:  # a connection reset mid-answer, a bad header
            raise PrometheusError(f"{where}: {one_line(str(exc)) or type(exc).__name__}") from None
        try:
            envelope = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PrometheusError(
                f"{where} answered the query for {what} with something that is not JSON "
                f"({one_line(kind, 60)}, {len(body)} bytes): is that Prometheus's base URL?"
            ) from None
        if not isinstance(envelope, dict):
            raise PrometheusError(f"{where} answered the query for {what} with unexpected JSON")
        if envelope.get("status") != "success":
            raise PrometheusError(self._refused(envelope, what))
        for warning in envelope.get("warnings") or []:
            self.warnings.append(f"{what}: {one_line(str(warning))}")
        return envelope.get("data")

    def _refused(self, envelope: dict[str, Any], what: str) -> str:
        kind = one_line(str(envelope.get("errorType") or "unknown error type"), 60)
        error = one_line(str(envelope.get("error") or "no message"))
        return f"Prometheus at {self.url} refused the query for {what} ({kind}): {error}"

    def _http_error(self, exc: urllib.error.HTTPError, what: str) -> str:
        """Prometheus sends its own JSON error with 400, 422 and 503; other answers (a
        proxy's 502, a 401 from an authenticating proxy) are named by their status."""
        try:
            envelope = json.loads(exc.read())
        except (OSError, ValueError):
            envelope = None
        if isinstance(envelope, dict) and envelope.get("status") == "error":
            return self._refused(envelope, what)
        check = ": check --prometheus-token-file or --prometheus-basic-auth-file"
        hint = {401: check, 403: check, 404: ": is that Prometheus's base URL?"}.get(exc.code, "")
        status = " ".join(filter(None, [f"HTTP {exc.code}", one_line(str(exc.reason or ""), 80)]))
        return f"Prometheus at {self.url} answered {status}{hint}"

    def _unreachable(self, reason: Any) -> str:
        if isinstance(reason, TimeoutError):
            return self._timed_out()
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(reason, socket.gaierror):
            why = "no such host"
        elif isinstance(reason, ssl.SSLError):
            why = f"TLS failed ({one_line(getattr(reason, 'reason', None) or str(reason), 120)})"
        elif isinstance(reason, OSError) and reason.strerror:
            why = one_line(reason.strerror, 120)
        else:
            why = one_line(str(reason), 120)
        return f"cannot reach Prometheus at {self.url}: {why} (check --prometheus or {URL_ENV})"

    def _timed_out(self) -> str:
        return (
            f"Prometheus at {self.url} did not answer within {self.timeout:g} s "
            "(raise --prometheus-timeout, or ask for less: a shorter period, a longer --step)"
        )
