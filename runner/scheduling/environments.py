"""Environments: which inventories are production, staging or the lab, and which are
protected, read from environments.yml at the repository root (or TECHOPS_ENVIRONMENTS).

One place says it, so that every run, by hand or scheduled, is judged the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.core.errors import UserError
from runner.core.inventory import host_identities, is_host_list
from runner.core.paths import repo_root

DEFAULT_FILE = "environments.yml"
KEYS = {"name", "inventories", "protected", "approvals", "allowed_signers"}
# The allowed-signers file approvals are checked against, unless an environment names one.
DEFAULT_SIGNERS = "allowed_signers"


@dataclass(frozen=True)
class Environment:
    name: str
    inventories: tuple[Path, ...]  # absolute
    protected: bool
    # Signed approvals a change needs before it may run here, by people other than its
    # requester (runner.scheduling.changes); 0: a reason and a ticket are enough.
    approvals: int = 0
    allowed_signers: Path | None = None  # absolute; set when approvals are required

    def holds(self, inventory: Path) -> bool:
        return any(inventory == path or path in inventory.parents for path in self.inventories)


def default_path() -> Path:
    env = os.environ.get("TECHOPS_ENVIRONMENTS")
    return Path(env) if env else repo_root() / DEFAULT_FILE


def load(path: Path | None = None) -> list[Environment]:
    """The declared environments. A missing default file declares none; a file named by
    TECHOPS_ENVIRONMENTS must exist, and every problem is one line naming the entry."""
    named = path is not None or "TECHOPS_ENVIRONMENTS" in os.environ
    path = path or default_path()
    if not path.is_file():
        if named:
            raise UserError(f"environments file {path} does not exist")
        return []
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot be read as YAML ({type(exc).__name__})") from None
    specs = (data or {}).get("environments") if isinstance(data, dict) else None
    if not isinstance(specs, list):
        raise UserError(f"{path}: expected `environments:`, a list of {{name, inventories}}")
    # Relative inventory paths are the repository's, as in schedules.yml.
    found = [_environment(spec, f"{path}: environments[{i}]") for i, spec in enumerate(specs)]
    names = [e.name for e in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"{path}: environment {duplicates[0]!r} is declared twice")
    return found


def _environment(spec: Any, where: str) -> Environment:
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected a mapping with name, inventories and protected")
    unknown = set(spec) - KEYS
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
            f"(known: {', '.join(sorted(KEYS))})"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}: an environment needs a name")
    inventories = spec.get("inventories")
    if (
        not isinstance(inventories, list)
        or not inventories
        or not all(isinstance(i, str) and i for i in inventories)
    ):
        raise UserError(f"{where} ({name}): inventories must be a list of paths")
    protected = spec.get("protected", False)
    if not isinstance(protected, bool):
        raise UserError(f"{where} ({name}): protected must be true or false")
    paths = tuple(
        (Path(i) if Path(i).is_absolute() else repo_root() / i).resolve() for i in inventories
    )
    approvals = spec.get("approvals", 0)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 0:
        raise UserError(f"{where} ({name}): approvals must be a whole number, 0 or more")
    if approvals and not protected:
        raise UserError(
            f"{where} ({name}): approvals apply to protected environments only: "
            "set protected: true, or remove approvals"
        )
    signers = spec.get("allowed_signers", DEFAULT_SIGNERS)
    if not isinstance(signers, str) or not signers:
        raise UserError(f"{where} ({name}): allowed_signers must be a file path")
    signers_path = Path(signers) if Path(signers).is_absolute() else repo_root() / signers
    return Environment(name, paths, protected, approvals, signers_path if approvals else None)


def environment_of(inventory: str, environments: list[Environment]) -> Environment | None:
    """The environment an inventory belongs to, if one declares it; a protected one first.
    A directory also belongs to every environment whose inventory it contains, by path or
    through a link (`-i inventories` reads production too). A host list ("web1,web2,")
    belongs to the protected environment one of whose hosts it names, by name or address:
    `-i 203.0.113.21,` reaches production's app1 as surely as its inventory does; so does
    an inventory file no environment declares."""
    if is_host_list(inventory):
        named = {item.strip() for item in inventory.split(",") if item.strip()}
        return _naming_protected_hosts(named, environments)
    path = Path(inventory).resolve()
    sources = [path]
    if path.is_dir():
        for root, dirs, files in os.walk(path, followlinks=True):
            sources += [(Path(root) / name).resolve() for name in [*dirs, *files]]
    found = [e for e in environments if any(e.holds(s) or s in e.inventories for s in sources)]
    found += [e for e in environments if any(path in p.parents for p in e.inventories)]
    candidates = [e for e in found if e.protected] or found
    if candidates:
        return candidates[0]
    # An inventory no environment declares, naming a protected host (a copy of production's
    # hosts.yml in /tmp): it reaches those hosts as surely as the declared one does.
    return _naming_protected_hosts(host_identities(path), environments)


def _naming_protected_hosts(named: set[str], environments: list[Environment]) -> Environment | None:
    if not named:
        return None
    for environment in environments:
        if environment.protected and any(
            named & host_identities(path) for path in environment.inventories
        ):
            return environment
    return None
