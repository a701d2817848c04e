"""Inventories, read in one place: which one a run uses, whether Ansible could use it,
its files, and the hosts and groups a limit selects.

A plain YAML inventory is read directly (this runs before every run, and loading
Ansible's inventory machinery costs a noticeable fraction of a short run); anything else
(INI, scripts, plugin configurations, patterns) goes through Ansible itself.
"""

from __future__ import annotations

import configparser
import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from runner.core.errors import UserError, yaml_position
from runner.core.paths import repo_root


class InventoryYamlLoader(yaml.SafeLoader):
    """Reads inventory YAML without Ansible: !vault and other tags load as plain values."""


def _any_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node)


InventoryYamlLoader.add_multi_constructor("!", _any_tag)


def is_host_list(inventory: str) -> bool:
    """An explicit host list ("web1,web2,"), as ansible-playbook accepts, not a path."""
    return "," in inventory and not Path(inventory).exists()


def default_inventory() -> str:
    """The inventory ansible.cfg names: the lab, never production."""
    cfg = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    cfg.read(repo_root() / "ansible.cfg")
    return cfg.get("defaults", "inventory", fallback="inventories/lab/hosts.yml")


def resolve_inventory(value: str | None) -> str:
    """The inventory to use, as an absolute path (or a host list), checked to exist."""
    value = value or default_inventory()
    if is_host_list(value):
        return value
    path = Path(value)
    if not path.is_absolute():
        path = (Path.cwd() / value) if (Path.cwd() / value).exists() else repo_root() / value
    if not path.exists():
        hint = (
            " — run `techops lab up` to create the lab and its inventory"
            if "inventories/lab" in value
            else ""
        )
        raise UserError(f"inventory {value} does not exist{hint}")
    if path.is_file():
        check_inventory_file(path, value)
    return str(path.resolve())


def check_inventory_file(path: Path, shown: str) -> None:
    """Refuse an inventory file Ansible could not use. Ansible itself only warns and runs
    against an empty inventory (exit 0, "no hosts matched"), which a scheduled job would
    record as a success."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UserError(f"inventory {shown} is not readable: {reason}") from None
    if path.suffix not in (".yml", ".yaml", ".json") or text.startswith("$ANSIBLE_VAULT"):
        return  # INI, scripts and plugins' configs: Ansible's own parsers judge them
    try:
        data = yaml.load(text, Loader=InventoryYamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "malformed"
        raise UserError(
            f"inventory {shown}{yaml_position(exc)}: not valid YAML ({problem})"
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
            f"inventory {shown}: expected a mapping of groups (all: {{hosts: …}}), found {found}"
        )


def inventory_files(inventory: str) -> tuple[Path, list[Path]]:
    """An inventory's own files and the directory they are relative to: a file with the
    group_vars/ and host_vars/ beside it, or every file of a directory; none for a host
    list. One definition for what is hashed, scanned for secrets and sent to a node."""
    path = Path(inventory)
    if path.is_dir():
        return path, sorted(p for p in path.rglob("*") if p.is_file())
    if not path.is_file():
        return path.parent, []
    files = [path]
    for sub in ("group_vars", "host_vars"):
        if (path.parent / sub).is_dir():
            files += sorted(p for p in (path.parent / sub).rglob("*") if p.is_file())
    return path.parent, files


def inventory_digest(inventory: str) -> str:
    """sha256 over the inventory's files (hosts, group_vars, host_vars) in a stable order."""
    digest = hashlib.sha256()
    base, files = inventory_files(inventory)
    if not files:
        digest.update(inventory.encode())
    for file in files:
        digest.update(str(file.relative_to(base)).encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


_PLAIN = re.compile(r"^[A-Za-z0-9_.-]+$")


def yaml_groups(path: Path) -> dict[str, set[str]] | None:
    """Group name -> hosts of a plain YAML inventory file, or None when it is anything
    else (a directory, a script, a plugin configuration, INI)."""
    if not path.is_file() or path.suffix not in (".yml", ".yaml"):
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or "plugin" in data:
        return None
    # A group's own hosts and its children, wherever in the file the group appears: a
    # child may be only a reference (`backup_clients: {children: {app: }}`) to a group
    # whose hosts are listed elsewhere.
    hosts: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}

    def walk(name: str, node: object) -> None:
        hosts.setdefault(name, set())
        children.setdefault(name, set())
        if not isinstance(node, dict):
            return
        if isinstance(node.get("hosts"), dict):
            hosts[name] |= set(node["hosts"])
        if isinstance(node.get("children"), dict):
            for child, sub in node["children"].items():
                children[name].add(child)
                walk(child, sub)

    for name, node in data.items():
        walk(name, node)
    if any("[" in str(host) for listed in hosts.values() for host in listed):
        return None  # host ranges (app[1:3]): Ansible expands them, not this reader

    def members(name: str, seen: frozenset[str]) -> set[str]:
        found = set(hosts[name])
        for child in children[name] - seen:
            found |= members(child, seen | {child})
        return found

    groups = {name: members(name, frozenset({name})) for name in hosts}
    groups.setdefault("all", set()).update(*groups.values())
    return groups


def resolve_hosts(inventory: str, limit: str | None) -> list[str]:
    """The inventory hosts a run may touch (its --limit applied), as Ansible resolves them."""
    groups = yaml_groups(Path(inventory))
    if groups is not None:
        tokens = [t for t in re.split(r"[,:]", limit or "all") if t]
        if all(_PLAIN.match(t) for t in tokens):
            chosen: set[str] = set()
            for token in tokens:
                if token in groups:
                    chosen |= groups[token]
                elif token in groups["all"]:
                    chosen.add(token)
                else:
                    chosen = set()  # unknown name: let Ansible decide what it means
                    break
            else:
                return sorted(chosen)
    return [host.name for host in _ansible_hosts(inventory, limit)]


def inventory_hosts(inventory: str) -> dict[str, frozenset[str]]:
    """Every host of an inventory with the groups it belongs to, `all` included: a plain
    YAML file read directly, anything else (a directory, INI, a script, a host list)
    through Ansible, as resolve_hosts does."""
    groups = yaml_groups(Path(inventory))
    if groups is not None:
        members: dict[str, set[str]] = {}
        for group, hosts in groups.items():
            for host in hosts:
                members.setdefault(host, {"all"}).add(group)
        return {host: frozenset(names) for host, names in sorted(members.items())}
    return {
        host.name: frozenset({"all", *(group.name for group in host.get_groups())})
        for host in sorted(_ansible_hosts(inventory, None), key=lambda h: h.name)
    }


def host_identities(inventory: Path) -> set[str]:
    """Every name and address (ansible_host) an inventory gives its hosts: what a host list
    (`-i 203.0.113.21,`) would have to name to reach one of them. A directory's inventory
    files are read, not its group_vars or host_vars; a file that is not plain YAML is read
    through Ansible."""
    if inventory.is_dir():
        files = sorted(p for p in inventory.iterdir() if p.is_file() and not p.name.startswith("."))
    else:
        files = [inventory] if inventory.is_file() else []
    found: set[str] = set()
    for path in files:
        data: Any = None
        if path.suffix in (".yml", ".yaml"):
            try:
                data = yaml.load(path.read_text(), Loader=InventoryYamlLoader)  # noqa: S506
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            if not isinstance(data, dict) or "plugin" in data:
                data = None
            elif not any(isinstance(v, dict) for v in data.values()):
                continue  # a YAML file of variables (vault.example.yml), not an inventory
        if data is None:
            # Ansible warns about a source it cannot parse, and it names no host.
            for host in _ansible_hosts(str(path), None):
                found.add(host.name)
                if host.vars.get("ansible_host"):
                    found.add(str(host.vars["ansible_host"]))
            continue
        _walk_identities(data, found)
    return found


def _walk_identities(node: Any, found: set[str]) -> None:
    if not isinstance(node, dict):
        return
    for group in node.values():
        if not isinstance(group, dict):
            continue
        hosts = group.get("hosts")
        if isinstance(hosts, dict):
            for host, variables in hosts.items():
                found.add(str(host))
                if isinstance(variables, dict) and variables.get("ansible_host"):
                    found.add(str(variables["ansible_host"]))
        _walk_identities(group.get("children"), found)


def host_groups(inventory: str, limit: str | None) -> set[str]:
    """The inventory groups of the hosts a limit selects (freezes apply by group)."""
    groups: set[str] = set()
    for host in _ansible_hosts(inventory, limit):
        groups |= {g.name for g in host.get_groups()}
    return groups


def _ansible_hosts(inventory: str, limit: str | None) -> list[Any]:
    # Imported here, not at the top: ansible's inventory machinery takes 0.15 s to import
    # (measured on the lab controller, 2 cores), and resolve_hosts needs it only for
    # inventories it cannot read itself.
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.display import Display

    Display().verbosity = 0
    manager = InventoryManager(loader=DataLoader(), sources=[inventory])
    if limit:
        manager.subset(limit)
    return list(manager.get_hosts("all"))
