"""Helpers shared by the unit and integration tests: one copy of each."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def techops(
    *args: str,
    check: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in a process of its own (`env` is added to ours;
    `input`, when given, is its stdin: a pipe, never a terminal)."""
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=cwd,
        input=input,
        text=True,
        capture_output=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"techops {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def load_plugin(relative: str) -> ModuleType:
    """Import a plugin file (plugins/...) the way Ansible finds it: by path."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(f"techops_test_{path.stem}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def container_address(name: str) -> str:
    """A podman container's IPv4 address on its network (molecule instances, lab hosts)."""
    out = subprocess.run(
        ["podman", "inspect", "--format", "{{json .NetworkSettings.Networks}}", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for network in json.loads(out).values():
        if network.get("IPAddress"):
            return str(network["IPAddress"])
    raise AssertionError(f"container {name} has no address on a podman network")


VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def render_with_ansible(
    playbook: str, inventory: dict, workdir: Path, extra: dict
) -> subprocess.CompletedProcess[str]:
    """Run one of the rendering playbooks of tests/fixtures (roles' templates rendered by
    Ansible itself, on localhost) with the repository's ansible.cfg. `extra` goes in as
    extra vars: they outrank the role defaults a rendering playbook loads as vars_files."""
    (workdir / "inventory.yml").write_text(json.dumps(inventory))
    return subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(workdir / "inventory.yml"),
            str(REPO / playbook),
            "-e",
            json.dumps({"ansible_python_interpreter": str(VENV_BIN / "python"), **extra}),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            # Rendering is not a run to record.
            "ANSIBLE_CALLBACKS_ENABLED": "jinja_plugins_preload",
        },
    )


# How the tests' OpenSSH client reaches a throwaway instance: no configuration file, no host
# key records (instances are new every time), a short connect timeout, quiet.
SSH_BASE_OPTIONS = [
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "ConnectTimeout=5",
    "-o", "LogLevel=ERROR",
]  # fmt: skip


def ssh_client(
    target: str,
    *command: str,
    key: Path | None,
    options: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: int = 30,
) -> subprocess.CompletedProcess[str]:
    """Run the OpenSSH client as a user would (`target` is USER@ADDRESS) and return the
    finished process. `key` is the only key offered (None: none); BatchMode (no prompts)
    unless `options` say otherwise; no agent."""
    # ssh keeps the first value given for an option: the caller's own options go first.
    args = ["ssh", *(options or ["-o", "BatchMode=yes"]), *SSH_BASE_OPTIONS]
    if key is not None:
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    run_env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    run_env.update(env or {})
    return subprocess.run(
        [*args, target, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=run_env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
