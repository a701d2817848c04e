"""Patch windows: the wall time of a canary-and-batches patch run, and the share of it spent
waiting on reboots, so that a window can be sized for a fleet.

Rounds alternate two runs of playbooks/patch.yml on the same hosts, with the same canary
and batches: with patch_reboot=never (the baseline) and with patch_reboot=always (every host
reboots: the worst case of if_required). Each run's timings come from Ansible's own events
(the JSON callback): the time of every play and batch, and of the reboot task in each
batch, during which the batch waits for its slowest host to come back. The hosts' own
evidence gives each reboot's time (reboot_s). Prints the medians, the ratio with reboots to
without, the share of the run spent waiting on reboots, and an estimate for larger fleets
from the measured batch times.

    .venv/bin/python bench/patch_window.py [-i INVENTORY] [--rounds 3] [--serial 2]
        [--canary-count 1] [--fleet 50,200,1000] [--reboot-s 90]

Needs the lab (`scripts/lab`), whose inventory tells the patch role how to see that a
container rebooted. The runs are forced past the maintenance window with a reason (a
benchmark is not a change), and the hosts' pending updates are applied in the first run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from benchlib import evidence, playbook, record_option, recorded, seconds

REBOOT_TASK = "Reboot and wait for the host to come back"
FORCE_REASON = "bench/patch_window.py: sizing the patch window on the lab"


def patch_run(common: list[str], reboot: str, serial: int, canary: int) -> dict:
    """One patch run: its wall time, its plays (one per batch) and the reboot waits."""
    extra = {
        "patch_reboot": reboot,
        "patch_serial": serial,
        "patch_canary_count": canary,
        "patch_force_reason": FORCE_REASON,
    }
    start = time.perf_counter()
    record = playbook(common, "playbooks/patch.yml", extra)
    wall = time.perf_counter() - start
    batches = []
    for play in record["plays"]:
        hosts = sorted({h for task in play["tasks"] for h in task["hosts"]})
        waited = sum(
            seconds(task["task"]["duration"])
            for task in play["tasks"]
            if task["task"]["name"].endswith(REBOOT_TASK)
        )
        batches.append(
            {
                "play": play["play"]["name"],
                "hosts": hosts,
                "took": seconds(play["play"]["duration"]),
                "reboot_wait": waited,
            }
        )
    patched = evidence(record, "patch").values()
    reboots = [float(e["reboot_s"]) for e in patched if e.get("reboot_s")]
    rebooted = sum(1 for e in patched if e.get("rebooted"))
    return {
        "wall": wall,
        "batches": batches,
        "reboot_wait": sum(b["reboot_wait"] for b in batches),
        "reboots": reboots,
        "rebooted": rebooted,
    }


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"median {mid} ({low}-{high})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default="inventories/lab/hosts.yml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serial", type=int, default=2, help="hosts per batch after the canary")
    parser.add_argument("--canary-count", type=int, default=1)
    parser.add_argument("--fleet", default="50,200,1000", help="fleet sizes to estimate")
    parser.add_argument(
        "--reboot-s", type=float, default=90.0, help="a real host's reboot time, for the estimate"
    )
    record_option(parser)
    args = parser.parse_args()
    with recorded("patch_window", enabled=args.record):
        return run(args)


def run(args: argparse.Namespace) -> int:
    common = ["-i", args.inventory]
    # One untimed run first: it applies what updates are pending, so that every timed
    # run does the same work, and warms the SSH control sockets.
    patch_run(common, "never", args.serial, args.canary_count)
    never, always = [], []
    for _ in range(args.rounds):
        never.append(patch_run(common, "never", args.serial, args.canary_count))
        always.append(patch_run(common, "always", args.serial, args.canary_count))
    hosts = sorted({h for b in always[-1]["batches"] for h in b["hosts"]})
    if any(run["rebooted"] != len(hosts) for run in always):
        raise SystemExit(
            f"bench: not every host rebooted with patch_reboot=always "
            f"({[run['rebooted'] for run in always]} of {len(hosts)})"
        )

    print(
        f"inventory: {args.inventory}  hosts: {len(hosts)}  canary: {args.canary_count}  "
        f"serial: {args.serial}  rounds: {args.rounds}, alternating"
    )
    print(f"{'phase (last run with reboots)':<52}{'hosts':>6}{'took s':>9}{'reboot wait s':>15}")
    for batch in always[-1]["batches"]:
        print(
            f"{batch['play'][:51]:<52}{len(batch['hosts']):>6}{batch['took']:>9.1f}"
            f"{batch['reboot_wait']:>15.1f}"
        )
    walls_never = [r["wall"] for r in never]
    walls_always = [r["wall"] for r in always]
    shares = [r["reboot_wait"] / r["wall"] for r in always]
    ratios = [a / n for a, n in zip(walls_always, walls_never, strict=True)]
    reboots = [s for r in always for s in r["reboots"]]
    print(f"patch run without reboots   {spread(walls_never)} s")
    print(f"patch run, every host reboots {spread(walls_always)} s")
    print(
        f"ratio with/without reboots  {statistics.median(ratios):.2f} "
        f"(per round {min(ratios):.2f}-{max(ratios):.2f})"
    )
    print(
        f"share waiting on reboots    {statistics.median(shares):.0%} "
        f"(per round {min(shares):.0%}-{max(shares):.0%})"
    )
    print(f"one host's reboot (reboot_s) {spread(reboots)} s over {len(reboots)} reboots")

    # Estimate for N hosts: the plays before the batches once, then one batch time per
    # batch of `serial` hosts (a batch runs its hosts in parallel, up to `forks`); a batch's
    # reboot wait replaced by the reboot time given, for hosts that reboot slower than the
    # lab's containers.
    last = always[-1]["batches"]
    rollout = [b for b in last if b["play"] == "Patch the other hosts in batches"]
    fixed = sum(b["took"] for b in last) - sum(b["took"] for b in rollout)
    fixed_wait = sum(b["reboot_wait"] for b in last if b not in rollout)
    batch = statistics.median(b["took"] for b in rollout) if rollout else 0.0
    batch_wait = statistics.median(b["reboot_wait"] for b in rollout) if rollout else 0.0
    slow = args.reboot_s
    print(
        f"estimate, every host rebooting: batches as long as measured here ({batch:.1f} s, "
        f"{batch_wait:.1f} s of it waiting on the reboot), or with a {slow:.0f} s reboot instead"
    )
    for n in (int(x) for x in args.fleet.split(",") if x):
        for serial in sorted({args.serial, max(args.serial, n // 10)}):
            count = math.ceil(max(n - args.canary_count, 0) / serial)
            here = fixed + count * batch
            slower = here + (slow - fixed_wait) + count * (slow - batch_wait)
            print(
                f"  {n:>5} hosts, serial {serial:>4}: {count:>4} batches, "
                f"about {here / 60:.0f} min as here, "
                f"{slower / 60:.0f} min with {slow:.0f} s reboots"
                + ("  (needs forks >= serial)" if serial > args.serial else "")
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
