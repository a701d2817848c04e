"""The drill's restore step against a plain `borg extract` of the same archive, side by side.

Each round runs the drill (playbooks/dr_drill.yml, keeping what it restored so that its
key and passphrase stay on the standby) and reads, from its events, the wall time of its
restore task ("Restore the files from the latest archive", Ansible's overhead included);
then runs a plain `borg extract` of the same archive and paths into a scratch directory on
the standby and reads the time borg itself took there. Rounds alternate so that drift in
the machine's load affects both alike. Prints the medians and the ratio drill/plain; a
last drill without dr_drill_keep cleans the standby up.

    .venv/bin/python bench/drill_restore.py -i INVENTORY -e @VARS [--rounds 3] [--dataset-mib 1024]

With --dataset-mib N, it first adds N MiB of incompressible data to the source's backup
(a file under /srv/techops-bench on the source, backed up through playbooks/backup.yml)
and restores it in every drill, then reports the RTO the drill itself measured (drill
start to verified service) for that dataset; the data is removed from the source after.

The inventory needs a backup server, a backed-up source and a standby (the lab, or the
molecule backup scenario's instances: molecule/backup/vars/scenario.yml and the SSH inventory its
prepare step writes), and a first backup made.
"""

from __future__ import annotations

import argparse
import shlex
import statistics

from benchlib import adhoc, evidence, inventory_var, playbook, record_option, recorded, seconds

RESTORE_TASK = "Restore the files from the latest archive"
DRILL_DIR = "/var/lib/techops-dr-drill"
# Inside the drill's own directory: the final drill's cleanup removes it whatever happens.
SCRATCH = f"{DRILL_DIR}/bench-restore"
BENCH_DATA = "/srv/techops-bench"


def drill(common: list[str], keep: bool, extra: dict) -> tuple[float, dict, str, dict]:
    """Run the drill; return its restore task's wall time, its task result, the standby
    and the drill evidence the role published."""
    events = playbook(common, "playbooks/dr_drill.yml", {**extra, "dr_drill_keep": keep})
    drilled: dict = next(iter(evidence(events, "drill").values()), {})
    for play in events["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(RESTORE_TASK):
                standby, result = next(iter(task["hosts"].items()))
                return seconds(task["task"]["duration"]), result, standby, drilled
    raise SystemExit(f"bench: no '{RESTORE_TASK}' task in the drill's events")


def add_dataset(common: list[str], mib: int) -> dict:
    """Put N MiB of random data into the source's backup; the extra vars that back it up
    and restore it."""
    source = inventory_var(common, "dr_drill_source_host")
    paths = inventory_var(common, "backup_paths", source)
    restored = inventory_var(common, "dr_drill_paths", source)
    script = f"mkdir -p {BENCH_DATA} && head -c {mib}M /dev/urandom > {BENCH_DATA}/dataset.bin"
    adhoc(common, source, "ansible.builtin.shell", script, become=True)
    extra = {
        "backup_paths": [*paths, BENCH_DATA],
        "dr_drill_paths": [*restored, BENCH_DATA.lstrip("/")],
    }
    playbook(common, "playbooks/backup.yml", {**extra, "backup_run_now": True})
    return extra


def plain_extract(common: list[str], standby: str, restore_argv: list[str]) -> float:
    """The same borg extract, run directly on the standby into an empty directory; borg's
    own time there."""
    env_file = {
        "BORG_RSH": (
            f"ssh -i {DRILL_DIR}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={DRILL_DIR}/known_hosts -o StrictHostKeyChecking=yes"
        ),
        "BORG_PASSCOMMAND": f"cat {DRILL_DIR}/passphrase",
        "BORG_BASE_DIR": f"{DRILL_DIR}/borg",
    }
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_file.items())
    # Emptying the scratch directory is not borg's work: it happens in calls of its own, so
    # that the time taken is the extract's alone (the drill's task does no such deletion).
    shell = "ansible.builtin.shell"
    adhoc(common, standby, shell, f"rm -rf {SCRATCH} && mkdir -p {SCRATCH}", become=True)
    script = f"cd {SCRATCH} && {exports} {shlex.join(restore_argv)}"
    result = adhoc(common, standby, shell, script, become=True)
    adhoc(common, standby, shell, f"rm -rf {SCRATCH}", become=True)
    return delta_s(result["delta"])


def delta_s(delta: str) -> float:
    """Seconds in a command result's delta (H:MM:SS.ffffff)."""
    h, m, s = delta.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default="inventories/lab/hosts.yml")
    parser.add_argument("-e", "--extra-vars", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset-mib", type=int, default=0, help="add this much data first")
    record_option(parser)
    args = parser.parse_args()
    with recorded("drill_restore", enabled=args.record):
        return run(args)


def run(args: argparse.Namespace) -> int:
    common = ["-i", args.inventory]
    for extra in args.extra_vars:
        common += ["-e", extra]
    extra = add_dataset(common, args.dataset_mib) if args.dataset_mib else {}
    # One untimed drill first: the first read of a new archive (the server's page cache,
    # the standby's borg cache) would otherwise always fall on the drill's side.
    drill(common, True, extra)
    drill_times, plain_times, rtos, inside = [], [], [], []
    for _ in range(args.rounds):
        took, result, standby, drilled = drill(common, True, extra)
        drill_times.append(took)
        inside.append(delta_s(result["delta"]))
        rtos.append(float(drilled.get("rto_s") or 0))
        plain_times.append(plain_extract(common, standby, result["cmd"]))
    drill(common, False, extra)
    if args.dataset_mib:
        source = str(inventory_var(common, "dr_drill_source_host"))
        adhoc(common, source, "ansible.builtin.shell", f"rm -rf {BENCH_DATA}", become=True)
    ratios = [d / p for d, p in zip(drill_times, plain_times, strict=True)]
    d_med, p_med = statistics.median(drill_times), statistics.median(plain_times)
    print(f"inventory: {args.inventory}  rounds: {args.rounds}  standby: {standby}")
    print(
        f"drill restore step  median {d_med:.2f} s  "
        f"(min {min(drill_times):.2f}, max {max(drill_times):.2f})"
    )
    print(
        f"  of which borg     median {statistics.median(inside):.2f} s  "
        f"(the command's own time inside the task; the rest is Ansible's)"
    )
    print(
        f"plain borg extract  median {p_med:.2f} s  "
        f"(min {min(plain_times):.2f}, max {max(plain_times):.2f})"
    )
    print(
        f"ratio drill/plain   {d_med / p_med:.2f}  (per round {min(ratios):.2f}-{max(ratios):.2f})"
    )
    dataset = f"with {args.dataset_mib} MiB added" if args.dataset_mib else "the configured paths"
    print(
        f"RTO measured by the drill ({dataset}): median {statistics.median(rtos):.1f} s "
        f"(min {min(rtos):.1f}, max {max(rtos):.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
