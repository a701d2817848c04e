"""What the benchmarks that read Ansible's own timings share: running a playbook or an
ad-hoc module with the JSON callback, and the durations it records."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ansible.release import __version__ as ansible_core

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


# ---------------------------------------------------------------------- results

README = REPO / "bench" / "README.md"
RESULTS_HEADING = "## Results written by the scripts"


def machine() -> str:
    """The machine a benchmark ran on, in one line: what its figures depend on."""
    try:
        os_name = next(
            line.split("=", 1)[1].strip().strip('"')
            for line in Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        )
    except (OSError, StopIteration):
        os_name = "unknown OS"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, IndexError, ValueError):
        memory = "unknown memory"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    python = ".".join(map(str, sys.version_info[:3]))
    return (
        f"{os.cpu_count()} cores, {memory}, {os_name}, Python {python}, "
        f"ansible-core {ansible_core}; load average {load} at the start"
    )


def write_results(
    name: str,
    text: str,
    *,
    argv: list[str],
    readme: Path = README,
    now: datetime.datetime | None = None,
    where: str | None = None,
) -> None:
    """Put a run's printed results into the README's section for this script, replacing
    the previous one: the date, the machine and the command come with the figures."""
    now = now or datetime.datetime.now(datetime.UTC)
    start, end = f"<!-- results: {name} -->", f"<!-- /results: {name} -->"
    command = " ".join(["bench/" + name + ".py", *argv])
    block = (
        f"{start}\n### `{name}.py`\n\n"
        f"{now:%Y-%m-%d %H:%M} UTC, `{command}`, on {where or machine()}.\n\n"
        f"```text\n{text.rstrip()}\n```\n{end}"
    )
    current = readme.read_text() if readme.exists() else "# Benchmarks\n"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        updated = before + block + after
    elif RESULTS_HEADING in current:
        head, tail = current.split(RESULTS_HEADING, 1)
        updated = f"{head}{RESULTS_HEADING}{tail.rstrip()}\n\n{block}\n"
    else:
        updated = f"{current.rstrip()}\n\n{RESULTS_HEADING}\n\n{block}\n"
    readme.write_text(updated)


class _Tee:
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def recorded(name: str, *, enabled: bool = True) -> Iterator[None]:
    """Print as usual; when the block ends without an error, write what it printed into
    bench/README.md (write_results). The figures there are only ever the scripts' own."""
    where = machine()  # before the benchmark loads the machine
    captured = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, captured)):
        yield
    if enabled:
        write_results(name, captured.getvalue(), argv=sys.argv[1:], where=where)
        print(f"results written to {README.relative_to(REPO)}", file=sys.stderr)


def record_option(parser: Any) -> None:
    parser.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="print the results only; do not write them into bench/README.md",
    )
