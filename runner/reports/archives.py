"""Which archives the ledger last saw in a backup repository.

The backup maintenance (playbooks/backup_maintain.yml) prunes and compacts a repository from
the controller. Compaction makes every deletion permanent, including a compromised client's:
its append-only key can still mark archives deleted. So before it prunes, the maintenance
compares the repository's archives with what the ledger recorded there since its previous
prune, and an archive that is gone without a prune of ours stops it.

What counts as seen, for one client's repository on one server:

- the archives the latest real (not check-mode) maintenance left after its prune, when it
  was not refused; and
- every archive listed by the backup runs that started after that maintenance ended (an
  overlapping run may have listed archives the maintenance then pruned, so it is left out:
  the comparison never raises a false alarm from it);
- with no maintenance on record, the listing of the latest backup run alone (archives older
  than that may have been pruned by a retention the ledger does not know of).

A refused maintenance changes nothing: its listing lacks the vanished archives, which stay
expected until they are back (rolled back) or an operator accepts their loss.

Archives that a client's own timer made and deleted between two recorded listings are not
seen by anyone; that gap is the reason the daily backup job publishes a listing every day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.reports.model import RunView

MAINTAIN = "backup_maintain"
BACKUP = "backup"


@dataclass
class Seen:
    """The archives the ledger saw in one repository, and the runs that saw them."""

    archives: list[dict[str, str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    # The run of the maintenance the comparison starts from; None: no maintenance yet.
    baseline: str | None = None

    def add(self, run_id: str, listing: list[Any]) -> None:
        known = {(a["name"], a["id"]) for a in self.archives}
        for archive in listing:
            if not isinstance(archive, dict) or not archive.get("name"):
                continue
            key = (str(archive["name"]), str(archive.get("id") or ""))
            if key not in known:
                known.add(key)
                self.archives.append({"name": key[0], "id": key[1]})
        self.runs.append(run_id)

    def as_dict(self) -> dict[str, Any]:
        return {"archives": self.archives, "runs": self.runs, "baseline": self.baseline}


def _evidence(run: RunView, area: str, client: str, server: str) -> dict[str, Any] | None:
    """This run's evidence of `area` about the client's repository on `server`, if any."""
    for reading in run.evidence.area(area).values():
        if reading.get("client") == client and reading.get("server") == server:
            return dict(reading.values)
    return None


def seen_archives(runs: dict[str, RunView], client: str, server: str) -> Seen:
    """The archives the ledger saw in `client`'s repository on `server` since our last
    prune of it (see the module's description)."""
    finished = sorted((r for r in runs.values() if r.end is not None), key=lambda r: r.start_time)
    baseline: RunView | None = None
    for run in finished:
        maintained = _evidence(run, MAINTAIN, client, server)
        if maintained and not maintained.get("check_mode") and not maintained.get("refused"):
            baseline = run
    seen = Seen()
    if baseline is not None:
        seen.baseline = baseline.run_id
        maintained = _evidence(baseline, MAINTAIN, client, server) or {}
        seen.add(baseline.run_id, maintained.get("after") or [])
        ended = baseline.end_time or ""
        for run in finished:
            if run.start_time <= ended:
                continue
            backed_up = _evidence(run, BACKUP, client, server)
            if backed_up and backed_up.get("listing") is not None:
                seen.add(run.run_id, backed_up["listing"])
        return seen
    latest = None
    for run in finished:
        backed_up = _evidence(run, BACKUP, client, server)
        if backed_up and backed_up.get("listing") is not None:
            latest = (run.run_id, backed_up["listing"])
    if latest is not None:
        seen.add(*latest)
    return seen
