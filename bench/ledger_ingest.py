"""Ledger ingest and report rendering for a synthetic 1,000-host run.

Feeds the recorder the event stream of a run of T tasks on H hosts (runner_on_start and a
result per host and task, as ansible-runner emits them) and measures events per second
into the ledger, against a baseline measured in the same process: the same rows written
to a bare SQLite table with the standard library (no redaction, no hashing, no ORM).
Then renders the run's HTML report and times it.

    .venv/bin/python bench/ledger_ingest.py [--hosts 1000] [--tasks 10] [--ledger URL]

Targets (issue 3): at least 20,000 events/s on SQLite; the report in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import record_option, recorded

from runner.execution.request import RunRequest, RunResult
from runner.ledger.recorder import Recorder
from runner.ledger.store import Ledger
from runner.reports.run import run_report


def synthetic_events(hosts: int, tasks: int) -> list[dict]:
    events: list[dict] = []
    counter = 0

    def add(kind: str, **data: Any) -> None:
        nonlocal counter
        counter += 1
        events.append(
            {
                "uuid": f"u{counter}",
                "counter": counter,
                "event": kind,
                "event_data": data,
                "stdout": "",
            }
        )

    add("playbook_on_start")
    add("playbook_on_play_start", play="Fleet", name="Fleet")
    names = [f"host{i:04d}.fleet.example" for i in range(hosts)]
    for t in range(tasks):
        task = f"Task {t}"
        add("playbook_on_task_start", task=task, role="base", task_action="ansible.builtin.copy")
        for host in names:
            add("runner_on_start", host=host, task=task, role="base")
            changed = (hash((host, t)) % 17) == 0
            add(
                "runner_on_ok",
                host=host,
                task=task,
                role="base",
                duration=0.4,
                resolved_action="ansible.builtin.copy",
                res={"changed": changed, "dest": "/etc/motd", "mode": "0644", "msg": "ok"},
            )
    stats = {
        "ok": {h: tasks for h in names},
        "changed": {},
        "failures": {},
        "dark": {},
        "skipped": {},
        "rescued": {},
        "ignored": {},
        "processed": {h: 1 for h in names},
    }
    add("playbook_on_stats", **stats)
    return events


def baseline(events: list[dict], path: Path) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE ev (run_id TEXT, counter INT, event TEXT, host TEXT, data TEXT)")
    start = time.perf_counter()
    batch = []
    for e in events:
        batch.append(
            (
                "r",
                e["counter"],
                e["event"],
                e["event_data"].get("host"),
                json.dumps(e["event_data"]),
            )
        )
        if len(batch) >= 2000:
            with conn:
                conn.executemany("INSERT INTO ev VALUES (?,?,?,?,?)", batch)
            batch = []
    with conn:
        conn.executemany("INSERT INTO ev VALUES (?,?,?,?,?)", batch)
    took = time.perf_counter() - start
    conn.close()
    return took


def ingest(events: list[dict], url: str) -> tuple[float, str, Ledger]:
    ledger = Ledger.open(url)
    request = RunRequest(playbook=Path("playbooks/site.yml"), inventory="fleet,")
    recorder = Recorder(ledger)
    start = time.perf_counter()
    recorder.on_start(request)
    for event in events:
        recorder.on_event(event)
    now = datetime.now(UTC)
    recorder.on_finish(RunResult(request.run_id, "successful", 0, {}, None, now, now))
    return time.perf_counter() - start, request.run_id, ledger


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--ledger", help="ledger URL (default: a fresh SQLite file)")
    record_option(parser)
    args = parser.parse_args()
    with recorded("ledger_ingest", enabled=args.record):
        return run(args)


def run(args: argparse.Namespace) -> int:
    events = synthetic_events(args.hosts, args.tasks)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.ledger or f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}"
        base = baseline(events, Path(tmp) / "baseline.sqlite3")
        took, run_id, ledger = ingest(events, url)
        start = time.perf_counter()
        html = run_report(ledger, run_id, "html")
        render = time.perf_counter() - start
        size = (
            Path(url.removeprefix("sqlite:///")).stat().st_size
            if url.startswith("sqlite")
            else None
        )
    rate, base_rate = len(events) / took, len(events) / base
    print(f"synthetic run: {args.hosts} hosts x {args.tasks} tasks = {len(events)} events")
    print(f"baseline (bare sqlite3 inserts): {base_rate:,.0f} events/s")
    print(
        f"ledger ingest (redact, digest, chain): {rate:,.0f} events/s "
        f"({rate / base_rate:.2f} of baseline; target >= 20,000)"
    )
    print(f"HTML report: {render:.2f} s to render, {len(html) / 1e6:.1f} MB (target < 2 s)")
    if size:
        print(f"ledger file: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
