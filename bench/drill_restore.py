"""The drill's restore step against a plain `borg extract` of the same archive, side by side.

Each round runs the drill (playbooks/dr_drill.yml, keeping what it restored so that its
key and passphrase stay on the standby) and reads, from its events, the wall time of its
restore task ("Restore the files from the latest archive", Ansible's overhead included);
then runs a plain `borg extract` of the same archive and paths into a scratch directory on
the standby and reads the time borg itself took there. Rounds alternate so that drift in
the machine's load affects both alike. Prints the medians and the ratio drill/plain; a
last drill without dr_drill_keep cleans the standby up.

    .venv/bin/python bench/drill_restore.py -i INVENTORY -e @VARS [--rounds 3]

The inventory needs a backup server, a backed-up source and a standby (the lab, or the
molecule backup scenario's instances: molecule/backup/vars/scenario.yml and the SSH inventory its
prepare step writes), and a first backup made.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESTORE_TASK = "Restore the files from the latest archive"
DRILL_DIR = "/var/lib/techops-dr-drill"
# Inside the drill's own directory: the final drill's cleanup removes it whatever happens.
SCRATCH = f"{DRILL_DIR}/bench-restore"


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            # Fresh facts every run: a cache could hold an earlier instance's host keys.
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def seconds(duration: dict) -> float:
    start = datetime.datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def drill(common: list[str], keep: bool) -> tuple[float, dict, str]:
    """Run the drill; return its restore task's wall time, its task result and the standby."""
    argv = [str(BIN / "ansible-playbook"), *common, "-e", json.dumps({"dr_drill_keep": keep})]
    argv.append("playbooks/dr_drill.yml")
    proc = subprocess.run(
        argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"bench: the drill failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    events = json.loads(proc.stdout[proc.stdout.index("{") :])
    for play in events["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(RESTORE_TASK):
                standby, result = next(iter(task["hosts"].items()))
                return seconds(task["task"]["duration"]), result, standby
    sys.exit(f"bench: no '{RESTORE_TASK}' task in the drill's events")


def plain_extract(common: list[str], standby: str, restore_argv: list[str]) -> float:
    """The same borg extract, run directly on the standby; borg's own time there."""
    env_file = {
        "BORG_RSH": (
            f"ssh -i {DRILL_DIR}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={DRILL_DIR}/known_hosts -o StrictHostKeyChecking=yes"
        ),
        "BORG_PASSCOMMAND": f"cat {DRILL_DIR}/passphrase",
        "BORG_BASE_DIR": f"{DRILL_DIR}/borg",
    }
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_file.items())
    script = (
        f"rm -rf {SCRATCH} && mkdir -p {SCRATCH} && cd {SCRATCH} && "
        f"{exports} {shlex.join(restore_argv)} && rm -rf {SCRATCH}"
    )
    argv = [str(BIN / "ansible"), *common, standby, "-b", "-m", "ansible.builtin.shell"]
    argv += ["-a", script]
    env = ansible_env()
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "true"
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"bench: plain borg extract failed:\n{proc.stdout[-3000:]}")
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    for play in result["plays"]:
        for task in play["tasks"]:
            delta = task["hosts"][standby]["delta"]
            h, m, s = delta.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
    sys.exit("bench: no result from the plain extract")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default="inventories/lab/hosts.yml")
    parser.add_argument("-e", "--extra-vars", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    common = ["-i", args.inventory]
    for extra in args.extra_vars:
        common += ["-e", extra]
    drill_times, plain_times = [], []
    for _ in range(args.rounds):
        took, result, standby = drill(common, keep=True)
        drill_times.append(took)
        plain_times.append(plain_extract(common, standby, result["cmd"]))
    drill(common, keep=False)
    ratios = [d / p for d, p in zip(drill_times, plain_times, strict=True)]
    d_med, p_med = statistics.median(drill_times), statistics.median(plain_times)
    print(f"inventory: {args.inventory}  rounds: {args.rounds}  standby: {standby}")
    print(
        f"drill restore step  median {d_med:.2f} s  "
        f"(min {min(drill_times):.2f}, max {max(drill_times):.2f})"
    )
    print(
        f"plain borg extract  median {p_med:.2f} s  "
        f"(min {min(plain_times):.2f}, max {max(plain_times):.2f})"
    )
    print(
        f"ratio drill/plain   {d_med / p_med:.2f}  (per round {min(ratios):.2f}-{max(ratios):.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
