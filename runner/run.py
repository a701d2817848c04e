"""`techops run`: run a playbook through ansible-runner and report its progress.

The arguments for ansible-runner are built once, in `RunRequest.runner_kwargs`. Everything
that watches a run (the live progress now, the ledger recorder later) is an `Observer`
that receives ansible-runner's events; the events and the `playbook_on_stats` event are the
record of a run, not the text ansible-playbook prints.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from runner.errors import UserError
from runner.paths import CALLBACK_PLUGINS, repo_root, state_dir

# ansible-playbook's own exit codes, kept so that scripts written for it keep working.
RC_OK = 0
RC_ERROR = 1
RC_HOST_FAILED = 2
RC_HOST_UNREACHABLE = 4
RC_BAD_OPTIONS = 5
RC_INTERRUPTED = 99
RC_TIMEOUT = 124  # as timeout(1): the run was cancelled for exceeding its maximum run time


class Observer(Protocol):
    """Something that watches a run: progress output, a recorder, a notifier."""

    def on_start(self, request: RunRequest) -> None: ...

    def on_event(self, event: dict[str, Any]) -> None: ...

    def on_finish(self, result: RunResult) -> None: ...


@dataclass
class RunRequest:
    """Everything that defines one run, validated before anything starts."""

    playbook: Path
    inventory: str
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    check: bool = False
    diff: bool = False
    extravars: dict[str, Any] = field(default_factory=dict)
    forks: int | None = None
    verbosity: int = 0
    timeout: int | None = None  # seconds; the run is cancelled and recorded as timed out
    node: Any = None  # a runner.remote.Node: run there through ansible-runner streaming
    fast: bool = False  # mitogen's strategy: far fewer round trips per task
    run_id: str = field(default_factory=lambda: new_run_id())

    def cmdline(self) -> list[str]:
        args: list[str] = []
        if self.check:
            args.append("--check")
        if self.diff:
            args.append("--diff")
        if self.tags:
            args += ["--tags", self.tags]
        if self.skip_tags:
            args += ["--skip-tags", self.skip_tags]
        return args

    def runner_kwargs(self) -> dict[str, Any]:
        """The one place where ansible-runner's arguments are built."""
        root = repo_root()
        bindir = str(Path(sys.executable).parent)
        envvars = {
            # The repository's settings, unless the caller names another file (the
            # benchmarks compare Ansible's defaults with ours this way).
            "ANSIBLE_CONFIG": os.environ.get("TECHOPS_ANSIBLE_CONFIG") or str(root / "ansible.cfg"),
            # The tools live next to this interpreter (the project's virtualenv), which
            # need not be on the caller's PATH (cron, systemd, a plain .venv/bin/techops).
            "PATH": bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            # An inventory Ansible cannot parse is an error, not a warning followed by a run
            # against no hosts that exits 0 and would be recorded as a success. (Not in
            # ansible.cfg: there it would break ansible-lint and any plain run before
            # `techops lab up` has written the default inventory.)
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
            # ansible-runner sets ANSIBLE_CALLBACK_PLUGINS to its own directory, which hides
            # ansible.cfg's callback_plugins: name ours here too (ansible-runner appends its own).
            "ANSIBLE_CALLBACK_PLUGINS": str(root / CALLBACK_PLUGINS),
        }
        if self.fast:
            envvars.update(mitogen_settings())
        kwargs: dict[str, Any] = {
            # One private data dir per run: concurrent runs never share ansible-runner's
            # env/ files, and retention can remove a run's artifacts as one directory.
            "private_data_dir": str(state_dir() / "runs" / self.run_id),
            "project_dir": str(root),
            "ident": self.run_id,
            "playbook": str(self.playbook),
            # A host list ("web1,web2,") goes as a list of sources: ansible-runner reads a
            # bare string that is not a path as INI inventory text.
            "inventory": [self.inventory] if _is_host_list(self.inventory) else self.inventory,
            "envvars": envvars,
            # Share ansible.cfg's fact cache with plain ansible-playbook runs instead of
            # ansible-runner's per-run cache, so `gathering = smart` really saves work.
            "fact_cache": str(fact_cache_dir(self.inventory)),
            "fact_cache_type": "jsonfile",
            "quiet": True,
            # Keep env vars and command-line settings out of env/ files on disk.
            "suppress_env_files": True,
            "json_mode": False,
            "verbosity": self.verbosity or None,
        }
        if self.limit:
            kwargs["limit"] = self.limit
        if self.extravars:
            kwargs["extravars"] = self.extravars
        if self.forks:
            kwargs["forks"] = self.forks
        if self.timeout:
            kwargs["timeout"] = self.timeout
        if self.cmdline():
            kwargs["cmdline"] = " ".join(_quote(a) for a in self.cmdline())
        return kwargs


@dataclass
class RunResult:
    run_id: str
    status: str  # successful, failed, canceled, timeout, error
    rc: int
    stats: dict[str, dict[str, int]]
    artifacts: Path | None
    started: datetime
    finished: datetime


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def mitogen_settings() -> dict[str, str]:
    """Environment that selects mitogen's linear strategy (PyPI `mitogen`, pinned in
    pyproject.toml): one persistent interpreter per host instead of a module upload and a
    Python start per task."""
    try:
        import ansible_mitogen
    except ImportError:
        raise UserError(
            "--fast needs mitogen: run scripts/setup (it installs the pinned version)"
        ) from None
    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(strategies), "ANSIBLE_STRATEGY": "mitogen_linear"}


def fact_cache_dir(inventory: str) -> Path:
    """Cached facts, one directory per inventory: two inventories may name different
    machines alike (the lab and a second lab both have an app1)."""
    import hashlib

    return state_dir() / "facts" / hashlib.sha256(inventory.encode()).hexdigest()[:12]


def _is_host_list(inventory: str) -> bool:
    return "," in inventory and not Path(inventory).exists()


def new_run_id() -> str:
    """Sortable by time, unique across controllers: 20261122T031502Z-3f9a1c."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


# --------------------------------------------------------------------------- inputs


def resolve_playbook(name: str) -> Path:
    """A playbook path as given, or by name under playbooks/ (`site` → playbooks/site.yml)."""
    root = repo_root()
    candidates = [
        Path(name),
        root / name,
        root / "playbooks" / name,
        root / "playbooks" / f"{name}.yml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(
        f"playbook {name!r} not found (looked for {name} and playbooks/{Path(name).stem}.yml); "
        f"available: {', '.join(sorted(p.stem for p in (root / 'playbooks').glob('*.yml')))}",
        exit_code=RC_ERROR,
    )


def default_inventory() -> str:
    """The inventory ansible.cfg names: the lab, never production."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    cfg.read(repo_root() / "ansible.cfg")
    return cfg.get("defaults", "inventory", fallback="inventories/lab/hosts.yml")


def resolve_inventory(value: str | None) -> str:
    value = value or default_inventory()
    if "," in value and not Path(value).exists():
        return value  # an explicit host list, as ansible-playbook accepts
    path = Path(value)
    if not path.is_absolute():
        path = (Path.cwd() / value) if (Path.cwd() / value).exists() else repo_root() / value
    if not path.exists():
        hint = (
            " — run `techops lab up` to create the lab and its inventory"
            if "inventories/lab" in value
            else ""
        )
        raise UserError(f"inventory {value} does not exist{hint}", exit_code=RC_ERROR)
    if path.is_file():
        check_inventory_file(path, value)
    return str(path.resolve())


def check_inventory_file(path: Path, shown: str) -> None:
    """Refuse an inventory file Ansible could not use. Ansible itself only warns and runs
    against an empty inventory (exit 0, "no hosts matched"), which a scheduled job would
    record as a success."""
    from runner.redact import InventoryYamlLoader

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UserError(
            f"inventory {shown} is not readable: {reason}", exit_code=RC_ERROR
        ) from None
    if path.suffix not in (".yml", ".yaml", ".json") or text.startswith("$ANSIBLE_VAULT"):
        return  # INI, scripts and plugins' configs: Ansible's own parsers judge them
    try:
        data = yaml.load(text, Loader=InventoryYamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "malformed"
        raise UserError(
            f"inventory {shown}{_yaml_position(exc)}: not valid YAML ({problem})",
            exit_code=RC_ERROR,
        ) from None
    if not isinstance(data, dict) or not data:
        found = (
            "an empty file"
            if data is None
            else "an empty mapping"
            if data == {}
            else f"a {type(data).__name__}"
        )
        raise UserError(
            f"inventory {shown}: expected a mapping of groups (all: {{hosts: …}}), found {found}",
            exit_code=RC_ERROR,
        )


def _yaml_position(exc: yaml.YAMLError) -> str:
    """ " at line L, column C" of a YAML error, when the parser knows where it was."""
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def parse_extravars(values: Sequence[str]) -> dict[str, Any]:
    """Merge -e values as ansible-playbook does: key=value pairs, YAML/JSON, or @file."""
    import shlex

    merged: dict[str, Any] = {}
    for raw in values:
        value = raw.strip()
        if not value:
            continue
        if value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise UserError(f"extra vars file {path} does not exist")
            text, where = path.read_text(), str(path)
        elif value[0] in "{[":
            text, where = value, "-e"
        else:
            pairs = {}
            for token in shlex.split(value):
                if "=" not in token:
                    raise UserError(
                        f"malformed extra var {token!r}: use key=value, a JSON/YAML mapping, "
                        "or @file.yml"
                    )
                key, _, val = token.partition("=")
                pairs[key] = val
            merged.update(pairs)
            continue
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(
                f"malformed extra vars in {where}{_yaml_position(exc)}: not valid YAML/JSON"
            ) from None
        if not isinstance(data, dict):
            raise UserError(f"extra vars in {where} must be a mapping of names to values")
        merged.update(data)
    return merged


# --------------------------------------------------------------------------- running


class _Cancel:
    """SIGINT/SIGTERM ask ansible-runner to stop; the run ends as 'canceled'."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.requested.is_set()

    def install(self) -> dict[int, Any]:
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._handle)
        return previous

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum
        self.requested.set()


def execute(request: RunRequest, observers: Sequence[Observer] = ()) -> RunResult:
    """Run the playbook, feeding every event to the observers, and return the outcome."""
    import ansible_runner

    started = datetime.now(UTC)
    for observer in observers:
        observer.on_start(request)

    final: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_stats":
            final.update(event.get("event_data") or {})
        for observer in observers:
            observer.on_event(event)
        return True

    Path(request.runner_kwargs()["private_data_dir"]).mkdir(parents=True, exist_ok=True)
    cancel = _Cancel()
    previous = cancel.install() if threading.current_thread() is threading.main_thread() else {}
    try:
        if request.node is not None:
            from runner.remote import execute_remote

            result = execute_remote(request, request.node, on_event, cancel)
        else:
            result = ansible_runner.run(
                **request.runner_kwargs(),
                event_handler=on_event,
                cancel_callback=cancel,
            )

    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status = result.status
    rc = result.rc if isinstance(result.rc, int) else _rc_from_stats(status, final)
    if status == "canceled":
        rc = RC_INTERRUPTED
    elif status == "timeout":
        rc = RC_TIMEOUT
    stats = _final_stats(result)
    outcome = RunResult(
        run_id=request.run_id,
        status=status,
        rc=rc,
        stats=stats,
        artifacts=_artifact_dir(result),
        started=started,
        finished=datetime.now(UTC),
    )
    for observer in observers:
        observer.on_finish(outcome)
    return outcome


def _rc_from_stats(status: str, stats: dict[str, Any]) -> int:
    """ansible-playbook's exit code, for a result that does not carry it (a remote run)."""
    if status == "successful":
        return RC_OK
    if stats.get("dark"):
        return RC_HOST_UNREACHABLE
    if stats.get("failures"):
        return RC_HOST_FAILED
    return RC_ERROR


def _artifact_dir(result: Any) -> Path | None:
    path = getattr(result, "artifact_dir", None) or getattr(
        getattr(result, "config", None), "artifact_dir", None
    )
    return Path(path) if path else None


def _final_stats(result: Any) -> dict[str, dict[str, int]]:
    """Per-host counters from the playbook_on_stats event."""
    # A remote run's result (ansible-runner's stream Processor) has no stats: the
    # recorder takes them from the playbook_on_stats event, as for every run.
    raw = getattr(result, "stats", None) or {}
    hosts: dict[str, dict[str, int]] = {}
    for counter, per_host in raw.items():
        if not isinstance(per_host, dict):
            continue
        for host, count in per_host.items():
            hosts.setdefault(host, {})[counter] = int(count)
    return hosts


def to_json(result: RunResult) -> str:
    return json.dumps(
        {
            "run_id": result.run_id,
            "status": result.status,
            "rc": result.rc,
            "stats": result.stats,
            "started": result.started.isoformat(),
            "finished": result.finished.isoformat(),
        },
        indent=2,
    )
