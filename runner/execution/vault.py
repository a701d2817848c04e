"""Vault passwords for a run, given as ansible-playbook takes them, and never on a command
line, in the environment or on disk by techops.

- `--vault-password-file FILE` and `--vault-id [LABEL@]FILE` name a file or a script:
  ansible-playbook reads it itself (the path, not the password, is on its command line).
- `--ask-vault-pass` and `--vault-id LABEL@prompt` are asked once, here, on the terminal
  (refused without one), and typed into ansible-playbook's own prompt by ansible-runner
  (its `passwords`, answered through a pseudo-terminal, as AWX does): in memory only.
- ansible.cfg's `vault_identity_list` / `vault_password_file` and their ANSIBLE_VAULT_*
  variables apply as they do to ansible-playbook, which reads them itself.

The same secrets open the inventory's vaulted values for the redactor
(`inventory_secrets`), through Ansible's own loader in a process of its own.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.errors import BadOptions, UserError
from runner.core.paths import repo_root

PROMPT_SOURCES = ("prompt", "prompt_ask_vault_pass")
DEFAULT_LABEL = "default"  # ansible's DEFAULT_VAULT_IDENTITY
# The prompts ansible-playbook prints, as ansible-runner must match them (AWX's patterns).
ASK_PATTERN = r"Vault password:\s*?$"


def label_pattern(label: str) -> str:
    return rf"Vault password \({re.escape(label)}\):\s*?$"


@dataclass(frozen=True)
class Vault:
    """The vault secrets of one run."""

    ids: tuple[str, ...] = ()  # [LABEL@]FILE, absolute: ansible-playbook reads them
    prompted: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    ask: str | None = field(default=None, repr=False, compare=False)  # --ask-vault-pass

    @property
    def given(self) -> bool:
        return bool(self.ids or self.prompted or self.ask)

    @classmethod
    def from_options(
        cls,
        password_files: Sequence[str] = (),
        vault_ids: Sequence[str] = (),
        ask: bool = False,
        *,
        prompt: Callable[[str], str] = getpass.getpass,
        interactive: Callable[[], bool] = lambda: sys.stdin.isatty(),
    ) -> Vault:
        """Check the options and ask for the passwords to be typed, before anything runs."""
        ids: list[str] = []
        prompted: dict[str, str] = {}
        for path in password_files:
            ids.append(_password_file(path, "--vault-password-file"))
        for vault_id in vault_ids:
            # As ansible splits it: LABEL@SOURCE at the first @, or SOURCE alone.
            label, _, source = vault_id.partition("@") if "@" in vault_id else ("", "", vault_id)
            if not source:
                raise BadOptions(f"--vault-id {vault_id!r}: name a file, a script or prompt")
            if source in PROMPT_SOURCES:
                label = label or DEFAULT_LABEL
                if label in prompted:
                    raise BadOptions(f"--vault-id {label}@prompt is given twice")
                prompted[label] = _ask(f"Vault password ({label}): ", prompt, interactive)
            else:
                path = _password_file(source, "--vault-id")
                ids.append(f"{label}@{path}" if label else path)
        asked = _ask("Vault password: ", prompt, interactive) if ask else None
        return cls(tuple(ids), prompted, asked)

    def cmdline(self) -> list[str]:
        """ansible-playbook's vault options: paths and prompts, never a password."""
        args: list[str] = []
        for vault_id in self.ids:
            args += ["--vault-id", vault_id]
        for label in self.prompted:
            args += ["--vault-id", f"{label}@prompt"]
        if self.ask is not None:
            args.append("--ask-vault-pass")
        return args

    def passwords(self) -> dict[str, str]:
        """ansible-runner's `passwords`: prompt pattern -> what to type."""
        answers = {label_pattern(label): pw for label, pw in self.prompted.items()}
        if self.ask is not None:
            answers[ASK_PATTERN] = self.ask
        return answers

    def for_node(self, loaded: list[tuple[str, str]]) -> Vault:
        """The same secrets for a run on an execution node: the files and scripts that
        hold them are on this machine, so every one is typed into the node's prompt
        (`LABEL@prompt`), in memory, as a password asked here would be."""
        prompted: dict[str, str] = {}
        for label, password in loaded:
            if prompted.get(label, password) != password:
                raise BadOptions(
                    f"two different vault passwords carry the label {label!r}: for a --node "
                    "run, give each its own label (--vault-id LABEL@FILE)"
                )
            prompted[label] = password
        return Vault(prompted=prompted)

    def known_passwords(self) -> set[str]:
        """The passwords themselves, for the redactor: a task could still print one."""
        return {*self.prompted.values(), *([self.ask] if self.ask else [])}


def _password_file(value: str, option: str) -> str:
    path = Path(value).expanduser()
    if not path.is_file():
        raise BadOptions(f"{option} {value}: no such file (give a vault password file or script)")
    if not os.access(path, os.R_OK):
        raise BadOptions(f"{option} {value}: not readable by this user")
    # Absolute: ansible-playbook runs in the project directory, not the caller's.
    return str(path.resolve())


def _ask(text: str, prompt: Callable[[str], str], interactive: Callable[[], bool]) -> str:
    if not interactive():
        raise BadOptions(
            "a vault password prompt needs a terminal: without one, give "
            "--vault-password-file FILE or --vault-id LABEL@FILE"
        )
    password = prompt(text)
    if not password:
        raise BadOptions("the vault password is empty: nothing was run")
    return password


PROBE_TIMEOUT_S = 300


@dataclass(frozen=True)
class Opened:
    """What reading the inventory with the vault gave: its secret values, and the vault
    secrets as Ansible loaded them (label, password)."""

    values: set[str]
    passwords: list[tuple[str, str]] = field(repr=False)


def inventory_secrets(inventory: str, vault: Vault, env: dict[str, str]) -> Opened:
    """The inventory's secret values as Ansible reads them with this run's vault secrets
    (see runner.execution.vault_probe). A vault password that opens nothing, a missing
    password file, an inventory Ansible cannot parse: one line, and nothing runs (a run
    whose secrets cannot be known cannot be redacted)."""
    request = {"inventory": inventory, "vault_ids": list(vault.ids), "prompted": vault.prompted}
    if vault.ask is not None:
        request["prompted"] = {**vault.prompted, DEFAULT_LABEL: vault.ask}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "runner.execution.vault_probe"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            cwd=repo_root(),
            # No fact cache: the probe reads what the inventory declares, not what hosts
            # reported (see inventory_values).
            env={**os.environ, **env, "ANSIBLE_CACHE_PLUGIN": "memory"},
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"reading the inventory {inventory} took more than {PROBE_TIMEOUT_S} s: nothing was run"
        ) from None
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        lines = proc.stderr.strip().splitlines()
        raise UserError(
            f"cannot read the inventory {inventory} with Ansible: "
            f"{lines[-1] if lines else f'exit {proc.returncode}'}"
        ) from None
    if "error" in answer and answer.get("vault"):
        raise UserError(
            f"inventory {inventory}: {answer['error']} (check the vault password files, "
            "--vault-id or the password typed); nothing was run",
            exit_code=BadOptions.EXIT_CODE,
        )
    if "error" in answer:
        raise UserError(f"inventory {inventory}: {answer['error']}; nothing was run")
    return Opened(set(answer["values"]), [(label, pw) for label, pw in answer["passwords"]])
