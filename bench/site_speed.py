"""Speed of the idempotent site playbook on the lab, under three configurations, each
through plain `ansible-playbook` and through `techops run`, alternating:

  (a) Ansible's defaults: only the paths to our roles and plugins are set;
  (b) the repository's ansible.cfg (pipelining, ControlPersist, fact cache, forks);
  (c) the repository's ansible.cfg plus mitogen's strategy (`techops run --fast`).

Prints the median wall time of each and its ratio to (a) through ansible-playbook, with
the spread (min-max) of the rounds.

    .venv/bin/python bench/site_speed.py [--rounds 3] [-i inventories/lab/hosts.yml]

Needs the lab (`scripts/lab` or `techops lab up` then one converging run of site.yml).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

DEFAULTS_CFG = """[defaults]
roles_path = {repo}/roles
library = {repo}/plugins/modules
module_utils = {repo}/plugins/module_utils
filter_plugins = {repo}/plugins/filter
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(
            f"bench: {' '.join(argv[:4])} … exited {proc.returncode}:\n"
            f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
        )
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-i", "--inventory", default="inventories/lab/hosts.yml")
    parser.add_argument("--playbook", default="playbooks/site.yml")
    args = parser.parse_args()
    if not (REPO / args.inventory).exists():
        sys.exit(f"bench: {args.inventory} does not exist: run `techops lab up` first")
    with tempfile.TemporaryDirectory() as tmp:
        defaults = Path(tmp) / "defaults.cfg"
        defaults.write_text(DEFAULTS_CFG.format(repo=REPO))
        base = dict(
            os.environ,
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            TECHOPS_LEDGER=f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}",
        )
        from runner.run import mitogen_settings

        configs = {
            "a": {"ANSIBLE_CONFIG": str(defaults), "TECHOPS_ANSIBLE_CONFIG": str(defaults)},
            "b": {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
            "c": {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), **mitogen_settings()},
        }
        plain = [str(BIN / "ansible-playbook"), "-i", args.inventory, args.playbook]
        wrapped = [str(BIN / "techops"), "run", args.playbook, "-i", args.inventory]
        times: dict[str, list[float]] = {}
        timed(plain, {**base, **configs["b"]})  # warm caches and control sockets
        for _ in range(args.rounds):
            for name, extra in configs.items():
                env = {**base, **extra}
                times.setdefault(f"{name} ansible-playbook", []).append(timed(plain, env))
                argv = wrapped + (["--fast"] if name == "c" else [])
                times.setdefault(f"{name} techops run", []).append(timed(argv, env))
    reference = statistics.median(times["a ansible-playbook"])
    print(f"playbook {args.playbook} on {args.inventory}, {args.rounds} round(s), alternating")
    print(f"{'configuration':<28}{'median s':>10}{'min-max s':>16}{'speed-up vs (a)':>18}")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<28}{median:>10.1f}{f'{min(values):.1f}-{max(values):.1f}':>16}"
            f"{reference / median:>17.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
