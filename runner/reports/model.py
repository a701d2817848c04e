"""Runs as the ledger records them: what every report reads.

Reports read the ledger alone: an auditor can render and verify them on a machine without
Ansible or access to the hosts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from runner.core.errors import UserError
from runner.ledger.evidence import Reading, read
from runner.ledger.store import TERMINAL_KINDS, CheckedCheckpoint, Entry, Ledger, Verification

EVIDENCE_AREAS = ("patch", "access", "backup", "drill")
# The gate's entry for a run by hand on a protected environment (written before the run
# starts, with the run's id).
CHANGE_DECISION = "change.decision"


@dataclass
class RunView:
    """One run as the ledger knows it: its started entry and its terminal entry, if any."""

    run_id: str
    started: Entry
    end: Entry | None = None
    entries: list[Entry] = field(default_factory=list)
    # The change-control decision that admitted it, for a run on a protected environment:
    # the gate's verdict, the override, and the signed change with who requested and who
    # approved it (runner.scheduling.protect).
    decision: Entry | None = None

    @property
    def status(self) -> str:
        if self.end is None:
            return "running"
        return self.end.body.get("status", self.end.kind.removeprefix("run."))

    @property
    def playbook(self) -> str:
        return self.started.body.get("playbook", "")

    @property
    def unwrapped(self) -> bool:
        """Started with plain ansible-playbook, outside techops (recorded by the ledger
        callback); runs recorded before the field existed went through techops."""
        return self.started.body.get("unwrapped") is True

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        return (self.end.body.get("hosts") if self.end else None) or {}

    @property
    def start_time(self) -> str:
        return self.started.created

    @property
    def end_time(self) -> str | None:
        return self.end.created if self.end else None

    @property
    def evidence(self) -> RunEvidence:
        """The evidence the run's end recorded, as reports read it."""
        return RunEvidence.of(self.end.body.get("evidence") if self.end else None)

    @property
    def who(self) -> str:
        who = self.started.body.get("who") or {}
        text = f"{who.get('kind', '?')}:{who.get('name', '?')}"
        if who.get("sudo_user"):
            text += f" (sudo from {who['sudo_user']})"
        login = who.get("login_user")
        if login and login not in (who.get("name"), who.get("sudo_user")):
            text += f" (logged in as {login})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "playbook": self.playbook,
            "started": self.start_time,
            "finished": self.end_time,
            "who": self.who,
            "unwrapped": self.unwrapped,
            "start": self.started.body,
            "end": self.end.body if self.end else None,
            "decision": self.decision.body if self.decision else None,
            "entries": [
                {"seq": e.seq, "kind": e.kind, "hash": e.hash, "prev_hash": e.prev_hash}
                for e in self.entries
            ],
        }


# The recorder's key for evidence published without `per_host`: about the run, no host.
RUN_WIDE = "_run"


@dataclass(frozen=True)
class RunEvidence:
    """A run's evidence per host and area, read through the declarations of
    runner.ledger.evidence: what does not fit is left out and named, so that a report shows
    "unknown" for it and never a value of its own. A host whose record is not a mapping of
    areas is named in `unreadable`, never read."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreadable: tuple[dict[str, str], ...] = ()

    @classmethod
    def of(cls, recorded: Any) -> RunEvidence:
        if recorded is None:
            return cls()
        if not isinstance(recorded, dict):
            problem = "the run's evidence is not a mapping of hosts"
            return cls({}, ({"host": "", "area": "", "problem": problem},))
        hosts = {h: areas for h, areas in recorded.items() if isinstance(areas, dict)}
        unreadable = tuple(
            {"host": h, "area": "", "problem": "not a mapping of areas"}
            for h in sorted(recorded)
            if h not in hosts
        )
        return cls(hosts, unreadable)

    def area(self, area: str) -> dict[str, Reading]:
        """Per host (sorted), this area's evidence as far as it fits its declaration."""
        return {
            host: read(area, areas[area])
            for host, areas in sorted(self.hosts.items())
            if area in areas
        }

    def problems(self) -> list[dict[str, str]]:
        """Every {host, area, problem} of the run's evidence, as reports read it."""
        found = list(self.unreadable)
        for host, areas in sorted(self.hosts.items()):
            for area in sorted(areas):
                found += [
                    {"host": host, "area": area, "problem": problem}
                    for problem in read(area, areas[area]).problems
                ]
        return found


def load_runs(ledger: Ledger) -> dict[str, RunView]:
    runs: dict[str, RunView] = {}
    decisions: dict[str, Entry] = {}
    for entry in ledger.entries():
        if entry.kind == CHANGE_DECISION and entry.body.get("action") == "fire":
            decisions.setdefault(entry.run_id, entry)
        elif entry.kind == "run.started":
            decision = decisions.get(entry.run_id)
            runs[entry.run_id] = RunView(
                entry.run_id,
                entry,
                entries=[e for e in (decision, entry) if e is not None],
                decision=decision,
            )
        elif entry.kind in TERMINAL_KINDS and entry.run_id in runs:
            # A run's first terminal entry is its end; a later one is a forgery, which
            # `verify` names and the report's ledger section shows.
            if runs[entry.run_id].end is None:
                runs[entry.run_id].end = entry
            runs[entry.run_id].entries.append(entry)
    return runs


def filter_runs(
    runs: dict[str, RunView],
    *,
    playbook: str | None = None,
    status: str | None = None,
    host: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[RunView]:
    chosen = []
    for run in runs.values():
        if playbook and playbook not in run.playbook:
            continue
        if status and run.status != status:
            continue
        # Hosts that reported results; for a run without results yet, those it may touch.
        touched = run.hosts or (run.started.body.get("hosts") or [])
        if host and host not in touched:
            continue
        if since and run.start_time < since:
            continue
        if until and run.start_time > until:
            continue
        chosen.append(run)
    return sorted(chosen, key=lambda r: r.start_time)


def get_run(ledger: Ledger, run_id: str) -> RunView:
    return find_run(load_runs(ledger), run_id, ledger)


def find_run(runs: dict[str, RunView], run_id: str, ledger: Ledger) -> RunView:
    """The run with this id, or the one run whose id starts with it."""
    return by_id_or_prefix(runs, run_id, "run", "techops runs", ledger)


T = TypeVar("T")


def by_id_or_prefix(found: dict[str, T], given: str, noun: str, listing: str, ledger: Ledger) -> T:
    """The item with this id, or the one whose id starts with it (ids are long: people
    type their start); one line naming the command that lists them otherwise."""
    if given in found:
        return found[given]
    matches = [i for i in found if i.startswith(given)]
    if len(matches) == 1:
        return found[matches[0]]
    if not matches:
        raise UserError(f"no {noun} {given!r} in the ledger {ledger.where} (list them: {listing})")
    raise UserError(f"{noun} id {given!r} is ambiguous: {', '.join(sorted(matches)[:5])}")


# How far a verification vouches for the ledger, weakest first, with the words reports
# show for it. Only "signed" rules out a ledger rewritten whole, checkpoints included.
ASSURANCE = {
    "broken": "does not verify",
    "internal": "verified internally only",
    "unsigned": "verified; checkpoint signatures not checked",
    "signed": "verified against signed checkpoints",
}
# How many checkpoints the one-sentence summary names; the report lists them all.
SUMMARY_CHECKPOINTS = 3


def verification(verification: Verification) -> dict[str, Any]:
    """What a report says of the ledger: whether the chain verifies, and against what. A
    chain that is only consistent with itself could have been rewritten whole; only
    checkpoints whose signatures were checked with a public key kept elsewhere rule that
    out, so the report says which checkpoints were checked and how."""
    level = assurance(verification)
    return {
        "verified": verification.ok,
        "assurance": level,
        "label": ASSURANCE[level],
        "summary": verification_summary(verification),
        "entries": verification.entries,
        "head_seq": verification.head_seq,
        "head_hash": verification.head_hash,
        "problem": verification.problem.reason if verification.problem else None,
        "checkpoints_checked": verification.checkpoints_checked,
        "checkpoints": [
            {
                "seq": cp.seq,
                "hash": cp.hash,
                "key_id": cp.key_id,
                "created": cp.created,
                "source": cp.source,
                "signature_checked": cp.signature_checked,
            }
            for cp in verification.checkpoints
        ],
        "signatures_checked": verification.signatures_checked,
        "public_key_id": verification.public_key_id,
    }


def assurance(verification: Verification) -> str:
    if not verification.ok:
        return "broken"
    if not verification.checkpoints:
        return "internal"
    return "signed" if verification.signatures_checked else "unsigned"


def _checkpoint_text(cp: CheckedCheckpoint) -> str:
    where = "stored in the ledger" if cp.source == "ledger" else "kept elsewhere"
    return f"entry {cp.seq} key {cp.key_id or 'unknown'} of {cp.created or 'unknown date'}, {where}"


def verification_summary(verification: Verification) -> str:
    """One sentence that says how far the ledger was checked, as every report shows it."""
    level = assurance(verification)
    if level == "broken":
        reason = verification.problem.reason if verification.problem else "unknown"
        return f"The chain DOES NOT VERIFY: {reason}"
    if level == "internal":
        return (
            f"Chain of {verification.entries} entries verified internally; no signed "
            "checkpoint checked, so a chain rewritten from its start would verify too"
        )
    newest = sorted(verification.checkpoints, key=lambda cp: cp.seq, reverse=True)
    listed = "; ".join(_checkpoint_text(cp) for cp in newest[:SUMMARY_CHECKPOINTS])
    if len(newest) > SUMMARY_CHECKPOINTS:
        listed += f"; and {len(newest) - SUMMARY_CHECKPOINTS} earlier"
    count = len(newest)
    if level == "signed":
        return (
            f"Chain of {verification.entries} entries verified against {count} signed "
            f"checkpoint(s) ({listed}), signatures checked with public key "
            f"{verification.public_key_id}"
        )
    return (
        f"Chain of {verification.entries} entries verified internally and against {count} "
        f"checkpoint(s) ({listed}); their signatures were not checked (no public key "
        "given), so a ledger rewritten with its checkpoints would verify too"
    )
