"""Reports say how far the ledger was checked: against itself only, against checkpoints
whose signatures were not checked, or against signed checkpoints checked with a public key."""

from __future__ import annotations

import csv
import io
import json

import sqlalchemy as sa

from runner.ledger.store import entries, generate_keypair
from runner.reports.access import access_report
from runner.reports.compliance import compliance_report
from runner.reports.drill import drill_report
from runner.reports.model import verification
from runner.reports.render import html
from runner.reports.run import run_report
from tests.ledgers import add_drill, add_run

RUN = "20261122T000000Z-aaaaaa"


def test_a_ledger_without_checkpoints_is_said_to_be_verified_internally_only(ledger):
    add_run(ledger, RUN, {"app1": "ok"})
    data = json.loads(run_report(ledger, RUN, "json"))["ledger"]
    assert data["assurance"] == "internal"
    assert data["checkpoints"] == [] and data["signatures_checked"] is False
    assert "verified internally; no signed checkpoint checked" in data["summary"]
    page = run_report(ledger, RUN, "html")
    assert "verified internally only" in page
    assert "no signed checkpoint checked" in page
    assert "no signed checkpoint checked" in run_report(ledger, RUN, "md")


def test_checkpoints_whose_signatures_were_not_checked_are_named_as_such(ledger):
    private, _ = generate_keypair()
    add_run(ledger, RUN, {"app1": "ok"})
    first = ledger.checkpoint(private)
    add_drill(ledger, "r2")
    second = ledger.checkpoint(private)
    data = json.loads(run_report(ledger, RUN, "json"))["ledger"]
    assert data["assurance"] == "unsigned"
    assert [
        (c["seq"], c["key_id"], c["created"], c["signature_checked"]) for c in data["checkpoints"]
    ] == [
        (first["seq"], first["key_id"], first["created"], False),
        (second["seq"], second["key_id"], second["created"], False),
    ]
    assert (
        f"against 2 checkpoint(s) (entry {second['seq']} key {second['key_id']}" in data["summary"]
    )
    assert "signatures were not checked (no public key given)" in data["summary"]
    for page in (
        run_report(ledger, RUN, "html"),
        drill_report(ledger, "r2", "html"),
        access_report(ledger, "html"),
        compliance_report(ledger, "2000", "html"),
    ):
        assert "checkpoint signatures not checked" in page
        assert f'<td>{second["seq"]}</td><td class="mono">{second["key_id"]}</td>' in page
        assert second["created"] in page
    for md in (run_report(ledger, RUN, "md"), drill_report(ledger, "r2", "md")):
        assert f"checkpoint at entry {second['seq']}, key `{second['key_id']}`" in md
        assert "signature not checked" in md
    assert json.loads(drill_report(ledger, "r2", "json"))["ledger"]["assurance"] == "unsigned"
    # The CSV files are tables with no summary: their rows stay plain data.
    rows = list(csv.reader(io.StringIO(compliance_report(ledger, "2000", "csv"))))
    assert rows[0][0] == "host" and all("checkpoint" not in ",".join(r) for r in rows)


def test_checkpoints_checked_with_a_public_key_are_named_with_it(ledger):
    private, public = generate_keypair()
    add_run(ledger, RUN, {"app1": "ok"})
    kept = ledger.checkpoint(private)
    data = verification(ledger.verify(trusted_checkpoints=[kept], public_key=public))
    assert data["assurance"] == "signed" and data["signatures_checked"]
    assert data["public_key_id"] == kept["key_id"]
    assert [(c["source"], c["signature_checked"]) for c in data["checkpoints"]] == [
        ("ledger", True),
        ("given", True),
    ]
    assert data["summary"].startswith(
        f"Chain of {data['entries']} entries verified against 2 signed"
    )
    assert f"signatures checked with public key {kept['key_id']}" in data["summary"]
    page = html("_ledger.html.j2", ledger=data)
    assert "verified against signed checkpoints" in page and "checked with the public key" in page
    assert "kept elsewhere" in page and "stored in the ledger" in page


def test_a_ledger_that_does_not_verify_says_why_in_every_format(ledger):
    private, _ = generate_keypair()
    add_run(ledger, RUN, {"app1": "ok"})
    ledger.checkpoint(private)
    with ledger.engine.connect().execution_options(techops_write=True) as conn, conn.begin():
        conn.execute(sa.update(entries).where(entries.c.seq == 1).values(created="2000"))
    data = json.loads(run_report(ledger, RUN, "json"))["ledger"]
    assert data["assurance"] == "broken" and data["checkpoints"] == []
    assert data["summary"].startswith("The chain DOES NOT VERIFY: entry 1")
    assert "does not verify" in run_report(ledger, RUN, "html")
    assert "The chain DOES NOT VERIFY: entry 1" in run_report(ledger, RUN, "md")
