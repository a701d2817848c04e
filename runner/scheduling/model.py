"""Scheduled jobs from schedules.yml: loading, validation, and when each job fires.

Windows and freezes are evaluated by plugins/filter/maintenance.py, the same code that
playbooks use, imported here by path so the two can never disagree.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from runner.core.errors import UserError
from runner.core.paths import repo_root
from runner.scheduling import notify

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
    "vault_ids",
}
# Where a controller keeps one vault password file per identity (`vault: credentials_dir:`
# in schedules.yml): the systemd units load them as credentials, never as text or
# environment of the unit.
VAULT_DIR_DEFAULT = "/etc/techops/vault"
VAULT_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")
# Keys whose value is handed on as text (to ansible-playbook or a listing).
TEXT_KEYS = ("playbook", "inventory", "limit", "tags", "skip_tags", "window")
# How far ahead a job's starts are walked to find the longest gap between two of them: a
# year and a month holds every month's length and both DST changes. A job that starts more
# often than GAP_MAX_STARTS times in that span shows its pattern in fewer starts.
GAP_HORIZON = timedelta(days=400)
GAP_MAX_STARTS = 5000
# What lies between a job's due time and its run's end beyond the misfire grace: the run's
# length when the job sets no max_runtime, and the time around the run that max_runtime
# does not count (the gate's decision, reading the inventory, recording the end).
RUNTIME_ALLOWANCE = timedelta(hours=1)
START_ALLOWANCE = timedelta(minutes=5)


def maintenance() -> ModuleType:
    """plugins/filter/maintenance.py, loaded once by path."""
    name = "techops_maintenance"
    if name not in sys.modules:
        path = repo_root() / "plugins" / "filter" / "maintenance.py"
        if not path.is_file():
            raise UserError(f"{path} not found: TECHOPS_ROOT must point at the repository")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"{path} cannot be loaded as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"


class _Lines(dict):
    """A mapping that remembers the line it started on, and the line of each key."""

    line: int = 0
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records lines and reads the file as its authors mean it.

    YAML 1.1 reads an unquoted on/off/yes/no/true/false key as a boolean, so
    `notify: {on: [failure]}` would have the key True and its events would be ignored: no
    key in schedules.yml is a boolean, so such keys stay the text they are. A date that
    does not exist (2026-13-01) stays text too, for the validation to report with its
    entry's line instead of the YAML parser failing with a bare ValueError.
    """

    def construct_mapping(self, node, deep=False):
        for key_node, _ in node.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.tag == _BOOL_TAG
                and key_node.style is None
            ):
                key_node.tag = _STR_TAG
        mapping = _Lines(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {
            key_node.value: key_node.start_mark.line + 1
            for key_node, _ in node.value
            if isinstance(key_node, yaml.ScalarNode)
        }
        return mapping

    def construct_yaml_timestamp(self, node):
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping
)
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _LineLoader.construct_yaml_timestamp)


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
    vault_ids: tuple[str, ...] = ()  # labels of the vault identities the run needs
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

    def starts_ahead(self, after: datetime) -> list[datetime]:
        """The job's starts after `after`, as instants (UTC), over GAP_HORIZON or up to
        the day that reaches GAP_MAX_STARTS starts, whichever ends first: the instants
        `next_after` gives one by one, found in a fraction of its time (it steps back hours
        for every start, too slow for a job that starts every few minutes)."""
        return self._walk(after)[0]

    def _walk(self, after: datetime) -> tuple[list[datetime], datetime]:
        """starts_ahead, and the instant the walk reached: the horizon's end, or where
        GAP_MAX_STARTS stopped it. The wall-clock starts are walked a day at a time and
        placed as the module's DST rule places them (plugins/filter/maintenance.py)."""
        m = maintenance()
        tz = self.recurrence.tz
        day = after.astimezone(tz).replace(tzinfo=None)
        end = day + GAP_HORIZON
        walls: list[datetime] = []
        while day < end and len(walls) < GAP_MAX_STARTS:
            following = min(day + timedelta(days=1), end)
            walls += self.recurrence.wall_starts(day, following)
            day = following
        # A start in a spring-forward's skipped hour lands on the same instant as one an
        # hour after it, and a repeated hour's starts happen once: each instant once.
        instants = {m.utc(m.localize(wall, tz)) for wall in walls}
        starts = sorted(moment for moment in instants if moment > m.utc(after))
        return starts, m.utc(m.localize(day, tz))

    def longest_gap(self, after: datetime) -> timedelta | None:
        """The longest time between two consecutive starts of the job after `after`
        (starts_ahead); None when it starts fewer than twice in that span. Gaps are elapsed
        time, DST included: a daily job in a zone that changes has a 23 h and a 25 h gap a
        year. When GAP_MAX_STARTS ended the walk before the horizon, a change back of the
        clocks after it (whose repeated hour's starts happen once) may still lengthen a
        gap by its size, which is added."""
        starts, walked = self._walk(after)
        longest = max((later - earlier for earlier, later in pairwise(starts)), default=None)
        if longest is None:
            return None
        horizon = after.astimezone(UTC) + GAP_HORIZON
        return longest + _largest_change_back(self.recurrence.tz, walked, horizon)

    def max_interval(self, after: datetime) -> timedelta | None:
        """The longest a job that runs as scheduled goes between two successful runs,
        from one's end to the next one's: its longest gap between starts, plus how late the
        gate may still fire it (misfire_grace), plus how long its run may take (max_runtime,
        else RUNTIME_ALLOWANCE), plus START_ALLOWANCE. Longer without a success, something
        stopped it. None for a disabled job, or one whose recurrence gives no gap."""
        gap = self.longest_gap(after) if self.enabled else None
        if gap is None:
            return None
        runtime = self.max_runtime or RUNTIME_ALLOWANCE
        return gap + self.misfire_grace + runtime + START_ALLOWANCE


@dataclass
class Schedules:
    path: Path
    data: dict[str, Any]
    jobs: dict[str, Job]
    windows: list[Any]
    freezes: list[Any]

    @property
    def vault_dir(self) -> Path:
        return Path((self.data.get("vault") or {}).get("credentials_dir") or VAULT_DIR_DEFAULT)

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


class MaxIntervals:
    """Each job of a schedules file and its max_interval (None: none), worked out again
    only when the file changes: walking a year of starts per job is too slow to repeat on
    every look. The playbooks the jobs name need not exist here (a monitoring host may
    have none); a file that does not load raises what `load` raises, and is read again
    on the next call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: tuple[tuple[int, int, int], dict[str, timedelta | None]] | None = None

    def __call__(self) -> dict[str, timedelta | None]:
        before = _signature(self.path)
        if self._known is not None and before == self._known[0]:
            return self._known[1]
        schedules = load(self.path, check_files=False)
        now = datetime.now(UTC)
        found = {name: job.max_interval(now) for name, job in schedules.jobs.items()}
        # Kept only if the file did not change while it was read.
        if before is not None and _signature(self.path) == before:
            self._known = (before, found)
        return found


def _largest_change_back(tz: tzinfo, start: datetime, end: datetime) -> timedelta:
    """The largest step back of the zone's clocks between two instants (none: zero),
    its offset sampled daily: no zone changes twice in a day."""
    largest = timedelta(0)
    moment = start
    before = moment.astimezone(tz).utcoffset()
    while moment < end:
        moment = min(moment + timedelta(days=1), end)
        after = moment.astimezone(tz).utcoffset()
        if before is not None and after is not None and after < before:
            largest = max(largest, before - after)
        before = after
    return largest


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is rewritten or replaced; None when it cannot be seen."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


def load(path: Path | None = None, *, check_files: bool = True) -> Schedules:
    """Read and validate schedules.yml; every problem is reported with its line."""
    root = repo_root()
    path = path or default_path()
    data = _read(path)
    m = maintenance()

    def at(node: Any, key: str | None = None) -> str:
        line = getattr(node, "key_lines", {}).get(key) if key else None
        return f"{path}:{line or getattr(node, 'line', 1)}"

    windows, freezes, errors = m.parse_entries(data)
    problems = [f"{at(*_entry_for(data, str(exc)))}: {exc}" for exc in errors]
    default_tz = data.get("timezone", "UTC")
    try:
        m.zone(default_tz, "timezone")
    except m.MaintenanceError:
        default_tz = "UTC"  # reported once above, not again for every job
    loaded = {w.name: w for w in windows}
    declared = _window_names(data)
    problems += [
        f"{at(data, 'notify')}: {p}" for p in notify.validate(data.get("notify"), "top level")
    ]
    specs = data.get("jobs") or []
    if not isinstance(specs, list):
        problems.append(f"{at(data, 'jobs')}: jobs must be a list (one `- name: ...` per job)")
        specs = []
    jobs: dict[str, Job] = {}
    for index, spec in enumerate(specs):
        where = f"jobs[{index}]"
        if not isinstance(spec, dict):
            problems.append(f"{at(data, 'jobs')}: {where} is not a mapping")
            continue
        where += f" ({spec.get('name')})" if spec.get("name") else ""
        loc = at(spec)
        unknown = set(spec) - JOB_KEYS
        if unknown:
            problems.append(
                f"{loc}: {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
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
        not_text = [
            key for key in TEXT_KEYS if spec.get(key) is not None and not isinstance(spec[key], str)
        ]
        if not_text:
            problems.append(f"{loc}: {where}: {', '.join(not_text)} must be text")
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
        if window is not None and window not in declared:
            problems.append(
                f"{loc}: {where}: unknown window {window!r} (windows: "
                f"{', '.join(sorted(declared)) or 'none'})"
            )
            continue
        # A window that is declared but invalid has its own error at its own line; the
        # jobs that name it are checked for everything but fitting in it.
        try:
            max_runtime = (
                m.parse_duration(spec["max_runtime"], where) if spec.get("max_runtime") else None
            )
            grace = m.parse_duration(spec.get("misfire_grace", MISFIRE_DEFAULT), where)
        except m.MaintenanceError as exc:
            problems.append(f"{loc}: {exc}")
            continue
        flags = {key: spec.get(key, True) for key in ("changes_hosts", "enabled")}
        not_bool = [key for key, value in flags.items() if not isinstance(value, bool)]
        if not_bool:
            problems.append(f"{loc}: {where}: {' and '.join(not_bool)} must be true or false")
            continue
        changes = flags["changes_hosts"]
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
        vault_ids = spec.get("vault_ids") or []
        if not isinstance(vault_ids, list) or not all(
            isinstance(label, str) and VAULT_LABEL.match(label) for label in vault_ids
        ):
            problems.append(
                f"{at(spec, 'vault_ids')}: {where}: vault_ids must be a list of vault identity "
                "labels (letters, digits, . _ -), e.g. [prod]"
            )
            continue
        own_notify = spec.get("notify")
        notify_problems = notify.validate(own_notify, where)
        if notify_problems:
            problems += [f"{at(spec, 'notify')}: {p}" for p in notify_problems]
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
            enabled=flags["enabled"],
            limit=spec.get("limit"),
            tags=spec.get("tags"),
            skip_tags=spec.get("skip_tags"),
            extra_vars=dict(extra),
            notify=dict(own_notify or {}),
            description=str(spec.get("description", "")),
            vault_ids=tuple(vault_ids),
            line=getattr(spec, "line", 0),
        )
        if window in loaded:
            never = _never_in_window(job, loaded[window])
            if never:
                problems.append(f"{loc}: {where}: {never}")
                continue
        jobs[name] = job
    problems += _vault_problems(data, at)
    if problems:
        raise ScheduleError(problems)
    return Schedules(path, data, jobs, windows, freezes)


def _vault_problems(data: dict[str, Any], at: Any) -> list[str]:
    section = data.get("vault")
    if section is None:
        return []
    if not isinstance(section, dict) or set(section) - {"credentials_dir"}:
        return [f"{at(data, 'vault')}: vault takes one key, credentials_dir (a directory path)"]
    directory = section.get("credentials_dir")
    if directory is not None and not (isinstance(directory, str) and directory.startswith("/")):
        return [f"{at(section, 'credentials_dir')}: vault.credentials_dir must be an absolute path"]
    return []


def credential_name(label: str) -> str:
    """The systemd credential that carries the password of vault identity `label`."""
    return f"techops-vault-{label}"


def _read(path: Path) -> dict[str, Any]:
    """The file's data, or the one-line reason it cannot be read as a schedules mapping."""
    if not path.is_file():
        raise UserError(f"{path} not found: schedules live in schedules.yml at the repository root")
    try:
        data = yaml.load(path.read_text(), Loader=_LineLoader) or {}  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ScheduleError(
            [f"{path}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ScheduleError([f"{path}:1: not UTF-8 text ({exc.reason})"]) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ScheduleError([f"{path}:1: expected a mapping with windows, freezes and jobs"])
    return data


def _window_names(data: dict) -> set[str]:
    """The name of every window entry, whether or not the entry is valid."""
    entries = data.get("windows")
    if not isinstance(entries, list):
        return set()
    return {e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}


def _entry_for(data: dict, message: str) -> tuple[Any, str | None]:
    """Where a maintenance error message points: its windows/freezes entry, or the
    top-level key it names (for the line)."""
    for key in ("windows", "freezes"):
        entries = data.get(key)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if message.startswith(f"{key}[{index}]"):
                return entry, None
    for key in ("timezone", "windows", "freezes"):
        if message.startswith(key):
            return data, key
    return data, None


def _never_in_window(job: Job, window: Any, horizon_days: int = 400) -> str | None:
    """Why a job can never fire inside its window (None if it can)."""
    start = datetime.now(UTC)
    fires = 0
    moment = start
    nxt = None
    while fires < 2000:
        nxt = job.recurrence.next_after(moment)
        if nxt is None or nxt - start > timedelta(days=horizon_days):
            break
        fires += 1
        if window.open_at(nxt) is not None:
            return None
        moment = nxt
    if fires == 0:
        return (
            "its recurrence never fires again"
            if nxt is None
            else f"its recurrence does not fire in the next {horizon_days} days"
        )
    return (
        f"it can never fire inside its window {window.name!r}: none of its next {fires} "
        f"start times (over {horizon_days} days) falls in the window"
    )
