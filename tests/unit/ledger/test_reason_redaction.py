"""The reason and the ticket are free text a user types: a secret pasted into them is
scrubbed like any other before the ledger keeps them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from runner.execution.request import RunRequest, RunResult
from runner.ledger.recorder import Recorder
from runner.ledger.redact import REDACTED, Redactor


def test_a_secret_in_the_reason_or_ticket_is_not_recorded(ledger):
    request = RunRequest(
        playbook=Path("playbooks/site.yml"),
        inventory="app1,",
        extravars={"db_password": "CANARY-reason-pw"},
    )
    recorder = Recorder(
        ledger,
        redactor=Redactor.for_run(request.extravars, {"CANARY-vaulted-note"}),
        reason="retry after CANARY-reason-pw was rotated; see postgresql://app:CANARY-url@db/x",
        ticket="CHG-9 CANARY-vaulted-note",
    )
    recorder.on_start(request)
    now = datetime.now(UTC)
    recorder.on_finish(RunResult(request.run_id, "successful", 0, {}, None, now, now))
    started = next(ledger.entries(kinds=["run.started"])).body
    assert "CANARY" not in started["reason"] + started["ticket"]
    assert started["reason"].startswith(f"retry after {REDACTED} was rotated")
    assert started["ticket"] == f"CHG-9 {REDACTED}"
    assert ledger.verify().ok
