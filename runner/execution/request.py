"""What defines a run: the request (validated before anything starts), ansible-runner's
arguments built from it in one place (`RunRequest.runner_kwargs`), and the outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from runner.core.errors import UserError, yaml_position
from runner.core.inventory import is_host_list, resolve_inventory
from runner.core.paths import CALLBACK_PLUGINS, repo_root, state_dir
from runner.execution.vault import Vault

# ansible-playbook's own exit codes, kept so that scripts written for it keep working.
RC_OK = 0
RC_ERROR = 1
RC_HOST_FAILED = 2
RC_HOST_UNREACHABLE = 4
RC_INTERRUPTED = 99
RC_TIMEOUT = 124  # as timeout(1): the run was cancelled for exceeding its maximum run time

# What a run started by techops tells the ledger callback in ansible-playbook
# (techops.ops.techops_ledger), which records runs started outside techops: this
# variable names the run, so that it is recorded once, by techops. The callback takes it
# only when the ledger holds that run open and the process that opened it is an ancestor
# of ansible-playbook (runner.scheduling.unwrapped).
RUN_MARKER = "TECHOPS_RUN_ID"
# On an execution node the run is recorded by the controller, whose ledger the node
# cannot read: this variable, set with RUN_MARKER in the job (runner.execution.remote),
# keeps the node's callback quiet.
NODE_MARKER = "TECHOPS_RUN_NODE"


class Target(Protocol):
    """What to run, as the command line or a job of schedules.yml names it."""

    @property
    def playbook(self) -> str: ...
    @property
    def inventory(self) -> str | None: ...
    @property
    def limit(self) -> str | None: ...
    @property
    def tags(self) -> str | None: ...
    @property
    def skip_tags(self) -> str | None: ...


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
    node: Any = None  # a runner.execution.remote.Node: run there through ansible-runner streaming
    fast: bool = False  # mitogen's strategy: far fewer round trips per task
    vault: Vault = field(default_factory=Vault)
    run_id: str = field(default_factory=lambda: new_run_id())
    # The ledger recording this run, set by its recorder when the run starts: the ledger
    # callback in ansible-playbook looks for the run there (`--ledger` may name another
    # than TECHOPS_LEDGER, which the callback would read otherwise).
    ledger_url: str | None = None

    @classmethod
    def resolve(cls, target: Target, **fields: Any) -> RunRequest:
        """A request for what a user or a job names: the playbook and the inventory found
        and checked before anything starts (the inventory defaults to ansible.cfg's)."""
        return cls(
            playbook=resolve_playbook(target.playbook),
            inventory=resolve_inventory(target.inventory),
            limit=target.limit,
            tags=target.tags,
            skip_tags=target.skip_tags,
            **fields,
        )

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
        return args + self.vault.cmdline()

    def write_extravars(self, private_data_dir: Path) -> Path | None:
        """The extra vars as ansible-runner's env/extravars file, readable by this user
        only: ansible-runner passes its path (`-e @FILE`), so no value is on
        ansible-playbook's command line, where any local user reads it. The caller
        removes it when the run ends (`remove_extravars`)."""
        if not self.extravars:
            return None
        env = private_data_dir / "env"
        env.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = env / "extravars"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.extravars, handle)
        return path

    @staticmethod
    def remove_extravars(private_data_dir: Path) -> None:
        (private_data_dir / "env" / "extravars").unlink(missing_ok=True)

    def ansible_env(self) -> dict[str, str]:
        """The environment ansible-playbook runs with, beyond the caller's own."""
        root = repo_root()
        bindir = str(Path(sys.executable).parent)
        return {
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
            # This run is recorded by techops: the ledger callback, which records runs
            # started with plain ansible-playbook, must not record it a second time.
            RUN_MARKER: self.run_id,
            **({"TECHOPS_LEDGER": self.ledger_url} if self.ledger_url else {}),
        }

    def runner_kwargs(self) -> dict[str, Any]:
        """The one place where ansible-runner's arguments are built."""
        root = repo_root()
        envvars = {
            **self.ansible_env(),
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
            "inventory": [self.inventory] if is_host_list(self.inventory) else self.inventory,
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
        if self.vault.passwords():
            # Typed into ansible-playbook's own prompt through a pseudo-terminal; with
            # suppress_env_files, ansible-runner keeps them in memory only.
            kwargs["passwords"] = self.vault.passwords()
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
    return shlex.quote(arg)


def mitogen_settings() -> dict[str, str]:
    """Environment that selects mitogen's linear strategy (PyPI `mitogen`, pinned in
    pyproject.toml): one persistent interpreter per host instead of a module upload and a
    Python start per task."""
    try:  # here, not at the top: only --fast needs it, and its absence is said in one line
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

    return state_dir() / "facts" / hashlib.sha256(inventory.encode()).hexdigest()[:12]


def new_run_id() -> str:
    """Sortable by time, unique across controllers: 20261122T031502Z-3f9a1c."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


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


def parse_extravars(values: Sequence[str]) -> dict[str, Any]:
    """Merge -e values as ansible-playbook does: key=value pairs, YAML/JSON, or @file."""

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
                f"malformed extra vars in {where}{yaml_position(exc)}: not valid YAML/JSON"
            ) from None
        if not isinstance(data, dict):
            raise UserError(f"extra vars in {where} must be a mapping of names to values")
        merged.update(data)
    return merged


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
