"""What the benchmarks that read Ansible's own timings share: running a playbook or an
ad-hoc module with the JSON callback, and the durations it records."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def ansible_env() -> dict[str, str]:
    """The repository's ansible.cfg, with the JSON callback on stdout."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true",
            "ANSIBLE_SHOW_CUSTOM_STATS": "true",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            # Fresh facts every run: a cache could hold an earlier instance's host keys.
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def seconds(duration: dict) -> float:
    """The length of a JSON callback `duration` ({start, end} in ISO 8601)."""
    start = datetime.datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def _record(argv: list[str], what: str) -> dict:
    proc = subprocess.run(
        argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"bench: {what} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def playbook(common: list[str], name: str, extra: dict) -> dict:
    """Run a playbook; its JSON callback record (custom stats included)."""
    argv = [str(BIN / "ansible-playbook"), *common, "-e", json.dumps(extra), name]
    return _record(argv, name)


def adhoc(common: list[str], host: str, module: str, args: str, become: bool = False) -> dict:
    """Run one module on one host; its result there."""
    argv = [str(BIN / "ansible"), *common, host, "-m", module, "-a", args]
    record = _record(argv + (["-b"] if become else []), f"`{module} {args}` on {host}")
    return next(iter(record["plays"][0]["tasks"][0]["hosts"].values()))


def inventory_var(common: list[str], name: str, host: str = "all") -> Any:
    """The value of an inventory variable for a host (the first one for a group)."""
    return adhoc(common, host, "ansible.builtin.debug", f"var={name}")[name]


def evidence(record: dict, kind: str) -> dict[str, dict]:
    """The evidence of this kind each host published with set_stats, by host."""
    found = {}
    for host, stats in (record.get("custom_stats") or {}).items():
        if isinstance(stats, dict) and kind in stats.get("techops_evidence", {}):
            found[host] = stats["techops_evidence"][kind]
    return found
