"""Speed of the idempotent site playbook on the lab, under three configurations, each
through plain `ansible-playbook` and through `techops run`, alternating:

  (a) Ansible's defaults: only the paths to our roles and plugins are set;
  (b) the repository's ansible.cfg (pipelining, ControlPersist, fact cache, forks, the
      Jinja plugin preload callback);
  (c) the repository's ansible.cfg plus mitogen's strategy (`techops run --fast`).

Prints, as median (min-max) over the rounds: the wall time of each, its speed-up against
(a) through ansible-playbook, and techops run's cost against ansible-playbook under the
same settings. Ratios are taken within each round, whose runs are side by side.

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

from benchlib import record_option, recorded

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

DEFAULTS_CFG = """[defaults]
roles_path = {repo}/roles
collections_path = {repo}/collections
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


def spread(values: list[float], digits: int = 1, unit: str = "") -> str:
    """`median (min-max)` of a list of figures."""
    fmt = f"{{:.{digits}f}}{unit}"
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def report(times: dict[str, list[float]]) -> str:
    """The table of a run: each configuration's wall time, its speed-up against (a) through
    ansible-playbook, and the wrapper's cost (techops run against ansible-playbook under the
    same settings). Ratios are taken round by round (the runs of one round are side by
    side), then summarised as median (min-max) over the rounds."""
    reference = times["a ansible-playbook"]
    lines = [
        f"{'configuration':<22}{'wall s, median (min-max)':>28}"
        f"{'speed-up vs (a)':>22}{'techops / plain':>20}"
    ]
    for name, values in times.items():
        speedup = [a / x for a, x in zip(reference, values, strict=True)]
        config, _, entry = name.partition(" ")
        plain = times[f"{config} ansible-playbook"]
        wrapper = (
            spread([w / p for w, p in zip(values, plain, strict=True)], 2, "x")
            if entry == "techops run"
            else ""
        )
        lines.append(f"{name:<22}{spread(values):>28}{spread(speedup, 2, 'x'):>22}{wrapper:>20}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-i", "--inventory", default="inventories/lab/hosts.yml")
    parser.add_argument("--playbook", default="playbooks/site.yml")
    record_option(parser)
    args = parser.parse_args()
    with recorded("site_speed", enabled=args.record):
        return run(args)


def run(args: argparse.Namespace) -> int:
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
        from runner.execution.request import mitogen_settings

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
    print(f"playbook {args.playbook} on {args.inventory}, {args.rounds} round(s), alternating")
    print(report(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
