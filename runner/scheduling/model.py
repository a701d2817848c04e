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
from datetime import UTC, datetime, timedelta
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
