"""Fleet scale: how a run grows with the number of hosts and with forks.

A simulated fleet of N inventory hosts with distinct names, reached with the local
connection (each still runs its modules in its own process, as a remote host would), runs
an idempotent playbook of module, controller-side and conditional tasks. For each size and
forks setting, `techops run` and plain `ansible-playbook` run side by side on the same
inventory; the bench prints their wall times and ratio, the peak memory of the whole
controller process tree (every process the run starts, sampled, as PSS), the size the run adds to
a fresh ledger, and the time to render its HTML report. Time per (hosts / forks) shows
whether growth is linear.

    .venv/bin/python bench/fleet_scale.py [--hosts 50,100,200] [--forks 5,20] [--tasks 6]

Needs no lab: everything runs on this machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from benchlib import record_option, recorded

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def playbook(tasks: int) -> list[dict]:
    """An idempotent play: a third module runs, the rest on the controller, like a site run
    where most tasks find nothing to do."""
    steps: list[dict] = []
    for i in range(tasks):
        kind = i % 3
        if kind == 0:
            steps.append(
                {
                    "name": f"Read a file ({i})",
                    "ansible.builtin.stat": {"path": "/etc/hostname"},
                    "register": f"probe_{i}",
                }
            )
        elif kind == 1:
            steps.append(
                {
                    "name": f"Keep a fact ({i})",
                    "ansible.builtin.set_fact": {f"fleet_fact_{i}": "{{ inventory_hostname }}"},
                }
            )
        else:
            steps.append(
                {
                    "name": f"Check it ({i})",
                    "ansible.builtin.assert": {
                        "that": [f"fleet_fact_{i - 1} == inventory_hostname"],
                        "quiet": True,
                    },
                }
            )
    return [{"name": "Fleet", "hosts": "fleet", "gather_facts": False, "tasks": steps}]


def inventory(hosts: int) -> dict:
    names = {f"node{i:04d}.fleet.example": None for i in range(hosts)}
    return {
        "all": {
            "children": {"fleet": {"hosts": names}},
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
            },
        }
    }


def _pss(pid: int) -> int:
    """Proportional set size: a forked worker's pages shared with its parent count once
    across them, not once per process as RSS would."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_memory(root: int) -> int:
    """Memory of a process and all its descendants, in bytes (sum of PSS)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _pss(pid)
        todo.extend(children.get(pid, []))
    return total


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and peak tree memory of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_memory(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    took = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:3])} … exited {proc.returncode}:\n{err[-2000:]}")
    return took, peak


def report_time(run_id: str, ledger: str) -> float:
    from runner.ledger.store import Ledger
    from runner.reports.run import run_report

    opened = Ledger.open(ledger)
    start = time.perf_counter()
    run_report(opened, run_id, "html")
    took = time.perf_counter() - start
    opened.close()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="50,100,200", help="fleet sizes, comma-separated")
    parser.add_argument("--forks", default="5,20", help="forks settings, comma-separated")
    parser.add_argument("--tasks", type=int, default=6, help="tasks in the play")
    record_option(parser)
    args = parser.parse_args()
    with recorded("fleet_scale", enabled=args.record):
        return run(args)


def run(args: argparse.Namespace) -> int:
    sizes = [int(n) for n in args.hosts.split(",")]
    forks_list = [int(n) for n in args.forks.split(",")]
    sys.path.insert(0, str(REPO))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    print(f"{args.tasks} tasks a host; local connection; {os.cpu_count()} cores")
    print(
        f"{'hosts':>5} {'forks':>5} {'plain s':>8} {'techops s':>9} {'ratio':>6} "
        f"{'s per host/fork':>15} {'peak MiB':>8} {'ledger MB':>9} {'report s':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="techops-fleet-") as tmp:
        work = Path(tmp)
        (work / "fleet.yml").write_text(yaml.safe_dump(playbook(args.tasks), sort_keys=False))
        for hosts in sizes:
            inv = work / f"hosts-{hosts}.yml"
            inv.write_text(yaml.safe_dump(inventory(hosts)))
            for forks in forks_list:
                db = work / f"ledger-{hosts}-{forks}.sqlite3"
                ledger = f"sqlite:///{db}"
                plain = [str(BIN / "ansible-playbook"), "-i", str(inv), "-f", str(forks)]
                wrapped = [str(BIN / "techops"), "run", str(work / "fleet.yml"), "-i", str(inv)]
                wrapped += ["-f", str(forks), "--ledger", ledger]
                plain_s, _ = measured([*plain, str(work / "fleet.yml")], env)
                wrapped_s, peak = measured(wrapped, env)
                from runner.ledger.store import Ledger
                from runner.reports.model import load_runs

                opened = Ledger.open(ledger)
                (run_id,) = load_runs(opened)
                opened.close()
                size_mb = sum(p.stat().st_size for p in work.glob(f"{db.name}*")) / 1e6
                print(
                    f"{hosts:>5} {forks:>5} {plain_s:>8.1f} {wrapped_s:>9.1f} "
                    f"{wrapped_s / plain_s:>6.2f} {wrapped_s / (hosts / forks):>15.2f} "
                    f"{peak / 2**20:>8.0f} {size_mb:>9.1f} {report_time(run_id, ledger):>8.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
