"""Protected environments: a run by hand that can change the hosts of a protected
environment (environments.yml) passes the gate scheduled jobs pass.

- It needs a reason and a ticket: the record says why and under which change.
- Each host it would touch must be inside one of its groups' maintenance windows and in
  no change freeze (schedules.yml), unless an override says why the change cannot wait.
- A check-mode run changes nothing and is always admitted, and recorded.

Every decision is a `change.decision` ledger entry, as a scheduled job's is a
`schedule.decision`; refusals, overrides and failed runs are notified to schedules.yml's
`notify:` targets.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.core.errors import BadOptions
from runner.core.identity import real_user
from runner.core.inventory import inventory_hosts, resolve_hosts
from runner.core.paths import repo_relative
from runner.execution.launch import Why, run_recorded
from runner.execution.request import RunRequest, RunResult
from runner.ledger.redact import Redactor, secret_values
from runner.ledger.store import Ledger
from runner.scheduling import changes, notify
from runner.scheduling.changes import ChangeRefused
from runner.scheduling.environments import Environment
from runner.scheduling.jobs import OVERRIDE_VAR
from runner.scheduling.model import Schedules, load
from runner.scheduling.signing import SigningError

CHANGE_DECISION = "change.decision"
CHANGE_NOTIFIED = "change.notified"
RC_REFUSED = 3  # as for a scheduled job the gate refuses: a decision, not a failure
# How many hosts a one-line reason names before it says how many more there are.
NAMED_HOSTS = 3


@dataclass(frozen=True)
class Verdict:
    action: str  # "fire" or "refuse"
    reason: str
    blocked: dict[str, str] = field(default_factory=dict)  # host -> why it may not change now
    override_reason: str | None = None

    @property
    def fires(self) -> bool:
        return self.action == "fire"


def judge(
    schedules: Schedules,
    groups_by_host: Mapping[str, frozenset[str]],
    now: datetime,
    *,
    check: bool,
    override_reason: str | None = None,
) -> Verdict:
    """May these hosts change now? Each host by its own groups' windows and freezes."""
    if check:
        return Verdict("fire", "check mode changes nothing: windows and freezes do not apply")
    blocked: dict[str, str] = {}
    for host, groups in sorted(groups_by_host.items()):
        status = schedules.window_status(set(groups), now)
        if status["frozen"]:
            freeze = status["freeze"]
            blocked[host] = (
                f"change freeze {freeze['name']!r} until {freeze['end']}: {freeze['reason']}"
            )
        elif not status["has_windows"]:
            named = ", ".join(sorted(set(groups) - {"all"})) or "all"
            blocked[host] = f"no maintenance window covers its groups ({named})"
        elif not status["open"]:
            blocked[host] = f"outside its maintenance windows (next opens {status['next_open']})"
    if not groups_by_host:
        # Fail closed: techops could not tell which hosts would change (an inventory it
        # cannot read without the vault, a limit it cannot resolve), and Ansible may.
        summary = "the hosts this run would touch could not be determined"
        if override_reason:
            return Verdict(
                "fire", f"emergency override ({summary}): {override_reason}", {}, override_reason
            )
        return Verdict("refuse", summary)
    if not blocked:
        return Verdict("fire", "every host is inside a maintenance window and no freeze")
    summary = _summary(blocked)
    if override_reason:
        return Verdict(
            "fire", f"emergency override ({summary}): {override_reason}", blocked, override_reason
        )
    return Verdict("refuse", summary, blocked)


def _summary(blocked: dict[str, str]) -> str:
    """One line: the hosts grouped by why, the first few named."""
    by_reason: dict[str, list[str]] = {}
    for host, why in blocked.items():
        by_reason.setdefault(why, []).append(host)
    parts = []
    for why, hosts in by_reason.items():
        named = ", ".join(hosts[:NAMED_HOSTS])
        more = f" and {len(hosts) - NAMED_HOSTS} more" if len(hosts) > NAMED_HOSTS else ""
        parts.append(f"{named}{more}: {why}")
    return "; ".join(parts)


def run_protected(
    request: RunRequest,
    ledger: Ledger,
    environment: Environment,
    why: Why,
    *,
    override_reason: str | None = None,
    change_id: str | None = None,
    now: datetime | None = None,
) -> RunResult | None:
    """Gate, record and run a manual run against a protected environment. Returns the
    run's outcome, or None when the gate refused it (exit RC_REFUSED); BadOptions when
    the reason or the ticket is missing. Both refusals are recorded."""
    now = now or datetime.now(UTC)
    schedules = load()
    config = notify.settings(schedules.data.get("notify"), None)
    # Free text is scrubbed of what this run already knows to be secret (its extra vars,
    # this process's secret-named variables, URL passwords) before it is recorded or sent.
    scrub = Redactor.for_run(request.extravars, secret_values(dict(os.environ))).text
    record: dict[str, Any] = {
        "environment": environment.name,
        "playbook": repo_relative(request.playbook),
        "inventory": request.inventory,
        "limit": request.limit,
        "tags": request.tags,
        "check": request.check,
        "reason": scrub(why.reason) if why.reason else None,
        "ticket": scrub(why.ticket) if why.ticket else None,
        "who": real_user(),
        "controller": socket.gethostname(),
        "decided_at": now.isoformat(),
        "run_id": request.run_id,
    }
    tampered = changes.content_overrides(os.environ)
    if tampered:
        said = (
            f"{', '.join(tampered)} would change what runs on protected environment "
            f"{environment.name!r} (roles, modules, plugins or settings from elsewhere than "
            "the repository)"
        )
        _refuse(ledger, config, record, said, {})
        raise BadOptions(f"{said}: unset it; the refusal is recorded")
    if request.check:
        refused = changes.check_refused(request.playbook)
        if refused:
            _refuse(ledger, config, record, refused, {})
            print(f"techops: refused: {refused} (environment {environment.name}); nothing ran")
            return None
    change: changes.Change | None = None
    if change_id is None and environment.approvals and not request.check:
        said = (
            f"protected environment {environment.name!r} runs approved changes only "
            f"({environment.approvals} signed approval(s) by someone other than the requester)"
        )
        _refuse(ledger, config, record, f"{said}: no --change given", {})
        raise BadOptions(
            f"{said}: request one with `techops change request`, have it approved, then run "
            "with --change ID (or run with --check, which changes nothing); the refusal is "
            "recorded"
        )
    if change_id is not None:
        record["change"] = scrub(change_id)
        try:
            change, approvers = _admit_change(request, ledger, environment, why, change_id, now)
        except ChangeRefused as refused:
            _refuse(ledger, config, record, str(refused), {})
            print(f"techops: refused: {refused} (environment {environment.name}); nothing ran")
            return None
        why = Why(reason=change.document["reason"], ticket=change.document["ticket"])
        record.update(
            reason=why.reason,
            ticket=why.ticket,
            requested_by=change.requester,
            approved_by=approvers,
        )
    if not request.check and not (why.reason and why.ticket):
        missing = " and ".join(
            option
            for option, given in (("--reason", why.reason), ("--ticket", why.ticket))
            if not given
        )
        said = f"a run that can change protected environment {environment.name!r} needs {missing}"
        _refuse(ledger, config, record, said, {})
        raise BadOptions(
            f"{said}: give --reason WHY and --ticket ID (or run with --check, which changes "
            "nothing); the refusal is recorded"
        )
    members = inventory_hosts(request.inventory)
    hosts = resolve_hosts(request.inventory, request.limit)
    groups = {host: members.get(host, frozenset({"all"})) for host in hosts}
    verdict = judge(
        schedules,
        groups,
        now,
        check=request.check,
        override_reason=scrub(override_reason) if override_reason else None,
    )
    record["hosts"] = hosts
    if not verdict.fires:
        _refuse(ledger, config, record, verdict.reason, verdict.blocked)
        print(
            f"techops: refused: {verdict.reason} (environment {environment.name}); an "
            "emergency needs --override-reason WHY, which is recorded and notified"
        )
        return None
    record.update(
        action="fire",
        decision=verdict.reason,
        override_reason=verdict.override_reason,
        blocked=verdict.blocked,
    )
    if verdict.override_reason:
        # The playbook's own gate (patch.yml's) reads the override too.
        request.extravars = {**request.extravars, OVERRIDE_VAR: override_reason}
        record["notifications"] = notify.send(config, "override", _payload(record))
    ledger.append(CHANGE_DECISION, request.run_id, record)
    result = run_recorded(request, ledger, why)
    if change is not None and not request.check:
        # What the change was used for: a change that ran successfully is done.
        ledger.append(
            changes.RAN,
            change.id,
            {
                "change": change.id,
                "run_id": request.run_id,
                "status": result.status,
                "rc": result.rc,
            },
        )
    if result.status != "successful":
        payload = {**_payload(record), "status": result.status, "rc": result.rc}
        payload["reason"] = f"run {result.status} (rc {result.rc})"
        outcomes = notify.send(config, "failure", payload)
        if outcomes:
            ledger.append(
                CHANGE_NOTIFIED,
                request.run_id,
                {"run_id": request.run_id, "event": "failure", "notifications": outcomes},
            )
    return result


def _admit_change(
    request: RunRequest,
    ledger: Ledger,
    environment: Environment,
    why: Why,
    change_id: str,
    now: datetime,
) -> tuple[changes.Change, list[dict[str, str]]]:
    """The approved change this run is, and who approved it; ChangeRefused otherwise."""
    if environment.allowed_signers is None:
        raise ChangeRefused(
            f"environment {environment.name} requires no approval, so --change does not "
            "apply: run with --reason and --ticket"
        )
    try:
        change = changes.load(ledger, change_id)
    except SigningError as exc:
        raise ChangeRefused(f"change {change_id} is damaged in the ledger: {exc}") from None
    if change is None:
        raise ChangeRefused(
            f"there is no change {change_id} in the ledger (techops change list shows them)"
        )
    document = change.document
    for option, given, approved in (
        ("--reason", why.reason, document["reason"]),
        ("--ticket", why.ticket, document["ticket"]),
    ):
        if given and given != approved:
            raise ChangeRefused(
                f"{option} {given!r} is not the change's ({approved!r}): leave it out, "
                "the change says why"
            )
    scope = changes.scope_of(request, environment, changes.git_commit())
    return change, changes.admit(change, environment, scope, now)


def _refuse(
    ledger: Ledger,
    config: dict[str, Any],
    record: dict[str, Any],
    reason: str,
    blocked: dict[str, str],
) -> None:
    record.update(action="refuse", decision=reason, blocked=blocked)
    record["notifications"] = notify.send(config, "refuse", _payload(record))
    ledger.append(CHANGE_DECISION, record["run_id"], record)


def _payload(record: dict[str, Any]) -> dict[str, Any]:
    """What a notification says: which change, where, who, what was decided and why."""
    return {
        "what": f"{record['playbook']} on {record['environment']}",
        "environment": record["environment"],
        "playbook": record["playbook"],
        "run_id": record["run_id"],
        "who": record["who"].get("name"),
        "ticket": record.get("ticket"),
        "action": record.get("action"),
        "reason": record.get("decision"),
        "override_reason": record.get("override_reason"),
    }
