"""What the receiver's `GET /metrics` tells Prometheus: the last run per playbook and host,
the last success of each scheduled job and how long it may go without one.

The gauges, in Prometheus' text exposition format (version 0.0.4):

- `techops_run_last_timestamp_seconds{playbook,host}`: when the last recorded run of the
  playbook (its repository-relative path, as the run's `run.started` entry holds it) that
  included the host ended, in Unix seconds: the time of the run's terminal entry
  (`run.finished`, or `run.interrupted` for a run whose process died). "Last" is the run
  whose end the ledger recorded last; a run still going is not counted until it ends.
- `techops_run_last_success{playbook,host}`: 1 if that run succeeded for that host, else
  0. Per host, from the outcome the run's end recorded for it (its `playbook_on_stats`
  counters): ok, changed, rescued or skipped is a success, failed or unreachable is not,
  as the compliance report reads it. A run that did not reach its end (canceled, timed
  out, interrupted, an error) counts as a failure for every host it had locked, and for
  every host it has an outcome for.
- `techops_job_last_success_timestamp_seconds{job_name}`: when the last successful run of
  the schedules file's job ended (a run is the job's when its `run.started` entry says the
  schedule of that name started it; successful is its run-level status). A job that never
  succeeded has no sample.
- `techops_job_max_interval_seconds{job_name}`: the longest the job may go between two
  successful runs when it runs as scheduled (runner.scheduling.model.Job.max_interval: its
  longest gap between starts plus its misfire grace, its max_runtime and a few minutes).
  A disabled job has no sample.
- `techops_metrics_generated_timestamp_seconds`: when this body was worked out.

A job is overdue when `time() - techops_job_last_success_timestamp_seconds >
techops_job_max_interval_seconds`, or never succeeded when its max interval has no
success beside it. The label is `job_name`: Prometheus gives every series a `job` label
of its own, the scrape job's.

The runs are read from the ledger once, then only the entries appended since (the ledger
is append-only; one that was replaced is read again whole), and only the kinds that start
and end runs. The rendered body is kept for a few seconds: scrapes in between read
nothing. A schedules file that cannot be read leaves the job metrics out, says why once,
and the run metrics are served all the same. Label values pass through the receiver's
redactor.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.core.errors import UserError
from runner.ledger.redact import Redactor
from runner.ledger.store import TERMINAL_KINDS, Entry, Ledger
from runner.reports.compliance import OK_OUTCOMES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# How long a rendered body is served before the ledger is read again.
CACHE_S = 15.0
# The entries that start and end runs: all the run metrics need.
RUN_KINDS = ("run.started", *TERMINAL_KINDS)
# The statuses of a run that reached its end, whose per-host outcomes are final.
COMPLETED = ("successful", "failed")

# Each job of the schedules file and the longest it may go without a success (None: no
# limit). Raises when the file cannot be read.
JobLimits = Callable[[], Mapping[str, timedelta | None]]


class MetricsUnavailable(Exception):
    """No body can be served now: the reason for the client, without detail."""


# ---------------------------------------------------------------------- the format


@dataclass
class Family:
    """One metric: its name, help and type, and its samples by label values."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    type: str = "gauge"
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)

    def add(self, values: tuple[str, ...], value: float) -> None:
        self.samples[values] = value


def escape_label(value: str) -> str:
    """A label value as the text format writes it between double quotes: backslash,
    double quote and newline escaped, and valid UTF-8 (a lone surrogate, which JSON text
    can carry, would make the whole body unreadable)."""
    text = value.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value as Go's ParseFloat reads it back exactly."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(families: Iterable[Family]) -> str:
    """The families in the text format: each one's HELP and TYPE, then its samples in
    the order of their label values."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for values, value in sorted(family.samples.items()):
            labels = ",".join(
                f'{name}="{escape_label(text)}"'
                for name, text in zip(family.labels, values, strict=True)
            )
            series = f"{family.name}{{{labels}}}" if labels else family.name
            lines.append(f"{series} {number(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class HostRun:
    """The last run of a playbook that included a host: when it ended, and whether it
    succeeded for the host."""

    ended: float
    success: bool


@dataclass(frozen=True)
class _Open:
    """A run started and not yet ended: what its end is read with."""

    playbook: str
    job: str | None
    locked: tuple[str, ...]


def unix_seconds(created: str) -> float | None:
    """An entry's time (ISO 8601, UTC) in Unix seconds; None if it is not one."""
    try:
        moment = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _started(body: dict[str, Any]) -> _Open:
    playbook = body.get("playbook")
    who = body.get("who")
    job = None
    if isinstance(who, dict) and who.get("kind") == "schedule" and isinstance(who.get("name"), str):
        job = who["name"]
    locked = body.get("hosts")
    return _Open(
        playbook=playbook if isinstance(playbook, str) else "",
        job=job,
        locked=tuple(h for h in locked if isinstance(h, str)) if isinstance(locked, list) else (),
    )


def host_results(status: Any, outcomes: Any, locked: Iterable[str]) -> dict[str, bool]:
    """Per host a run included, whether it succeeded there (see the module's docstring)."""
    completed = status in COMPLETED
    results: dict[str, bool] = {}
    for host, result in (outcomes if isinstance(outcomes, dict) else {}).items():
        if isinstance(host, str):
            outcome = result.get("outcome") if isinstance(result, dict) else None
            results[host] = completed and outcome in OK_OUTCOMES
    if not completed:
        for host in locked:
            results.setdefault(host, False)
    return results


class RunIndex:
    """The last run per (playbook, host) and the last success per scheduled job, kept
    up to date from the entries appended since the last look. Not thread-safe: its owner
    serialises updates."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reset()

    def reset(self) -> None:
        # The last entry read, (seq, hash): where the next look starts, and how it sees
        # that the ledger it reads is still the one it read.
        self.seen: tuple[int, str] | None = None
        self.open: dict[str, _Open] = {}
        self.hosts: dict[tuple[str, str], HostRun] = {}
        self.jobs: dict[str, float] = {}

    def update(self) -> int:
        """Read what was appended since the last look; how many entries were read.
        Raises UserError when the ledger cannot be read."""
        new = self._since_seen()
        for entry in new:
            self._take(entry)
            self.seen = (entry.seq, entry.hash)
        return len(new)

    def _since_seen(self) -> list[Entry]:
        if self.seen is None:
            return list(self.ledger.entries(kinds=RUN_KINDS))
        seq, digest = self.seen
        # From the last entry read on, itself included: still there, unchanged, or the
        # ledger was replaced (restored from a backup, another file) and is read whole.
        found = list(self.ledger.entries(kinds=RUN_KINDS, since_seq=seq - 1))
        if found and found[0].seq == seq and found[0].hash == digest:
            return found[1:]
        self.reset()
        return list(self.ledger.entries(kinds=RUN_KINDS))

    def _take(self, entry: Entry) -> None:
        body = entry.body if isinstance(entry.body, dict) else {}
        if entry.kind == "run.started":
            self.open.setdefault(entry.run_id, _started(body))
            return
        # A run's first terminal entry is its end; one for a run not open (a second end,
        # an end without a start) is a forgery `techops audit verify` names.
        run = self.open.pop(entry.run_id, None)
        ended = unix_seconds(entry.created)
        if run is None or ended is None:
            return
        status = body.get("status", entry.kind.removeprefix("run."))
        if run.playbook:
            for host, success in host_results(status, body.get("hosts"), run.locked).items():
                self.hosts[(run.playbook, host)] = HostRun(ended, success)
        if run.job is not None and status == "successful":
            self.jobs[run.job] = ended


# ---------------------------------------------------------------------- the body


def _run_families(index: RunIndex, clean: Redactor) -> list[Family]:
    last = Family(
        "techops_run_last_timestamp_seconds",
        "When the last recorded run of the playbook that included the host ended (Unix seconds).",
        ("playbook", "host"),
    )
    success = Family(
        "techops_run_last_success",
        "1 if the last recorded run of the playbook that included the host succeeded for "
        "the host, else 0.",
        ("playbook", "host"),
    )
    # Redaction can make two label sets one: the later run speaks for both.
    shown: dict[tuple[str, str], HostRun] = {}
    for (playbook, host), run in index.hosts.items():
        key = (clean.text(playbook), clean.text(host))
        if key not in shown or run.ended >= shown[key].ended:
            shown[key] = run
    for key, run in shown.items():
        last.add(key, run.ended)
        success.add(key, 1.0 if run.success else 0.0)
    return [last, success]


def _job_families(
    index: RunIndex, limits: Mapping[str, timedelta | None], clean: Redactor
) -> list[Family]:
    succeeded = Family(
        "techops_job_last_success_timestamp_seconds",
        "When the last successful run of the scheduled job ended (Unix seconds).",
        ("job_name",),
    )
    interval = Family(
        "techops_job_max_interval_seconds",
        "The longest the scheduled job may go between two successful runs: its schedule's "
        "longest gap between starts, plus its misfire grace, max_runtime and a few minutes.",
        ("job_name",),
    )
    for name, limit in limits.items():
        key = (clean.text(name),)
        if name in index.jobs:
            succeeded.add(key, index.jobs[name])
        if limit is not None:
            interval.add(key, limit.total_seconds())
    return [succeeded, interval]


class Metrics:
    """The body `GET /metrics` serves, worked out at most once per `ttl` seconds, one
    scrape at a time; the others wait for it (at most `wait` seconds) and share it."""

    def __init__(
        self,
        ledger: Ledger,
        redactor: Redactor,
        *,
        jobs: JobLimits | None = None,
        ttl: float = CACHE_S,
        log: Callable[[str], None] = print,
    ) -> None:
        self.index = RunIndex(ledger)
        self.redactor = redactor
        self.jobs = jobs
        self.ttl = ttl
        self._log = log
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._fresh_until = 0.0
        self._said: set[str] = set()

    def scrape(self, wait: float) -> tuple[bytes, bool]:
        """The body, and whether it was worked out for this scrape (False: the one kept).
        MetricsUnavailable when another scrape held the work for longer than `wait`, or
        the ledger cannot be read."""
        if not self._lock.acquire(timeout=wait):
            raise MetricsUnavailable("the metrics are being worked out: try again")
        try:
            if self._body is not None and time.monotonic() < self._fresh_until:
                return self._body, False
            try:
                self.index.update()
            except UserError as exc:
                self._say(f"alerts: metrics: {exc}")
                raise MetricsUnavailable("the ledger cannot be read now") from None
            self._body = self._render().encode("utf-8")
            self._fresh_until = time.monotonic() + self.ttl
            return self._body, True
        finally:
            self._lock.release()

    def _render(self) -> str:
        families = _run_families(self.index, self.redactor)
        limits = self._limits()
        if limits is not None:
            families += _job_families(self.index, limits, self.redactor)
        generated = Family(
            "techops_metrics_generated_timestamp_seconds",
            "When these metrics were worked out from the ledger (Unix seconds).",
        )
        generated.add((), time.time())
        return render([*families, generated])

    def _limits(self) -> Mapping[str, timedelta | None] | None:
        """The schedules file's jobs and limits; None (said once per reason) when the file
        cannot be read: the job metrics are left out, the others still served."""
        if self.jobs is None:
            return None
        try:
            return self.jobs()
        except UserError as exc:
            reason = str(exc)
        except Exception as exc:  # whatever a malformed file raises, scrapes go on
            reason = f"unexpected {type(exc).__name__}: {exc}"
        self._say(f"alerts: metrics: schedules: {reason}: job metrics left out")
        return None

    def _say(self, line: str) -> None:
        """Log a line once: a scrape every few seconds must not repeat the same trouble."""
        line = self.redactor.text(" ".join(line.split()))
        if line not in self._said:
            self._said.add(line)
            self._log(line)
