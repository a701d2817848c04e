"""Wrapper overhead: `techops run` against plain `ansible-playbook`, side by side.

Both run the same playbook on the same inventory, alternating, so that drift in the
machine's load affects both alike. Prints the median wall time of each, the ratio
techops/plain, and the spread (min-max of the per-round ratios).

    .venv/bin/python bench/run_overhead.py [--rounds 7] [--playbook PLAYBOOK] [-i INVENTORY]

Needs the lab (`techops lab up`) unless another inventory is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import record_option, recorded

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:3])} … exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--playbook", default="tests/fixtures/playbooks/idempotent_probe.yml")
    parser.add_argument("-i", "--inventory", default="inventories/lab/hosts.yml")
    record_option(parser)
    args = parser.parse_args()
    with recorded("run_overhead", enabled=args.record):
        return run(args)


def run(args: argparse.Namespace) -> int:
    if not (REPO / args.inventory).exists():
        sys.exit(f"bench: inventory {args.inventory} does not exist: run `techops lab up` first")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    plain = [str(BIN / "ansible-playbook"), "-i", args.inventory, args.playbook]
    wrapped = [str(BIN / "techops"), "run", args.playbook, "-i", args.inventory]
    timed(plain, env)  # warm the SSH control sockets and the fact cache for both
    plain_times, wrapped_times = [], []
    for _ in range(args.rounds):
        plain_times.append(timed(plain, env))
        wrapped_times.append(timed(wrapped, env))
    ratios = [w / p for w, p in zip(wrapped_times, plain_times, strict=True)]
    p_med, w_med = statistics.median(plain_times), statistics.median(wrapped_times)
    print(f"playbook: {args.playbook}  inventory: {args.inventory}  rounds: {args.rounds}")
    print(
        f"ansible-playbook  median {p_med:.2f} s  (min {min(plain_times):.2f}, "
        f"max {max(plain_times):.2f})"
    )
    print(
        f"techops run       median {w_med:.2f} s  (min {min(wrapped_times):.2f}, "
        f"max {max(wrapped_times):.2f})"
    )
    print(
        f"ratio techops/plain: {w_med / p_med:.3f} (per-round {min(ratios):.3f}-{max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
