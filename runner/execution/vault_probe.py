"""The secret values of an inventory, as Ansible itself reads them: run in a process of
its own by `runner.execution.vault.inventory_secrets`.

Every source Ansible parses (YAML, INI, directories, scripts, group_vars and host_vars)
goes through its inventory manager and variable manager, with the run's vault secrets,
so the values found are exactly those a play will see. What counts as secret:
- the value of every variable with a secret-looking name (the redactor's rule by name);
- every `!vault` value, whatever its name, decrypted;
- every value of an inventory file encrypted whole with ansible-vault: encrypting the
  file says its content is secret.

A process of its own because Ansible reads its configuration once, at import, from
ANSIBLE_CONFIG, and keeps global state (display, plugin loader, vault context) that a
long-lived scheduler must not inherit from one job to the next.

Protocol: a JSON request on stdin ({"inventory", "vault_ids", "prompted": {label:
password}}), a JSON answer on stdout ({"values": [...], "passwords": [[label, password], ...]}, or
{"error": "...", "vault": bool} and exit 1).
Passwords travel only through the pipe.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible.cli import CLI
from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import (
    AnsibleVaultError,
    EncryptedString,
    VaultSecret,
    VaultSecretsContext,
    is_encrypted,
)
from ansible.utils.display import Display
from ansible.vars.manager import VariableManager

from runner.core.inventory import inventory_files
from runner.ledger.redact import is_secret_name


def leaves(data: Any) -> set[str]:
    """Every scalar below `data`, as text (vaulted ones decrypted)."""
    found: set[str] = set()
    if isinstance(data, dict):
        for value in data.values():
            found |= leaves(value)
    elif isinstance(data, list | tuple):
        for item in data:
            found |= leaves(item)
    elif isinstance(data, EncryptedString | str | int | float) and not isinstance(data, bool):
        found.add(str(data))  # an EncryptedString decrypts as it becomes text
    return found


def secrets_in(data: Any) -> set[str]:
    """Values under secret-looking names, and every vaulted value, anywhere in `data`."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            found |= leaves(value) if is_secret_name(key) else secrets_in(value)
    elif isinstance(data, list | tuple):
        for item in data:
            found |= secrets_in(item)
    elif isinstance(data, EncryptedString):
        found.add(str(data))
    return found


def vault_secrets(loader: DataLoader, vault_ids: list[str], prompted: dict[str, str]) -> list:
    """The run's vault secrets, as ansible-playbook will hold them: those typed at a
    prompt (passed in), the files and scripts named, and the configured defaults
    (vault_identity_list, vault_password_file)."""
    found: list = [(label, VaultSecret(password.encode())) for label, password in prompted.items()]
    loader.set_vault_secrets(found)
    ids = [*vault_ids, *(C.DEFAULT_VAULT_IDENTITY_LIST or [])]
    if ids or C.DEFAULT_VAULT_PASSWORD_FILE:
        found += CLI.setup_vault_secrets(
            loader, vault_ids=ids, auto_prompt=False, initialize_context=False
        )
    VaultSecretsContext.initialize(VaultSecretsContext(found))
    loader.set_vault_secrets(found)
    return found


def probe(
    inventory: str, vault_ids: list[str], prompted: dict[str, str]
) -> tuple[set[str], list[tuple[str, str]]]:
    """The inventory's secret values, and the vault secrets as loaded (label, password):
    a run on an execution node types them into the node's prompt, since the files and
    scripts that hold them are on this machine."""
    Display().verbosity = 0
    loader = DataLoader()
    loaded = vault_secrets(loader, vault_ids, prompted)
    manager = InventoryManager(loader=loader, sources=[inventory])
    variables = VariableManager(loader=loader, inventory=manager)
    found = inventory_values(loader, manager, variables, [inventory])
    passwords = [
        (label, secret.bytes.decode("utf-8", "surrogateescape")) for label, secret in loaded
    ]
    return found, passwords


def inventory_values(
    loader: DataLoader,
    manager: InventoryManager,
    variables: VariableManager,
    sources: Iterable[str],
) -> set[str]:
    """The secret values of an inventory Ansible has loaded, with the vault secrets it
    holds: here in a process of its own, and in ansible-playbook itself for a run started
    without techops (the ledger callback, runner.scheduling.unwrapped). Every host counts,
    whatever the limit: a play can print another host's variables."""
    found: set[str] = set()
    for host in manager.get_hosts("all", ignore_limits=True, ignore_restrictions=True):
        declared = variables.get_vars(host=host, include_hostvars=False)
        # Cached facts are what hosts reported, not what the inventory declares: their keys
        # are data (a service named systemd-ask-password-console.service), and taking the
        # values beneath such a key for secrets would redact "systemd" from every record.
        declared.pop("ansible_facts", None)
        found |= secrets_in(declared)
    for source in sources:
        for path in inventory_files(source)[1]:
            if _encrypted_whole(path):
                found |= leaves(loader.load_from_file(str(path)))
    return found


def _encrypted_whole(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    return is_encrypted(head.decode("utf-8", errors="replace"))


def main() -> int:
    request = json.load(sys.stdin)
    try:
        values, passwords = probe(request["inventory"], request["vault_ids"], request["prompted"])
    except AnsibleError as exc:
        # Ansible's message, first line: it names the file and why (no secret opens it, a
        # password file missing or failing). Never a password: none is in its messages.
        message = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()
        answer = {
            "error": message[0] if message else type(exc).__name__,
            "vault": isinstance(exc, AnsibleVaultError) or "vault" in str(exc).lower(),
        }
        json.dump(answer, sys.stdout)
        return 1
    json.dump({"values": sorted(values), "passwords": passwords}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
