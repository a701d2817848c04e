"""The capacity planning report: per host, CPU, memory, network and filesystem use over a
period with their trends; per filesystem, the days until it is full at its current growth;
and a fleet summary of what to add or reclaim first.

It reads Prometheus (node exporter's metrics), not the ledger: it is what hosts measured,
not what runs did. Hosts are the `instance` label every series carries (the one label all
the queries can be joined on), named for people by `node_uname_info`: its `host` label when
a relabelling set one, else its `nodename` (the kernel's hostname, which the base role sets
to the inventory name), else the instance itself.

A forecast is a promise to whoever plans from it, so none is stated that the data cannot
support: too few points, a growth within the noise, a line that explains little of the
variation, or a date far beyond the period measured are said as such, never dated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.core.dates import parse_date
from runner.core.errors import BadOptions, UserError
from runner.monitoring import charts
from runner.monitoring.charts import Band, Chart, Frame, Line, Mark, Rule
from runner.monitoring.prometheus import MAX_POINTS, Prometheus, Series
from runner.monitoring.trend import DAY, Fit, fit, percentile
from runner.reports.render import html, to_csv, to_json

DEFAULT_SINCE = "7d"
DEFAULT_STEP = "5m"
# rate() needs two scrapes in its window; five minutes covers a scrape interval of up to
# two and a half minutes. A longer step widens it, so each point averages its own step.
MIN_RATE_WINDOW = 300
# Pseudo and read-only filesystems that never fill with data. tmpfs is not among them: one
# mounted for data fills like a disk (the ones under /run and /dev are left out by mount).
DEFAULT_FS_EXCLUDE_TYPES = (
    "autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|efivarfs|fusectl|"
    "hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|ramfs|rpc_pipefs|securityfs|"
    "selinuxfs|squashfs|sysfs|tracefs"
)
DEFAULT_FS_EXCLUDE_MOUNTS = r"/(dev|proc|sys|run)(/.*)?|/var/lib/(docker|containers|kubelet)/.+"
DEFAULT_NET_EXCLUDE_DEVICES = "lo"
DEFAULT_MIN_POINTS = 20
DEFAULT_MIN_R2 = 0.5
# Growth over the whole period under this share of the filesystem's size is no growth.
NEGLIGIBLE_GROWTH = 1e-4
# A fill date further than this many times the period measured is not dated.
HORIZON_FACTOR = 4
# How far past the period's end a filesystem chart's time axis may run, in periods.
CHART_REACH = 3
# A host not measured for this long before the end of the period is flagged.
STALE_STEPS = 3

# Statuses of a forecast.
FORECAST, FULL, NOT_GROWING, NO_TREND, TOO_FEW, BEYOND, NO_DATA = (
    "forecast",
    "full",
    "not growing",
    "no trend",
    "too few points",
    "beyond horizon",
    "no data",
)
# Statuses of a trend.
RISING, FALLING = "rising", "falling"

# What each numeric field's name ends with, or is: every number of the JSON has a unit.
UNITS = {
    "_bytes": "bytes",
    "_bytes_per_day": "bytes per day",
    "_bytes_per_second": "bytes per second",
    "_bytes_per_second_per_day": "bytes per second, change per day",
    "_percent": "percent (0 to 100)",
    "_percent_per_day": "percentage points per day",
    "_days": "days",
    "_seconds": "seconds",
    "points": "samples (count)",
    "effective_points": "samples as independent ones, after their correlation (count)",
    "lags": "samples apart whose correlation the interval counts (count)",
    "r2": "coefficient of determination (0 to 1): the share of the variation the line explains",
    "cores": "CPUs (count)",
    "rank": "order (1 first)",
    "min_points": "samples (count)",
    "min_r2": "coefficient of determination (0 to 1)",
    "horizon_factor": "times the period's length",
    "negligible_growth_share": "share of the filesystem's size over the period (0 to 1)",
}


@dataclass(frozen=True)
class Thresholds:
    """What the fleet summary ranks against: a filesystem full within `fill_within_days`
    or above `disk_high_percent` used, a host whose CPU or memory p95 is above its high
    mark (or whose trend reaches it within `fill_within_days`); a host under both low
    marks has capacity to spare."""

    fill_within_days: float = 30
    disk_high_percent: float = 90
    cpu_high_percent: float = 80
    memory_high_percent: float = 90
    cpu_low_percent: float = 10
    memory_low_percent: float = 30


@dataclass(frozen=True)
class Settings:
    """The period, what is left out, and how much data a trend needs."""

    start: datetime
    end: datetime
    step: int  # seconds
    fs_exclude_types: re.Pattern[str] = re.compile(DEFAULT_FS_EXCLUDE_TYPES)
    fs_exclude_mounts: re.Pattern[str] = re.compile(DEFAULT_FS_EXCLUDE_MOUNTS)
    net_exclude_devices: re.Pattern[str] = re.compile(DEFAULT_NET_EXCLUDE_DEVICES)
    min_points: int = DEFAULT_MIN_POINTS
    min_r2: float = DEFAULT_MIN_R2
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def window(self) -> int:
        return max(self.step, MIN_RATE_WINDOW)

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / DAY


# ---------------------------------------------------------------------- the command line

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, option: str) -> int:
    """Seconds of a Prometheus-style duration: 30s, 5m, 1h30m, 7d, 2w."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise BadOptions(f"{option} {text!r}: give a duration such as 30s, 5m, 1h or 7d")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def period(
    since: str | None, until: str | None, step: str | None, now: datetime
) -> tuple[datetime, datetime, int]:
    """The period asked for: --since a duration back from its end (7d) or a date, --until
    a date (its end if bare) or now, every --step; refused when Prometheus would refuse it
    (more than MAX_POINTS points per series) rather than after a round trip."""
    seconds = parse_duration(step or DEFAULT_STEP, "--step")
    if seconds < 1:
        raise BadOptions("--step must be at least 1s")
    end = datetime.fromisoformat(parse_date(until, end_of_day=True)) if until else now
    end = min(end, now)
    since = since or DEFAULT_SINCE
    if re.fullmatch(r"(\d+[smhdw])+", since):
        start = end - timedelta(seconds=parse_duration(since, "--since"))
    else:
        try:
            start = datetime.fromisoformat(parse_date(since))
        except UserError:
            raise BadOptions(
                f"--since {since!r}: give a duration before --until (7d, 12h) or a date "
                "(YYYY-MM-DD or an ISO 8601 date-time)"
            ) from None
    # Aligned on the step, so the same command gives the same points.
    start = datetime.fromtimestamp(math.floor(start.timestamp() / seconds) * seconds, UTC)
    if start >= end:
        raise BadOptions(
            f"the period is empty: --since ({start:%Y-%m-%d %H:%M} UTC) must come before "
            f"--until ({end:%Y-%m-%d %H:%M} UTC)"
        )
    points = (end - start).total_seconds() / seconds + 1
    if points > MAX_POINTS:
        needed = math.ceil((end - start).total_seconds() / (MAX_POINTS - 1) / 60) * 60
        raise BadOptions(
            f"{points:.0f} points per series at --step {step or DEFAULT_STEP}: Prometheus "
            f"answers at most {MAX_POINTS}; use --step {needed // 60}m or more, or a shorter period"
        )
    return start, end, seconds


def pattern(text: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise BadOptions(f"{option} {text!r} is not a regular expression ({exc})") from None


# ---------------------------------------------------------------------- queries


def queries(step: int) -> dict[str, str]:
    """The PromQL of each measure, with node exporter's metric names (as its node-mixin
    uses them). Exclusions are applied here, in Python, with the options' own regular
    expressions, rather than in PromQL, so one syntax holds for all of them."""
    window = f"{max(step, MIN_RATE_WINDOW)}s"
    return {
        "uname": "node_uname_info",
        "cpu": f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{window}]))',
        "cores": 'count by (instance) (node_cpu_seconds_total{mode="idle"})',
        "memory": "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
        "memory_total": "node_memory_MemTotal_bytes",
        "fs_size": "node_filesystem_size_bytes",
        "fs_avail": "node_filesystem_avail_bytes",
        "net_receive": f"rate(node_network_receive_bytes_total[{window}])",
        "net_transmit": f"rate(node_network_transmit_bytes_total[{window}])",
    }


_WHAT = {
    "uname": "host names (node_uname_info)",
    "cpu": "CPU use",
    "cores": "CPU count",
    "memory": "memory use",
    "memory_total": "memory size",
    "fs_size": "filesystem sizes",
    "fs_avail": "filesystem space available",
    "net_receive": "network received",
    "net_transmit": "network transmitted",
}


# ---------------------------------------------------------------------- the model

Samples = list[tuple[float, float]]


@dataclass(frozen=True)
class Trend:
    """A series' trend as the report states it: a status, and the fit behind it."""

    status: str  # rising, falling, no trend, too few points, no data
    fit: Fit | None


@dataclass(frozen=True)
class Forecast:
    """When a filesystem is full at its current growth, or why that is not said."""

    status: str
    reason: str
    days: float | None = None
    earliest_days: float | None = None
    latest_days: float | None = None
    origin: float | None = None  # the time the days count from: the last sample

    def date(self, days: float | None) -> datetime | None:
        if days is None or self.origin is None or not math.isfinite(days):
            return None
        return datetime.fromtimestamp(self.origin + days * DAY, UTC)


@dataclass
class Filesystem:
    instance: str
    mountpoint: str
    device: str
    fstype: str
    used: Samples  # bytes, size - avail at each sample
    size: float
    avail: float
    also_mounted_at: list[str] = field(default_factory=list)
    trend: Trend = Trend(NO_DATA, None)
    forecast: Forecast = Forecast(NO_DATA, "not measured")

    @property
    def used_percent(self) -> float | None:
        return 100 * (self.size - self.avail) / self.size if self.size > 0 else None


@dataclass
class Host:
    instance: str
    name: str
    nodename: str | None
    cores: int | None = None
    memory_total: float | None = None
    cpu: Samples = field(default_factory=list)  # percent
    memory: Samples = field(default_factory=list)  # percent
    receive: Samples = field(default_factory=list)  # bytes per second
    transmit: Samples = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    filesystems: list[Filesystem] = field(default_factory=list)
    trends: dict[str, Trend] = field(default_factory=dict)

    @property
    def last_sample(self) -> float | None:
        stamps = [s[-1][0] for s in (self.cpu, self.memory, self.receive) if s]
        stamps += [fs.used[-1][0] for fs in self.filesystems if fs.used]
        return max(stamps, default=None)


def _longest(series: Iterable[Series]) -> Series | None:
    """Of the series of one instance (scraped by two jobs, say), the most complete."""
    return max(
        series, key=lambda s: (len(s.samples), s.samples[-1][0] if s.samples else 0), default=None
    )


def _by_instance(series: Iterable[Series]) -> dict[str, list[Series]]:
    found: dict[str, list[Series]] = {}
    for one in series:
        instance = one.labels.get("instance")
        if instance and one.samples:
            found.setdefault(instance, []).append(one)
    return found


def _names(uname: list[Series], instances: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """Each instance's name and nodename; two instances of one name (two exporters on one
    machine, a cloned machine) are told apart by their instance."""
    latest = {
        instance: max(group, key=lambda s: s.samples[-1][0]).labels
        for instance, group in _by_instance(uname).items()
    }
    named = {}
    for instance in instances:
        labels = latest.get(instance, {})
        nodename = labels.get("nodename") or None
        named[instance] = (labels.get("host") or nodename or instance, nodename)
    counts: dict[str, int] = {}
    for name, _ in named.values():
        counts[name] = counts.get(name, 0) + 1
    return {
        instance: (
            (f"{name} ({instance})" if counts[name] > 1 and name != instance else name),
            node,
        )
        for instance, (name, node) in named.items()
    }


def _sum_by_time(groups: Iterable[Samples]) -> Samples:
    """Series of one evaluation grid added point by point (a point missing from one
    series adds nothing for it)."""
    total: dict[float, float] = {}
    for samples in groups:
        for t, v in samples:
            total[t] = total.get(t, 0.0) + v
    return sorted(total.items())


def _network(
    series: list[Series], exclude: re.Pattern[str]
) -> tuple[dict[str, Samples], dict[str, list[str]]]:
    per_device: dict[tuple[str, str], list[Series]] = {}
    for one in series:
        instance, device = one.labels.get("instance"), one.labels.get("device", "")
        if instance and one.samples and not exclude.fullmatch(device):
            per_device.setdefault((instance, device), []).append(one)
    chosen: dict[str, list[Samples]] = {}
    devices: dict[str, list[str]] = {}
    for (instance, device), group in sorted(per_device.items()):
        best = _longest(group)
        if best is not None:
            chosen.setdefault(instance, []).append(best.samples)
            devices.setdefault(instance, []).append(device)
    return {i: _sum_by_time(groups) for i, groups in chosen.items()}, devices


def _filesystems(size: list[Series], avail: list[Series], settings: Settings) -> list[Filesystem]:
    """Filesystems of every host but those left out by type or mount point; one entry per
    filesystem, a device mounted twice (a bind mount) listed under its shortest mount."""

    def key(s: Series) -> tuple[str, str, str, str]:
        labels = s.labels
        return (
            labels.get("instance", ""),
            labels.get("device", ""),
            labels.get("mountpoint", ""),
            labels.get("fstype", ""),
        )

    sizes: dict[tuple[str, str, str, str], list[Series]] = {}
    for one in size:
        sizes.setdefault(key(one), []).append(one)
    avails: dict[tuple[str, str, str, str], list[Series]] = {}
    for one in avail:
        avails.setdefault(key(one), []).append(one)
    found: dict[tuple[str, ...], Filesystem] = {}
    for k in sorted(avails):
        instance, device, mountpoint, fstype = k
        if not instance or settings.fs_exclude_types.fullmatch(fstype):
            continue
        if settings.fs_exclude_mounts.fullmatch(mountpoint):
            continue
        free, total = _longest(avails[k]), _longest(sizes.get(k, []))
        if free is None or total is None:
            continue
        by_time = dict(total.samples)
        used = [(t, by_time[t] - v) for t, v in free.samples if t in by_time]
        if not used or by_time[used[-1][0]] <= 0:
            continue
        last = used[-1][0]
        fs = Filesystem(
            instance, mountpoint, device, fstype, used, by_time[last], dict(free.samples)[last]
        )
        # A block device mounted twice is one filesystem; tmpfs and the like share a
        # device name without sharing space.
        same = (instance, device) if device.startswith("/") else (instance, device, mountpoint)
        other = found.get(same)
        if other is None:
            found[same] = fs
        elif len(mountpoint) < len(other.mountpoint):
            fs.also_mounted_at = sorted([other.mountpoint, *other.also_mounted_at])
            found[same] = fs
        else:
            other.also_mounted_at = sorted([*other.also_mounted_at, mountpoint])
    return sorted(found.values(), key=lambda f: (f.instance, f.mountpoint))


def measure(prometheus: Prometheus, settings: Settings) -> list[Host]:
    """Every host Prometheus measured in the period, with its series."""
    answers = {
        name: prometheus.query_range(
            query, settings.start, settings.end, settings.step, what=_WHAT[name]
        )
        for name, query in queries(settings.step).items()
    }
    percent = {
        name: {
            instance: [(t, 100 * v) for t, v in best.samples]
            for instance, group in _by_instance(answers[name]).items()
            if (best := _longest(group)) is not None
        }
        for name in ("cpu", "memory")
    }
    last = {
        name: {
            instance: best.samples[-1][1]
            for instance, group in _by_instance(answers[name]).items()
            if (best := _longest(group)) is not None
        }
        for name in ("cores", "memory_total")
    }
    receive, devices = _network(answers["net_receive"], settings.net_exclude_devices)
    transmit, _ = _network(answers["net_transmit"], settings.net_exclude_devices)
    filesystems = _filesystems(answers["fs_size"], answers["fs_avail"], settings)
    instances = (
        set(percent["cpu"])
        | set(percent["memory"])
        | set(receive)
        | set(transmit)
        | {fs.instance for fs in filesystems}
    )
    names = _names(answers["uname"], instances)
    hosts = []
    for instance in instances:
        name, nodename = names[instance]
        cores = last["cores"].get(instance)
        host = Host(
            instance,
            name,
            nodename,
            cores=int(cores) if cores is not None else None,
            memory_total=last["memory_total"].get(instance),
            cpu=percent["cpu"].get(instance, []),
            memory=percent["memory"].get(instance, []),
            receive=receive.get(instance, []),
            transmit=transmit.get(instance, []),
            devices=devices.get(instance, []),
            filesystems=[fs for fs in filesystems if fs.instance == instance],
        )
        hosts.append(host)
    return sorted(hosts, key=lambda h: (h.name, h.instance))


# ---------------------------------------------------------------------- judging


def trend(samples: Samples, settings: Settings) -> Trend:
    """Rising or falling only when the slope's 95% interval excludes zero."""
    if not samples:
        return Trend(NO_DATA, None)
    line = fit(samples)
    if line is None or len(samples) < settings.min_points:
        return Trend(TOO_FEW, line)
    if line.rising:
        return Trend(RISING, line)
    if line.falling:
        return Trend(FALLING, line)
    return Trend(NO_TREND, line)


def forecast(fs: Filesystem, line: Trend, settings: Settings) -> Forecast:
    """The days until the filesystem is full: the space available now over the growth of
    its used space per day, with the range the growth's 95% interval gives; or why no
    date can be given."""
    n = len(fs.used)
    if line.status == NO_DATA:
        return Forecast(NO_DATA, "not measured in the period")
    origin = fs.used[-1][0]
    if fs.avail <= 0:
        return Forecast(FULL, "no space is left for unprivileged users", 0.0, 0.0, 0.0, origin)
    if line.status == TOO_FEW or line.fit is None:
        return Forecast(
            TOO_FEW, f"{n} point(s), fewer than the {settings.min_points} a forecast needs"
        )
    growth = line.fit.per_day
    low, high = line.fit.interval_per_day()
    if growth * settings.days <= NEGLIGIBLE_GROWTH * fs.size:
        said = (
            "did not grow"
            if growth >= 0 or line.status != FALLING
            else f"shrank by {size(-growth)} a day"
        )
        return Forecast(NOT_GROWING, f"used space {said} over the period")
    if low <= 0:
        return Forecast(
            NO_TREND,
            f"a growth of {size(growth)} a day is within the noise "
            f"(its 95% range, {signed_size(low)} to {signed_size(high)} a day, includes no growth)",
        )
    r2 = line.fit.r2 or 0.0
    if r2 < settings.min_r2:
        return Forecast(
            NO_TREND,
            f"a straight line explains only {r2:.0%} of the variation "
            f"(R² {r2:.2f}, under the {settings.min_r2:g} a forecast needs)",
        )
    days = fs.avail / growth
    horizon = HORIZON_FACTOR * settings.days
    if days > horizon:
        return Forecast(
            BEYOND,
            f"growing {size(growth)} a day: full in more than {horizon:.0f} days, "
            f"{HORIZON_FACTOR} times the {settings.days:.3g} day(s) measured, "
            "too far to date from them",
        )
    return Forecast(
        FORECAST,
        f"growing {size(growth)} a day (R² {r2:.2f})",
        days,
        fs.avail / high,
        fs.avail / low,
        origin,
    )


def reaches(samples: Samples, line: Trend, high: float, settings: Settings) -> float | None:
    """Days until a rising series' trend line reaches `high`, when the line is trusted
    as a forecast (R² at least min_r2) and is still under it."""
    if line.status != RISING or line.fit is None or (line.fit.r2 or 0) < settings.min_r2:
        return None
    now = line.fit.at(samples[-1][0])
    return (high - now) / line.fit.per_day if now < high else None


def judge(hosts: list[Host], settings: Settings) -> None:
    for host in hosts:
        for name in ("cpu", "memory", "receive", "transmit"):
            host.trends[name] = trend(getattr(host, name), settings)
        for fs in host.filesystems:
            fs.trend = trend(fs.used, settings)
            fs.forecast = forecast(fs, fs.trend, settings)


# ---------------------------------------------------------------------- units as text


def size(value: float) -> str:
    """Bytes as people read them (binary units)."""
    amount = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def signed_size(value: float) -> str:
    return ("-" if value < 0 else "") + size(value)


def rate(value: float) -> str:
    return size(value) + "/s"


def days_text(days: float) -> str:
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"


def moment(value: datetime | float | None) -> str:
    if value is None:
        return "never"
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _iso(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return when.isoformat(timespec="seconds")


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


# ---------------------------------------------------------------------- the report's data


def _trend_json(line: Trend, unit: str, digits: int) -> dict[str, Any]:
    low, high = line.fit.interval_per_day() if line.fit else (None, None)
    return {
        "status": line.status,
        f"slope_{unit}_per_day": _round(line.fit.per_day if line.fit else None, digits),
        f"slope_low_{unit}_per_day": _round(low, digits),
        f"slope_high_{unit}_per_day": _round(high, digits),
        "r2": _round(line.fit.r2 if line.fit else None, 4),
        "effective_points": _round(line.fit.effective_points if line.fit else None, 1),
        "lags": line.fit.lags if line.fit else None,
    }


def _usage_json(samples: Samples, line: Trend, unit: str, digits: int) -> dict[str, Any]:
    values = [v for _, v in samples]
    return {
        "points": len(values),
        f"last_{unit}": _round(values[-1], digits) if values else None,
        f"mean_{unit}": _round(math.fsum(values) / len(values), digits) if values else None,
        f"p95_{unit}": _round(percentile(values, 95), digits) if values else None,
        f"max_{unit}": _round(max(values), digits) if values else None,
        "last_sample": _iso(samples[-1][0]) if samples else None,
        "trend": _trend_json(line, unit, digits),
    }


def _reaches_json(host: Host, name: str, high: float, settings: Settings) -> dict[str, Any] | None:
    samples = getattr(host, name)
    days = reaches(samples, host.trends[name], high, settings) if samples else None
    if days is None:
        return None
    return {
        "high_percent": high,
        "due_in_days": _round(days, 2),
        "date": _iso(samples[-1][0] + days * DAY),
    }


def _filesystem_json(fs: Filesystem) -> dict[str, Any]:
    f = fs.forecast
    return {
        "mountpoint": fs.mountpoint,
        "device": fs.device,
        "fstype": fs.fstype,
        "also_mounted_at": fs.also_mounted_at,
        "points": len(fs.used),
        "size_bytes": round(fs.size),
        "avail_bytes": round(fs.avail),
        "used_bytes": round(fs.size - fs.avail),
        "used_percent": _round(fs.used_percent, 2),
        "last_sample": _iso(fs.used[-1][0]) if fs.used else None,
        "growth": _trend_json(fs.trend, "bytes", 0),
        "forecast": {
            "status": f.status,
            "reason": f.reason,
            "full_in_days": _round(f.days, 2),
            "full_in_earliest_days": _round(f.earliest_days, 2),
            "full_in_latest_days": _round(f.latest_days, 2),
            "fill_date": _iso(f.date(f.days)),
            "fill_date_earliest": _iso(f.date(f.earliest_days)),
            "fill_date_latest": _iso(f.date(f.latest_days)),
        },
    }


def _host_json(host: Host, settings: Settings) -> dict[str, Any]:
    t = settings.thresholds
    cpu = _usage_json(host.cpu, host.trends["cpu"], "percent", 2)
    cpu["reaches_high"] = _reaches_json(host, "cpu", t.cpu_high_percent, settings)
    memory = _usage_json(host.memory, host.trends["memory"], "percent", 2)
    memory["reaches_high"] = _reaches_json(host, "memory", t.memory_high_percent, settings)
    last = host.last_sample
    stale = last is None or settings.end.timestamp() - last > STALE_STEPS * settings.step
    return {
        "host": host.name,
        "instance": host.instance,
        "nodename": host.nodename,
        "cores": host.cores,
        "memory_total_bytes": round(host.memory_total) if host.memory_total is not None else None,
        "last_sample": _iso(last),
        "stale": stale,
        "cpu": cpu,
        "memory": memory,
        "network": {
            "devices": host.devices,
            "receive": _usage_json(host.receive, host.trends["receive"], "bytes_per_second", 0),
            "transmit": _usage_json(host.transmit, host.trends["transmit"], "bytes_per_second", 0),
        },
        "filesystems": [_filesystem_json(fs) for fs in host.filesystems],
    }


def _needs(hosts: list[Host], settings: Settings) -> list[dict[str, Any]]:
    """What to add (or reclaim space on) first: filesystems full soonest, then those
    already above their high mark, then hosts whose CPU or memory p95 is above its high
    mark (rising first), then hosts whose trend reaches it within the window."""
    t = settings.thresholds
    found: list[tuple[tuple[float, float], dict[str, Any]]] = []
    for host in hosts:
        where = {"host": host.name, "instance": host.instance}
        for fs in host.filesystems:
            f, used = fs.forecast, fs.used_percent or 0.0
            item = {
                **where,
                "resource": "filesystem",
                "mountpoint": fs.mountpoint,
                "action": f"grow {fs.mountpoint} or reclaim space on it",
                "used_percent": _round(used, 2),
                "due_in_days": _round(f.days, 2),
            }
            if f.status == FULL:
                found.append(((0, 0), {**item, "why": "full now"}))
            elif f.status == FORECAST and f.days is not None and f.days <= t.fill_within_days:
                why = (
                    f"full in {days_text(f.days)}, {moment(f.date(f.days))} "
                    f"(95%: {moment(f.date(f.earliest_days))} to {moment(f.date(f.latest_days))}); "
                    f"{f.reason}"
                )
                found.append(((1, f.days), {**item, "why": why}))
            elif used >= t.disk_high_percent:
                why = f"{used:.1f}% used (high mark {t.disk_high_percent:g}%); forecast: {f.reason}"
                found.append(((2, -used), {**item, "why": why}))
        for name, label, high in (
            ("cpu", "CPU", t.cpu_high_percent),
            ("memory", "memory", t.memory_high_percent),
        ):
            samples: Samples = getattr(host, name)
            line = host.trends[name]
            if not samples or line.status in (TOO_FEW, NO_DATA):
                continue
            p95 = percentile([v for _, v in samples], 95)
            item = {
                **where,
                "resource": name,
                "action": f"add {label}",
                "p95_percent": _round(p95, 2),
            }
            rising = line.status == RISING and line.fit is not None
            slope = f", rising {line.fit.per_day:.2f} points a day" if rising and line.fit else ""
            if p95 >= high:
                why = f"{label} p95 {p95:.1f}% over the period (high mark {high:g}%){slope}"
                found.append(
                    ((3 if rising else 4, -p95), {**item, "due_in_days": None, "why": why})
                )
                continue
            days = reaches(samples, line, high, settings)
            if days is not None and days <= t.fill_within_days:
                why = f"{label} trend reaches {high:g}% in {days_text(days)}{slope}"
                found.append(((5, days), {**item, "due_in_days": _round(days, 2), "why": why}))
    found.sort(key=lambda pair: pair[0])
    return [{"rank": i, **item} for i, (_, item) in enumerate(found, start=1)]


def _spare(hosts: list[Host], settings: Settings) -> list[dict[str, Any]]:
    """Hosts with CPU and memory p95 both under their low marks, neither rising: where
    capacity can be reclaimed."""
    t = settings.thresholds
    found = []
    for host in hosts:
        if not host.cpu or not host.memory:
            continue
        if any(host.trends[n].status in (RISING, TOO_FEW, NO_DATA) for n in ("cpu", "memory")):
            continue
        cpu = percentile([v for _, v in host.cpu], 95)
        memory = percentile([v for _, v in host.memory], 95)
        if cpu < t.cpu_low_percent and memory < t.memory_low_percent:
            found.append(
                {
                    "host": host.name,
                    "instance": host.instance,
                    "cpu_p95_percent": _round(cpu, 2),
                    "memory_p95_percent": _round(memory, 2),
                    "why": (
                        f"CPU p95 {cpu:.1f}% (low mark {t.cpu_low_percent:g}%), memory p95 "
                        f"{memory:.1f}% (low mark {t.memory_low_percent:g}%), neither rising"
                    ),
                }
            )
    return sorted(found, key=lambda s: (s["cpu_p95_percent"] + s["memory_p95_percent"], s["host"]))


def report_data(
    prometheus: Prometheus, settings: Settings, hosts: list[Host], now: datetime
) -> dict[str, Any]:
    t = settings.thresholds
    return {
        "report": "capacity",
        "title": f"Capacity, {moment(settings.start)} to {moment(settings.end)}",
        "prometheus": prometheus.url,
        "generated": _iso(now),
        "period": {
            "start": _iso(settings.start),
            "end": _iso(settings.end),
            "length_days": _round(settings.days, 3),
            "step_seconds": settings.step,
            "rate_window_seconds": settings.window,
        },
        "hosts_named_by": "node_uname_info's host label, else its nodename, else the instance",
        "method": {
            "fit": "ordinary least squares over the period",
            "interval": "95%, Student's t on the effective points, Newey-West standard error",
            "min_points": settings.min_points,
            "min_r2": settings.min_r2,
            "horizon_factor": HORIZON_FACTOR,
            "negligible_growth_share": NEGLIGIBLE_GROWTH,
            "fs_exclude_types": settings.fs_exclude_types.pattern,
            "fs_exclude_mounts": settings.fs_exclude_mounts.pattern,
            "net_exclude_devices": settings.net_exclude_devices.pattern,
        },
        "thresholds": {
            "fill_within_days": t.fill_within_days,
            "disk_high_percent": t.disk_high_percent,
            "cpu_high_percent": t.cpu_high_percent,
            "memory_high_percent": t.memory_high_percent,
            "cpu_low_percent": t.cpu_low_percent,
            "memory_low_percent": t.memory_low_percent,
        },
        "hosts": [_host_json(h, settings) for h in hosts],
        "needs": _needs(hosts, settings),
        "spare": _spare(hosts, settings),
        "warnings": list(prometheus.warnings),
        "units": UNITS,
    }


# ---------------------------------------------------------------------- charts


def _percent_label(v: float) -> str:
    return f"{v:.0f}%"


def usage_chart(host: Host, settings: Settings) -> Chart:
    """CPU and memory use, in percent, with their trend lines and high marks."""
    t = settings.thresholds
    chart = Chart(f"{host.name}: CPU and memory use")
    frame = Frame(settings.start.timestamp(), settings.end.timestamp(), 0, 100)
    chart.x_ticks, chart.y_ticks = (
        charts.time_ticks(frame),
        charts.value_ticks(frame, _percent_label),
    )
    for name, label, high in (
        ("cpu", "CPU", t.cpu_high_percent),
        ("memory", "memory", t.memory_high_percent),
    ):
        samples: Samples = getattr(host, name)
        chart.rules.append(Rule(frame.y(high), f"high {name}", f"{label} high mark {high:g}%"))
        if samples:
            chart.lines.append(
                Line(name, charts.series_path(frame, samples, settings.step), f"{label} %")
            )
        _trend_line(chart, frame, samples, host.trends.get(name), name, f"{label} trend")
    if not host.cpu and not host.memory:
        chart.empty = "no CPU or memory data in the period"
    return chart


def network_chart(host: Host, settings: Settings) -> Chart:
    """Bytes received and transmitted per second, summed over the devices kept."""
    chart = Chart(f"{host.name}: network ({', '.join(host.devices) or 'no device'})")
    top = charts.nice_ceiling(
        max((v for s in (host.receive, host.transmit) for _, v in s), default=0) * 1.05
    )
    frame = Frame(settings.start.timestamp(), settings.end.timestamp(), 0, top)
    chart.x_ticks, chart.y_ticks = charts.time_ticks(frame), charts.value_ticks(frame, rate)
    for name, label in (("receive", "received"), ("transmit", "transmitted")):
        samples: Samples = getattr(host, name)
        if samples:
            chart.lines.append(Line(name, charts.series_path(frame, samples, settings.step), label))
        _trend_line(chart, frame, samples, host.trends.get(name), name, f"{label} trend")
    if not host.receive and not host.transmit:
        chart.empty = "no network data in the period"
        chart.y_ticks = []
    return chart


def filesystem_chart(host: Host, fs: Filesystem, settings: Settings) -> Chart:
    """Used space in percent of the size now, the trend line over the period and, when a
    fill date is forecast, the projection to it and its 95% range. The time axis runs past
    the period's end to the fill date when that is within CHART_REACH periods of it, so
    the measured part keeps at least a quarter of the width; a later date is named under
    the chart, its projection drawn to the edge."""
    chart = Chart(f"{host.name}: {fs.mountpoint} ({fs.fstype}, {size(fs.size)})")
    f = fs.forecast
    start, end = settings.start.timestamp(), settings.end.timestamp()
    fill = f.date(f.days)
    reach = end + CHART_REACH * (end - start)
    t1 = max(end, fill.timestamp()) if fill and fill.timestamp() <= reach else end
    frame = Frame(start, t1, 0, 100)
    chart.x_ticks = charts.time_ticks(frame)
    chart.y_ticks = charts.value_ticks(frame, _percent_label)
    chart.rules.append(Rule(frame.y(100), "full", "full"))
    percent = [(t, 100 * v / fs.size) for t, v in fs.used]
    if not percent:
        chart.empty = "no data in the period"
        return chart
    chart.lines.append(Line("used", charts.series_path(frame, percent, settings.step), "used %"))
    line = fs.trend.fit
    if line is not None and fs.trend.status not in (TOO_FEW, NO_DATA):
        a, b = fs.used[0][0], fs.used[-1][0]
        d = charts.segment(frame, (a, 100 * line.at(a) / fs.size), (b, 100 * line.at(b) / fs.size))
        chart.trends.append(Line("fit", d, "trend (least squares)"))
    if f.status != FORECAST or fill is None:
        chart.notes.append(f"no fill date: {f.status} ({f.reason})")
        return chart
    (t_last, v_last), t_fill = percent[-1], fill.timestamp()
    if t1 > end:
        chart.marks.append(Mark(frame.x(end), "end", "end of the period"))
    if t_fill <= t1:
        tip = (t_fill, 100.0)
        chart.marks.append(Mark(frame.x(t_fill), "fill", f"full {fill:%Y-%m-%d}"))
    else:
        tip = (t1, v_last + (100 - v_last) * (t1 - t_last) / (t_fill - t_last))
        chart.notes.append(f"full {moment(fill)}: beyond the chart")
    label = f"at this growth: full {moment(fill)}"
    chart.trends.append(Line("projection", charts.segment(frame, (t_last, v_last), tip), label))
    earliest, latest = f.date(f.earliest_days), f.date(f.latest_days)
    if earliest is not None and latest is not None and earliest.timestamp() <= t1:
        x0 = frame.x(max(earliest.timestamp(), start))
        x1 = frame.x(min(latest.timestamp(), t1))
        label = f"95% range: {moment(earliest)} to {moment(latest)}"
        chart.bands.append(Band(x0, round(x1 - x0, 1), "range", label))
    return chart


def _trend_line(
    chart: Chart, frame: Frame, samples: Samples, line: Trend | None, css: str, label: str
) -> None:
    if not samples or line is None or line.fit is None or line.status in (TOO_FEW, NO_DATA):
        return
    a, b = samples[0][0], samples[-1][0]
    d = charts.segment(frame, (a, line.fit.at(a)), (b, line.fit.at(b)))
    if d:
        chart.trends.append(Line(f"trend {css}", d, f"{label}: {line.status}"))


@dataclass(frozen=True)
class HostView:
    """A host as the HTML shows it: its data, and its charts."""

    data: dict[str, Any]
    usage: Chart
    network: Chart
    filesystems: list[tuple[dict[str, Any], Chart]]


# ---------------------------------------------------------------------- the report

CSV_COLUMNS = (
    "kind",
    "host",
    "instance",
    "mountpoint",
    "device",
    "fstype",
    "last_sample",
    "cores",
    "memory_total_bytes",
    "cpu_mean_percent",
    "cpu_p95_percent",
    "cpu_trend",
    "cpu_slope_percent_per_day",
    "memory_mean_percent",
    "memory_p95_percent",
    "memory_trend",
    "memory_slope_percent_per_day",
    "receive_p95_bytes_per_second",
    "transmit_p95_bytes_per_second",
    "size_bytes",
    "avail_bytes",
    "used_percent",
    "growth_bytes_per_day",
    "growth_r2",
    "points",
    "forecast",
    "full_in_days",
    "full_in_earliest_days",
    "full_in_latest_days",
    "fill_date",
    "fill_date_earliest",
    "fill_date_latest",
    "reason",
)


def csv_rows(data: dict[str, Any]) -> list[list[Any]]:
    """One row per host, then one per filesystem of it; a column that does not apply to
    the row's kind is empty."""
    rows = []
    for h in data["hosts"]:
        cpu, memory, net = h["cpu"], h["memory"], h["network"]
        host = {
            "kind": "host",
            "host": h["host"],
            "instance": h["instance"],
            "last_sample": h["last_sample"],
            "cores": h["cores"],
            "memory_total_bytes": h["memory_total_bytes"],
            "cpu_mean_percent": cpu["mean_percent"],
            "cpu_p95_percent": cpu["p95_percent"],
            "cpu_trend": cpu["trend"]["status"],
            "cpu_slope_percent_per_day": cpu["trend"]["slope_percent_per_day"],
            "memory_mean_percent": memory["mean_percent"],
            "memory_p95_percent": memory["p95_percent"],
            "memory_trend": memory["trend"]["status"],
            "memory_slope_percent_per_day": memory["trend"]["slope_percent_per_day"],
            "receive_p95_bytes_per_second": net["receive"]["p95_bytes_per_second"],
            "transmit_p95_bytes_per_second": net["transmit"]["p95_bytes_per_second"],
            "points": cpu["points"],
        }
        rows.append([host.get(c) for c in CSV_COLUMNS])
        for fs in h["filesystems"]:
            f = fs["forecast"]
            row = {
                "kind": "filesystem",
                "host": h["host"],
                "instance": h["instance"],
                "mountpoint": fs["mountpoint"],
                "device": fs["device"],
                "fstype": fs["fstype"],
                "last_sample": fs["last_sample"],
                "size_bytes": fs["size_bytes"],
                "avail_bytes": fs["avail_bytes"],
                "used_percent": fs["used_percent"],
                "growth_bytes_per_day": fs["growth"]["slope_bytes_per_day"],
                "growth_r2": fs["growth"]["r2"],
                "points": fs["points"],
                "forecast": f["status"],
                "reason": f["reason"],
                **{k: f[k] for k in CSV_COLUMNS if k in f},
            }
            rows.append([row.get(c) for c in CSV_COLUMNS])
    return rows


def capacity_report(
    prometheus: Prometheus, settings: Settings, fmt: str, *, now: datetime | None = None
) -> str:
    """The report in `fmt` (html, json or csv), from what Prometheus answers."""
    now = now or datetime.now(UTC)
    hosts = measure(prometheus, settings)
    judge(hosts, settings)
    data = report_data(prometheus, settings, hosts, now)
    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        return to_csv(CSV_COLUMNS, csv_rows(data))
    views = [
        HostView(
            data=hd,
            usage=usage_chart(host, settings),
            network=network_chart(host, settings),
            filesystems=[
                (fd, filesystem_chart(host, fs, settings))
                for fd, fs in zip(hd["filesystems"], host.filesystems, strict=True)
            ],
        )
        for hd, host in zip(data["hosts"], hosts, strict=True)
    ]
    return html(
        "capacity.html.j2",
        data=data,
        hosts=views,
        size=size,
        rate=rate,
        days=days_text,
        moment=moment,
        fmt=_fmt,
    )


def _fmt(value: float | None, pattern: str = "{:.1f}", otherwise: str = "n/a") -> str:
    return otherwise if value is None else pattern.format(value)
