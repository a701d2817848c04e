# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Maintenance windows and change freezes: when may a change start on a host?

The data is the `windows` and `freezes` of the repository's schedules.yml. The same code
answers for a playbook (the `techops_maintenance_status` filter, e.g. the patch play's
refusal outside its window) and for the runner's scheduler gate, which imports this file,
so the two can never disagree.

Recurrences are cron expressions (croniter) or RFC 5545 RRULEs (python-dateutil), read as
wall-clock times in a named IANA timezone. Daylight-saving changes: a start that falls in
the skipped hour starts at the same offset as before the change (02:30 on a spring-forward
night is 03:30 new time); a start in the repeated hour starts at its first occurrence.
Durations are elapsed time.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # used without Ansible (the runner imports this file too)
    AnsibleFilterError = ValueError

DOCUMENTATION_SUMMARY = "Maintenance windows and change freezes from schedules.yml"
_DURATION = re.compile(
    r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*(?:(\d+)\s*s)?\s*$"
)
_EPOCH = datetime(2000, 1, 1)
_INTERVAL = re.compile(r"(?:^|;)\s*INTERVAL=([^;]*)", re.IGNORECASE)


class MaintenanceError(ValueError):
    """Bad window or freeze data; the message says which entry and what is wrong."""


def parse_duration(value: object, where: str) -> timedelta:
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return timedelta(minutes=value)
        match = _DURATION.match(str(value)) if isinstance(value, str) else None
        if not match or not any(match.groups()):
            raise MaintenanceError(
                f"{where}: duration {value!r} is not like '4h', '90m', '1d 2h' "
                "or a number of minutes"
            )
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        result = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise MaintenanceError(f"{where}: duration {value!r} is too long") from None
    if result <= timedelta(0):
        raise MaintenanceError(f"{where}: duration must be positive")
    return result


def zone(name: object, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise MaintenanceError(
            f"{where}: unknown timezone {name!r} (use an IANA name such as 'Europe/Paris' or 'UTC')"
        ) from None


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time in tz as an aware datetime (see the module's DST rule)."""
    return naive.replace(tzinfo=tz, fold=0)


def utc(moment: datetime) -> datetime:
    """Python compares and adds datetimes of one zone by wall clock, ignoring DST: every
    comparison and every duration here is done in UTC instead."""
    return moment.astimezone(timezone.utc)


def gaps(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The wall-clock times that never happen in tz between two instants (each
    spring-forward's skipped hour), as naive [first, end) ranges.

    zoneinfo does not list its transitions: the offset is sampled hourly (no zone changes
    twice within an hour) and each change found is narrowed down to the second.
    """
    found: list[tuple[datetime, datetime]] = []
    moment = utc(start).replace(minute=0, second=0, microsecond=0)
    stop = utc(end)
    before = _offset(moment, tz)
    while moment < stop:
        nxt = moment + timedelta(hours=1)
        after = _offset(nxt, tz)
        if after != before:
            low, high = moment, nxt  # the offset is `before` at low and `after` at high
            while high - low > timedelta(seconds=1):
                middle = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
                if middle.astimezone(tz).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            if after > before:
                wall = high.replace(tzinfo=None)
                found.append((wall + before, wall + after))
        moment, before = nxt, after
    return found


def _offset(moment: datetime, tz: ZoneInfo) -> timedelta:
    """The zone's UTC offset at an instant (a zone always has one)."""
    offset = moment.astimezone(tz).utcoffset()
    if offset is None:  # a ZoneInfo always answers for an aware datetime
        raise MaintenanceError(f"time zone {tz} gives no UTC offset at {moment.isoformat()}")
    return offset


@functools.lru_cache(maxsize=256)
def _parsed_rrule(expression: str) -> Any:
    from dateutil.rrule import rrulestr

    return rrulestr(expression, dtstart=_EPOCH, cache=True)


@dataclass(frozen=True)
class Recurrence:
    """When something starts: a cron expression or an RRULE, in a timezone."""

    expression: str
    kind: str  # "cron" or "rrule"
    tz: ZoneInfo
    where: str

    @classmethod
    def from_spec(cls, spec: dict, where: str, default_tz: str) -> Recurrence:
        tz = zone(spec.get("timezone", default_tz), where)
        if spec.get("cron") and spec.get("rrule"):
            raise MaintenanceError(f"{where}: give either cron or rrule, not both")
        if spec.get("cron"):
            from croniter import croniter

            expression = str(spec["cron"])
            if not croniter.is_valid(expression) or len(expression.split()) != 5:
                raise MaintenanceError(
                    f"{where}: bad cron expression {expression!r} "
                    "(five fields: minute hour day-of-month month "
                    "day-of-week)"
                )
            return cls(expression, "cron", tz, where)._fires_at_all()
        if spec.get("rrule"):
            from dateutil.rrule import rrulestr

            expression = str(spec["rrule"]).removeprefix("RRULE:")
            interval = _INTERVAL.search(expression)
            if interval and not (interval.group(1).isdigit() and int(interval.group(1)) >= 1):
                # dateutil accepts INTERVAL=0 and then searches forever.
                raise MaintenanceError(
                    f"{where}: bad RRULE {expression!r}: INTERVAL must be a whole number >= 1"
                )
            try:
                rrulestr(expression, dtstart=_EPOCH)
            except (ValueError, TypeError) as exc:
                raise MaintenanceError(f"{where}: bad RRULE {expression!r}: {exc}") from None
            return cls(expression, "rrule", tz, where)._fires_at_all()
        raise MaintenanceError(f"{where}: needs a cron or an rrule")

    def _fires_at_all(self) -> Recurrence:
        """Self, if it starts at least once: a cron such as "0 2 30 2 *" (30 February) or
        an RRULE that matches no date is valid syntax but can never fire, and would
        otherwise fail at its first use (croniter raises) instead of at loading."""
        name = "cron expression" if self.kind == "cron" else "RRULE"
        try:
            first = self._next_naive(_EPOCH - timedelta(seconds=1))
        except (ValueError, OverflowError) as exc:
            raise MaintenanceError(f"{self.where}: bad {name} {self.expression!r}: {exc}") from None
        if first is None:
            hint = " (a day its months do not have, such as 30 February?)"
            raise MaintenanceError(
                f"{self.where}: {name} {self.expression!r} can never fire: no date matches it"
                + (hint if self.kind == "cron" else "")
            )
        return self

    def _rule(self):
        return _parsed_rrule(self.expression)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first start strictly after `moment` (aware), as an aware datetime."""
        local = moment.astimezone(self.tz).replace(tzinfo=None)
        # Step back a little so that a start in a DST gap or fold is not skipped.
        probe = local - timedelta(hours=3)
        for _attempt in range(1000):
            nxt = self._next_naive(probe)
            if nxt is None:
                return None
            aware = localize(nxt, self.tz)
            if utc(aware) > utc(moment):
                return aware
            probe = nxt
        return None

    def previous_starts(self, moment: datetime, count: int = 3) -> list[datetime]:
        """Up to `count` starts at or before `moment`, newest first."""
        local = moment.astimezone(self.tz).replace(tzinfo=None) + timedelta(hours=3)
        starts: list[datetime] = []
        probe = local
        while len(starts) < count:
            prev = self._prev_naive(probe)
            if prev is None:
                break
            aware = localize(prev, self.tz)
            if utc(aware) <= utc(moment):
                starts.append(aware)
            probe = prev
        return starts

    def wall_starts(self, first: datetime, end: datetime) -> list[datetime]:
        """The naive wall-clock starts from `first` (included) to `end` (excluded): what a
        calendar that knows only wall-clock times (systemd's OnCalendar=) matches."""
        starts: list[datetime] = []
        probe = first - timedelta(seconds=1)
        while (nxt := self._next_naive(probe)) is not None and nxt < end:
            starts.append(nxt)
            probe = nxt
        return starts

    def skipped_starts(self, start: datetime, end: datetime) -> list[datetime]:
        """The starts between two instants whose wall-clock time does not exist (it falls
        in a spring-forward's skipped hour), each as `next_after` gives it: at the offset
        from before the change (see the module's DST rule)."""
        return [
            localize(wall, self.tz)
            for first, last in gaps(self.tz, start, end)
            for wall in self.wall_starts(first, last)
        ]

    def _next_naive(self, after: datetime) -> datetime | None:
        if self.kind == "cron":
            from croniter import CroniterBadDateError, croniter

            try:
                return croniter(self.expression, after).get_next(datetime)
            except CroniterBadDateError:  # no matching date (ever, or within its search)
                return None
        return self._rule().after(after, inc=False)

    def _prev_naive(self, before: datetime) -> datetime | None:
        if self.kind == "cron":
            from croniter import CroniterBadDateError, croniter

            try:
                return croniter(self.expression, before).get_prev(datetime)
            except CroniterBadDateError:
                return None
        return self._rule().before(before, inc=False)


@dataclass(frozen=True)
class Window:
    name: str
    groups: tuple[str, ...]
    recurrence: Recurrence
    duration: timedelta

    def applies(self, groups: set[str]) -> bool:
        return "all" in self.groups or bool(groups & set(self.groups))

    def open_at(self, moment: datetime) -> datetime | None:
        """The start of the occurrence open at `moment`, if any."""
        for start in self.recurrence.previous_starts(moment):
            if utc(start) <= utc(moment) < utc(start) + self.duration:
                return start
        return None


@dataclass(frozen=True)
class Freeze:
    name: str
    start: datetime
    end: datetime
    reason: str
    groups: tuple[str, ...]

    def applies(self, groups: set[str]) -> bool:
        return "all" in self.groups or bool(groups & set(self.groups))


def _instant(value: object, tz: ZoneInfo, where: str, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time.max if end else time.min)
    else:
        try:
            text = str(value)
            moment = (
                datetime.combine(date.fromisoformat(text), time.max if end else time.min)
                if len(text) == 10
                else datetime.fromisoformat(text)
            )
        except ValueError as exc:
            raise MaintenanceError(
                f"{where}: {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time ({exc})"
            ) from None
    return moment if moment.tzinfo else localize(moment, tz)


# An inventory group name: no separators or pattern characters (a string such as
# "app, db" or "app:db" would name one group that exists nowhere and match no host).
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _groups(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ("all",)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(g, str) for g in names):
        raise MaintenanceError(f"{where}: groups must be a list of inventory group names")
    for name in names:
        if not _GROUP_NAME.match(name):
            parts = [p for p in re.split(r"[\s,:&!]+", name) if p]
            raise MaintenanceError(
                f"{where}: groups: {name!r} is not an inventory group name; "
                f"list the groups: groups: [{', '.join(parts) or '...'}]"
            )
    return tuple(names)


def parse(data: dict | None) -> tuple[list[Window], list[Freeze]]:
    """Windows and freezes from schedules.yml's data, validated (the first problem raises)."""
    windows, freezes, problems = parse_entries(data)
    if problems:
        raise problems[0]
    return windows, freezes


def parse_entries(
    data: dict | None,
) -> tuple[list[Window], list[Freeze], list[MaintenanceError]]:
    """Every window and freeze that is valid, and a problem for each one that is not, so
    that a caller can report them all and still check what refers to the good ones."""
    data = data or {}
    default_tz = data.get("timezone", "UTC")
    try:
        zone(default_tz, "timezone")
    except MaintenanceError as exc:
        return [], [], [exc]  # every entry without its own zone would fail the same way
    problems: list[MaintenanceError] = []
    windows: list[Window] = []
    names: set[str] = set()
    for i, spec in _entries(data, "windows", problems):
        try:
            window = _window(spec, i, default_tz)
            if window.name in names:
                raise MaintenanceError(
                    f"windows[{i}] ({window.name}): duplicate window name {window.name!r}"
                )
        except MaintenanceError as exc:
            problems.append(exc)
            continue
        names.add(window.name)
        windows.append(window)
    freezes: list[Freeze] = []
    for i, spec in _entries(data, "freezes", problems):
        try:
            freezes.append(_freeze(spec, i, default_tz))
        except MaintenanceError as exc:
            problems.append(exc)
    return windows, freezes, problems


def _entries(data: dict, key: str, problems: list[MaintenanceError]) -> list[tuple[int, object]]:
    value = data.get(key) or []
    if not isinstance(value, list):
        problems.append(MaintenanceError(f"{key} must be a list (one `- name: ...` per entry)"))
        return []
    return list(enumerate(value))


def _window(spec: object, i: int, default_tz: str) -> Window:
    where = f"windows[{i}]" + (f" ({spec.get('name')})" if isinstance(spec, dict) else "")
    if not isinstance(spec, dict) or not spec.get("name"):
        raise MaintenanceError(f"{where}: each window needs a name")
    if not isinstance(spec["name"], str):
        raise MaintenanceError(f"{where}: a window's name must be a string")
    return Window(
        name=spec["name"],
        groups=_groups(spec.get("groups"), where),
        recurrence=Recurrence.from_spec(spec, where, default_tz),
        duration=parse_duration(spec.get("duration"), where),
    )


def _freeze(spec: object, i: int, default_tz: str) -> Freeze:
    where = f"freezes[{i}]" + (f" ({spec.get('name')})" if isinstance(spec, dict) else "")
    if not isinstance(spec, dict):
        raise MaintenanceError(f"{where}: each freeze is a mapping")
    for key in ("start", "end", "reason"):
        if not spec.get(key):
            raise MaintenanceError(f"{where}: a freeze needs {key}")
    tz = zone(spec.get("timezone", default_tz), where)
    start = _instant(spec["start"], tz, where, end=False)
    end = _instant(spec["end"], tz, where, end=True)
    if utc(end) < utc(start):
        raise MaintenanceError(f"{where}: ends before it starts")
    return Freeze(
        str(spec.get("name") or f"freeze {i}"),
        start,
        end,
        str(spec["reason"]),
        _groups(spec.get("groups"), where),
    )


def status(
    data: dict | None,
    groups: list[str] | set[str] | str,
    at: datetime | None = None,
    window: str | None = None,
) -> dict:
    """May a change start now on a host in these groups? The whole answer, as data."""
    windows, freezes = parse(data)
    groups = {groups} if isinstance(groups, str) else set(groups or [])
    groups.add("all")
    at = at or datetime.now(timezone.utc)
    if at.tzinfo is None:
        raise MaintenanceError("the time to check must carry a timezone")
    # A window named explicitly (a scheduled job's) is used whatever the groups; otherwise
    # the windows of the host's groups.
    if window is not None:
        relevant = [w for w in windows if w.name == window]
        if not relevant:
            raise MaintenanceError(f"no window named {window!r}")
    else:
        relevant = [w for w in windows if w.applies(groups)]
    open_windows = []
    for w in relevant:
        start = w.open_at(at)
        if start is not None:
            open_windows.append(
                {
                    "name": w.name,
                    "opened": start.isoformat(),
                    "closes": (utc(start) + w.duration).astimezone(w.recurrence.tz).isoformat(),
                }
            )
    upcoming = [n for n in (w.recurrence.next_after(at) for w in relevant) if n is not None]
    freeze = next(
        (f for f in freezes if f.applies(groups) and utc(f.start) <= utc(at) <= utc(f.end)), None
    )
    return {
        "checked_at": at.isoformat(),
        "has_windows": bool(relevant),
        "open": bool(open_windows),
        "open_windows": open_windows,
        "next_open": min(upcoming, key=utc).isoformat() if upcoming else None,
        "frozen": freeze is not None,
        "freeze": None
        if freeze is None
        else {
            "name": freeze.name,
            "reason": freeze.reason,
            "start": freeze.start.isoformat(),
            "end": freeze.end.isoformat(),
        },
        "may_start": bool(open_windows) and freeze is None,
    }


def techops_maintenance_status(data, groups, at=None, window=None):
    """Filter: `schedules | techops_maintenance_status(group_names)`."""
    try:
        moment = datetime.fromisoformat(at) if isinstance(at, str) else at
        return status(data, groups, moment, window)
    except MaintenanceError as exc:
        raise AnsibleFilterError(f"techops_maintenance_status: {exc}") from None


class FilterModule:
    def filters(self):
        return {"techops_maintenance_status": techops_maintenance_status}
