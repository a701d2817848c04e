"""A fake Prometheus on 127.0.0.1 for the capacity report: /api/v1/query_range answers the
report's own queries from functions of time, or fails the way it is told to.

It evaluates each series at start, start + step, ... up to end, as Prometheus does; a
function that returns None there leaves the point out (the host was not measured). A
query the report does not make is refused as Prometheus refuses a bad one, so a query
changed on one side only fails the tests."""

from __future__ import annotations

import json
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runner.monitoring.capacity import queries

Value = Callable[[float], float | None]


@dataclass
class Failure:
    """An answer instead of the data: a status, a body and its content type."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass
class FakePrometheus:
    """Series per query name (the keys of `capacity.queries`), each as labels and a value
    at a time; `failure` answers every request instead; `delay` holds each answer back."""

    series: dict[str, list[tuple[dict[str, str], Value]]] = field(default_factory=dict)
    failure: Failure | None = None
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def add(self, name: str, labels: dict[str, str], value: Value) -> None:
        self.series.setdefault(name, []).append((labels, value))

    def answer(self, params: dict[str, str]) -> tuple[int, bytes, str]:
        if self.failure is not None:
            f = self.failure
            return f.status, f.body, f.content_type
        try:
            start, end, step = (float(params[k]) for k in ("start", "end", "step"))
        except (KeyError, ValueError):
            return _error(400, "bad_data", "invalid parameter")
        names = {query: name for name, query in queries(int(step)).items()}
        name = names.get(params.get("query", ""))
        if name is None:
            return _error(400, "bad_data", f"unexpected query {params.get('query')!r}")
        result = []
        for labels, value in self.series.get(name, []):
            values = []
            t = start
            while t <= end:
                v = value(t)
                if v is not None:
                    values.append([t, repr(float(v))])
                t += step
            if values:
                result.append({"metric": labels, "values": values})
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return 200, json.dumps(body).encode(), "application/json"


def _error(status: int, kind: str, message: str) -> tuple[int, bytes, str]:
    body = {"status": "error", "errorType": kind, "error": message}
    return status, json.dumps(body).encode(), "application/json"


@contextmanager
def serving(fake: FakePrometheus) -> Iterator[FakePrometheus]:
    """The fake, listening on a free loopback port until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(parts.query))
            fake.requests.append(
                {"path": parts.path, **params, "authorization": self.headers.get("Authorization")}
            )
            if fake.delay:
                time.sleep(fake.delay)
            if parts.path != "/api/v1/query_range":
                status, body, kind = 404, b"404 page not found", "text/plain"
            else:
                status, body, kind = fake.answer(params)
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as a timeout test wants it to

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A short poll, so that stopping it does not wait half a second per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ---------------------------------------------------------------------- a synthetic fleet

END = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
START = END - timedelta(days=7)
STEP = 3600
DAY = 86400.0
GB = 1e9
MiB = 2**20
GiB = 2**30
# The staircase filesystem, as the lab test fills one: STAIR bytes every STAIR_EVERY.
STAIR, STAIR_EVERY = 64 * MiB, 6 * 3600


def days(t: float) -> float:
    """Days since the period's start."""
    return (t - START.timestamp()) / DAY


def jitter(t: float, amplitude: float, seed: int = 1) -> float:
    """Noise that is the same at the same time in every run."""
    return random.Random(int(t) * 7919 + seed).uniform(-amplitude, amplitude)  # noqa: S311


def constant(value: float) -> Value:
    return lambda t: value


def since_hours(hours: float, value: Value) -> Value:
    """A series that starts `hours` before the period's end (a host added lately)."""
    first = END.timestamp() - hours * 3600
    return lambda t: value(t) if t >= first else None


def host(fake: FakePrometheus, instance: str, nodename: str | None, **measures: Value) -> None:
    """One host's series: cpu and memory as ratios (0 to 1), cores, memory_total, and its
    network and filesystems added by the caller."""
    job = {"instance": instance, "job": "node"}
    if nodename is not None:
        fake.add("uname", {**job, "nodename": nodename, "sysname": "Linux"}, constant(1))
    for name in ("cpu", "memory"):
        if name in measures:
            fake.add(name, {"instance": instance} if name == "cpu" else job, measures[name])
    if "cores" in measures:
        fake.add("cores", {"instance": instance}, measures["cores"])
    if "memory_total" in measures:
        fake.add("memory_total", job, measures["memory_total"])


def filesystem(
    fake: FakePrometheus,
    instance: str,
    mountpoint: str,
    size: float,
    used: Value,
    device: str = "/dev/sda1",
    fstype: str = "ext4",
) -> None:
    labels = {
        "instance": instance,
        "job": "node",
        "device": device,
        "fstype": fstype,
        "mountpoint": mountpoint,
    }

    def avail(t: float) -> float | None:
        u = used(t)
        return None if u is None else size - u

    fake.add("fs_size", labels, lambda t: size if used(t) is not None else None)
    fake.add("fs_avail", labels, avail)


def network(fake: FakePrometheus, instance: str, device: str, rx: Value, tx: Value) -> None:
    labels = {"instance": instance, "job": "node", "device": device}
    fake.add("net_receive", labels, rx)
    fake.add("net_transmit", labels, tx)


def staircase(t: float) -> float:
    """A tmpfs filled STAIR at a time, every STAIR_EVERY, from 256 MiB."""
    return 256 * MiB + STAIR * math.floor((t - START.timestamp()) / STAIR_EVERY)


def fleet() -> FakePrometheus:
    """Four hosts whose every filesystem and trend has a known answer:

    - app1: `/` grows 2 GB a day (with noise) from 50 of 100 GB: full 18 days after the
      end; `/srv/www` is the same device bound again; `/srv/lab-fill`, a 4 GiB tmpfs,
      fills in steps as the lab test does (full 8 days after the end); `/run`, a cgroup
      and a snap are left out by default; `lo` is left out of the network.
    - db1: CPU rising from 60% by 3 points a day; `/` flat, `/var/lib/postgresql`
      shrinking, `/data` growing too slowly to date, `/scratch` a daily sawtooth with no
      trend, `/full` full.
    - idle1: little CPU and memory, flat: capacity to spare.
    - 10.0.0.4:9100: measured for the last five hours only, with no node_uname_info.
    """
    fake = FakePrometheus()
    app1 = "10.0.0.1:9100"
    host(
        fake,
        app1,
        "app1",
        cpu=lambda t: 0.30 + 0.05 * math.sin(2 * math.pi * days(t)),
        memory=lambda t: 0.45 + jitter(t, 0.01),
        cores=constant(4),
        memory_total=constant(8 * GiB),
    )
    network(fake, app1, "eth0", lambda t: 2e6 + jitter(t, 1e5), lambda t: 1e6 + jitter(t, 1e5))
    network(fake, app1, "lo", constant(9e9), constant(9e9))
    root = lambda t: 50 * GB + 2 * GB * days(t) + jitter(t, 0.3 * GB)  # noqa: E731
    filesystem(fake, app1, "/", 100 * GB, root)
    filesystem(fake, app1, "/srv/www", 100 * GB, root)
    filesystem(fake, app1, "/srv/lab-fill", 4 * GiB, staircase, device="tmpfs", fstype="tmpfs")
    filesystem(fake, app1, "/run", GiB, constant(MiB), device="tmpfs", fstype="tmpfs")
    filesystem(fake, app1, "/sys/fs/cgroup", 0.0, constant(0), device="cgroup2", fstype="cgroup2")
    filesystem(fake, app1, "/snap/core/1", 50 * MiB, constant(50 * MiB), "/dev/loop0", "squashfs")

    db1 = "10.0.0.2:9100"
    host(
        fake,
        db1,
        "db1",
        cpu=lambda t: 0.60 + 0.03 * days(t) + jitter(t, 0.02),
        memory=constant(0.70),
        cores=constant(8),
        memory_total=constant(32 * GiB),
    )
    network(fake, db1, "eth0", constant(5e5), constant(5e5))
    filesystem(fake, db1, "/", 50 * GB, constant(20 * GB))
    filesystem(
        fake, db1, "/var/lib/postgresql", 200 * GB, lambda t: 100 * GB - GB * days(t), "/dev/sdb1"
    )
    filesystem(fake, db1, "/data", 1000 * GB, lambda t: 500 * GB + 0.1 * GB * days(t), "/dev/sdc1")
    filesystem(
        fake,
        db1,
        "/scratch",
        100 * GB,
        lambda t: 50 * GB + 0.05 * GB * days(t) + 5 * GB * (days(t) % 1),
        "/dev/sdd1",
    )
    filesystem(fake, db1, "/full", 10 * GB, constant(10 * GB), "/dev/sde1")

    idle1 = "10.0.0.3:9100"
    host(
        fake,
        idle1,
        "idle1",
        cpu=lambda t: 0.03 + jitter(t, 0.005),
        memory=lambda t: 0.10 + jitter(t, 0.005),
        cores=constant(2),
        memory_total=constant(4 * GiB),
    )
    filesystem(fake, idle1, "/", 20 * GB, constant(5 * GB))

    new = "10.0.0.4:9100"
    host(fake, new, None, cpu=since_hours(5, constant(0.2)), memory=since_hours(5, constant(0.3)))
    filesystem(fake, new, "/", 20 * GB, since_hours(5, lambda t: 5 * GB + GB * days(t)))
    return fake
