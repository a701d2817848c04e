"""`techops runs`: the recorded runs as a table."""

from __future__ import annotations

from runner.reports.model import RunView


def runs_table(runs: list[RunView]) -> str:
    rows = [("RUN", "STATUS", "STARTED (UTC)", "PLAYBOOK", "HOSTS", "WHO", "VIA")]
    for run in runs:
        rows.append(
            (
                run.run_id,
                run.status,
                run.start_time[:19].replace("T", " "),
                run.playbook,
                str(len(run.hosts) or len(run.started.body.get("hosts") or [])),
                run.who,
                # A run outside techops passed no gate: the table says so on its line.
                "ansible-playbook (unwrapped)" if run.unwrapped else "techops",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
