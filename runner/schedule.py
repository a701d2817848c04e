"""Scheduled jobs from schedules.yml: loading, validation, and when each job fires.

Windows and freezes are evaluated by plugins/filter/maintenance.py, the same code that
playbooks use, imported here by path so the two can never disagree.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from runner.errors import UserError
from runner.paths import repo_root

DEFAULT_FILE = "schedules.yml"
MISFIRE_DEFAULT = "15m"
JOB_KEYS = {
    "name",
    "playbook",
    "inventory",
    "limit",
    "tags",
    "skip_tags",
    "extra_vars",
    "cron",
    "rrule",
    "timezone",
    "window",
    "max_runtime",
    "misfire_grace",
    "changes_hosts",
    "enabled",
    "notify",
    "description",
}


def maintenance() -> ModuleType:
    """plugins/filter/maintenance.py, loaded once by path."""
    name = "techops_maintenance"
    if name not in sys.modules:
        path = repo_root() / "plugins" / "filter" / "maintenance.py"
        if not path.is_file():
            raise UserError(f"{path} not found: TECHOPS_ROOT must point at the repository")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


class _Lines(dict):
    """A mapping that remembers the line it started on."""

    line: int = 0


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        mapping = _Lines(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping
)


class ScheduleError(UserError):
    """One or more problems in schedules.yml, each as 'file:line: what is wrong'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "; ".join(problems)
            if len(problems) == 1
            else f"{len(problems)} problems:\n  " + "\n  ".join(problems)
        )
        self.problems = problems


@dataclass
class Job:
    name: str
    playbook: str
    inventory: str
    recurrence: Any  # maintenance.Recurrence
    window: str | None
    max_runtime: timedelta | None
    misfire_grace: timedelta
    changes_hosts: bool = True
    enabled: bool = True
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    line: int = 0

    @property
    def tz(self):
        return self.recurrence.tz

    def next_fires(self, after: datetime, count: int) -> list[datetime]:
        fires: list[datetime] = []
        moment = after
        while len(fires) < count:
            nxt = self.recurrence.next_after(moment)
            if nxt is None:
                break
            fires.append(nxt)
            moment = nxt
        return fires

    def last_fire(self, at: datetime) -> datetime | None:
        starts = self.recurrence.previous_starts(at, count=1)
        return starts[0] if starts else None


@dataclass
class Schedules:
    path: Path
    data: dict[str, Any]
    jobs: dict[str, Job]
    windows: list[Any]
    freezes: list[Any]

    def job(self, name: str) -> Job:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise UserError(f"no job named {name!r} in {self.path} (jobs: {known})")
        return self.jobs[name]

    def window_status(
        self, groups: list[str] | set[str], at: datetime, window: str | None = None
    ) -> dict[str, Any]:
        return maintenance().status(self.data, groups, at, window)


def default_path() -> Path:
    """schedules.yml at the repository root, or the file TECHOPS_SCHEDULES names."""
    env = os.environ.get("TECHOPS_SCHEDULES")
    return Path(env) if env else repo_root() / DEFAULT_FILE


def load(path: Path | None = None, *, check_files: bool = True) -> Schedules:
    """Read and validate schedules.yml; every problem is reported with its line."""
    root = repo_root()
    path = path or default_path()
    if not path.is_file():
        raise UserError(f"{path} not found: schedules live in schedules.yml at the repository root")
    try:
        data = yaml.load(path.read_text(), Loader=_LineLoader) or {}  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ScheduleError(
            [f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    if not isinstance(data, dict):
        raise ScheduleError([f"{path}:1: expected a mapping with windows, freezes and jobs"])
    m = maintenance()
    problems: list[str] = []

    def at(node: Any) -> str:
        return f"{path}:{getattr(node, 'line', 1)}"

    try:
        windows, freezes = m.parse(data)
    except m.MaintenanceError as exc:
        entry = _entry_for(data, str(exc))
        problems.append(f"{at(entry)}: {exc}")
        windows, freezes = [], []
    window_names = {w.name for w in windows}
    default_tz = data.get("timezone", "UTC")
    jobs: dict[str, Job] = {}
    for index, spec in enumerate(data.get("jobs") or []):
        where = f"jobs[{index}]"
        if not isinstance(spec, dict):
            problems.append(f"{at(data)}: {where} is not a mapping")
            continue
        where += f" ({spec.get('name')})" if spec.get("name") else ""
        loc = at(spec)
        unknown = set(spec) - JOB_KEYS
        if unknown:
            problems.append(
                f"{loc}: {where}: unknown key(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(JOB_KEYS))})"
            )
        name = spec.get("name")
        if not name or not isinstance(name, str):
            problems.append(f"{loc}: {where}: a job needs a name")
            continue
        if name in jobs:
            problems.append(
                f"{loc}: {where}: duplicate job name {name!r} (first at line {jobs[name].line})"
            )
            continue
        playbook = spec.get("playbook")
        if not playbook:
            problems.append(f"{loc}: {where}: a job needs a playbook")
        elif check_files and not (root / playbook).is_file():
            problems.append(
                f"{loc}: {where}: unknown playbook {playbook!r} (no such file under the repository)"
            )
        inventory = spec.get("inventory", "inventories/lab/hosts.yml")
        try:
            recurrence = m.Recurrence.from_spec(spec, where, default_tz)
        except m.MaintenanceError as exc:
            problems.append(f"{loc}: {exc}")
            continue
        window = spec.get("window")
        if window is not None and window not in window_names:
            problems.append(
                f"{loc}: {where}: unknown window {window!r} (windows: "
                f"{', '.join(sorted(window_names)) or 'none'})"
            )
            continue
        try:
            max_runtime = (
                m.parse_duration(spec["max_runtime"], where) if spec.get("max_runtime") else None
            )
            grace = m.parse_duration(spec.get("misfire_grace", MISFIRE_DEFAULT), where)
        except m.MaintenanceError as exc:
            problems.append(f"{loc}: {exc}")
            continue
        changes = spec.get("changes_hosts", True)
        if not isinstance(changes, bool):
            problems.append(f"{loc}: {where}: changes_hosts must be true or false")
            continue
        if changes and window is None:
            problems.append(
                f"{loc}: {where}: a job that changes hosts must name the window "
                "it starts in (or set changes_hosts: false)"
            )
            continue
        extra = spec.get("extra_vars") or {}
        if not isinstance(extra, dict):
            problems.append(f"{loc}: {where}: extra_vars must be a mapping")
            continue
        job = Job(
            name=name,
            playbook=str(playbook),
            inventory=str(inventory),
            recurrence=recurrence,
            window=window,
            max_runtime=max_runtime,
            misfire_grace=grace,
            changes_hosts=changes,
            enabled=bool(spec.get("enabled", True)),
            limit=spec.get("limit"),
            tags=spec.get("tags"),
            skip_tags=spec.get("skip_tags"),
            extra_vars=dict(extra),
            notify=dict(spec.get("notify") or {}),
            description=str(spec.get("description", "")),
            line=getattr(spec, "line", 0),
        )
        if window is not None:
            never = _never_in_window(job, next(w for w in windows if w.name == window))
            if never:
                problems.append(f"{loc}: {where}: {never}")
                continue
        from runner import notify

        problems += [
            f"{loc}: {p}"
            for p in notify.validate(notify.settings(data.get("notify"), job.notify), where)
        ]
        jobs[name] = job
    if problems:
        raise ScheduleError(problems)
    return Schedules(path, data, jobs, windows, freezes)


def _entry_for(data: dict, message: str) -> Any:
    """The windows/freezes entry a maintenance error message names, for its line."""
    for key in ("windows", "freezes"):
        for index, entry in enumerate(data.get(key) or []):
            if message.startswith(f"{key}[{index}]"):
                return entry
    return data


def _never_in_window(job: Job, window: Any, horizon_days: int = 400) -> str | None:
    """Why a job can never fire inside its window (None if it can)."""
    start = datetime.now(UTC)
    fires = 0
    moment = start
    while fires < 2000:
        nxt = job.recurrence.next_after(moment)
        if nxt is None or nxt - start > timedelta(days=horizon_days):
            break
        fires += 1
        if window.open_at(nxt) is not None:
            return None
        moment = nxt
    if fires == 0:
        return "its recurrence never fires"
    return (
        f"it can never fire inside its window {window.name!r}: none of its next {fires} "
        f"start times (over {horizon_days} days) falls in the window"
    )
