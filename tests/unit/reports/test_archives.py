"""What the backup maintenance compares a repository with: the archives the ledger saw there
since our last prune, never an empty answer from a ledger it cannot trust."""

from __future__ import annotations

import json
import os
import subprocess

import sqlalchemy as sa

from runner.ledger import evidence
from runner.ledger.store import Ledger, entries
from runner.reports.archives import seen_archives
from runner.reports.model import load_runs
from tests.helpers import REPO, VENV_BIN
from tests.ledgers import add_run
from tests.unit.ledger.test_evidence import backup_evidence


def archive(n: int, client: str = "app1") -> dict[str, str]:
    return {"name": f"{client}-2026-11-{n:02d}T01:00:00", "id": f"{n:064x}"}


def backed_up(*numbers: int, **changes) -> dict:
    return {"backup": backup_evidence(listing=[archive(n) for n in numbers], **changes)}


def maintained(*numbers: int, **changes) -> dict:
    """What roles/backup/tasks/maintain.yml publishes after a prune that kept `numbers`."""
    after = [{**archive(n), "time": f"2026-11-{n:02d}T01:00:00+00:00"} for n in numbers]
    return {
        "backup_maintain": {
            "client": "app1",
            "server": "backup1",
            "repository": "ssh://borg@192.0.2.10:22/srv/borg/app1/repo",
            "check_mode": False,
            "baseline_run": None,
            "expected": 0,
            "seen_in_runs": [],
            "before": after,
            "vanished": [],
            "unexplained": [],
            "accepted": [],
            "accepted_reason": None,
            "refused": False,
            "pruned": [],
            "after": after,
            "compacted": True,
            "freed": "1.20 MB",
            "retention": {"daily": 7, "weekly": 4, "monthly": 6},
            **changes,
        }
    }


def seen(ledger, client="app1", server="backup1"):
    return seen_archives(load_runs(ledger), client, server)


def test_the_declarations_fit_what_the_playbooks_publish():
    assert evidence.check("backup", backed_up(1, 2)["backup"]) == []
    assert evidence.check("backup_maintain", maintained(1, 2)["backup_maintain"]) == []
    # Records made before the listing was published still fit.
    assert evidence.check("backup", backup_evidence()) == []


def test_without_a_maintenance_the_latest_backups_listing_is_the_record(ledger):
    add_run(ledger, "r1", {"app1": "ok"}, {"app1": backed_up(1, 2, 3)})
    add_run(ledger, "r2", {"app1": "ok"}, {"app1": backed_up(2, 3, 4)})
    found = seen(ledger)
    assert found.baseline is None
    assert found.runs == ["r2"]
    assert [a["name"] for a in found.archives] == [archive(n)["name"] for n in (2, 3, 4)]


def test_the_last_maintenance_and_the_backups_after_it(ledger):
    add_run(ledger, "b1", {"app1": "ok"}, {"app1": backed_up(1, 2, 3)})
    add_run(ledger, "m1", {"app1": "ok"}, {"app1": maintained(3)})
    add_run(ledger, "b2", {"app1": "ok"}, {"app1": backed_up(3, 4)})
    # A failed backup run's listing counts too: it is what the repository held.
    add_run(ledger, "b3", {"app1": "failed"}, {"app1": backed_up(3, 4, 5)}, status="failed")
    found = seen(ledger)
    assert found.baseline == "m1"
    assert found.runs == ["m1", "b2", "b3"]
    assert found.archives == [archive(3), archive(4), archive(5)]


def test_refused_and_check_mode_maintenances_are_no_baseline(ledger):
    add_run(ledger, "m1", {"app1": "ok"}, {"app1": maintained(3, 4)})
    add_run(ledger, "m2", {"app1": "failed"}, {"app1": maintained(3, refused=True)}, "failed")
    add_run(ledger, "m3", {"app1": "ok"}, {"app1": maintained(3, check_mode=True)}, check=True)
    found = seen(ledger)
    assert found.baseline == "m1"
    # The archive the refused run found missing stays expected until it is back.
    assert archive(4) in found.archives


def test_other_repositories_and_unfinished_runs_are_not_read(ledger):
    other_client = backup_evidence(client="app2", listing=[archive(9, "app2")])
    other_server = backup_evidence(server="backup2", listing=[archive(8)])
    add_run(ledger, "b1", {"app2": "ok"}, {"app2": {"backup": other_client}})
    add_run(ledger, "b2", {"app1": "ok"}, {"app1": {"backup": other_server}})
    ledger.append("run.started", "b3", {"run_id": "b3", "playbook": "backup.yml"})
    found = seen(ledger)
    assert found.archives == [] and found.runs == [] and found.baseline is None
    assert seen(ledger, client="app2").archives == [archive(9, "app2")]


def lookup(url: str) -> subprocess.CompletedProcess[str]:
    """The lookup as the maintenance calls it, in a real Ansible run on this machine."""
    env = {
        **os.environ,
        "TECHOPS_LEDGER": url,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true",
    }
    message = "{{ lookup('techops.ops.backup_seen_archives', 'app1', server='backup1') }}"
    return subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-m", "debug", "-a", f"msg={message}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


def result(process: subprocess.CompletedProcess[str]) -> dict:
    output = json.loads(process.stdout[process.stdout.index("{") :])
    return output["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_the_lookup_reads_the_ledger_and_refuses_one_that_does_not_verify(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger.open(url)
    add_run(ledger, "m1", {"app1": "ok"}, {"app1": maintained(3)})
    add_run(ledger, "b1", {"app1": "ok"}, {"app1": backed_up(3, 4)})
    ledger.close()
    found = lookup(url)
    assert found.returncode == 0, found.stdout + found.stderr
    assert result(found)["msg"] == {
        "archives": [archive(3), archive(4)],
        "runs": ["m1", "b1"],
        "baseline": "m1",
    }

    # Someone rewrites the record to hide an archive: the chain breaks and the lookup fails
    # rather than answer with the forged list.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        row = conn.execute(sa.select(entries).where(entries.c.run_id == "b1")).fetchall()[-1]
        forged = row.body.replace(archive(4)["name"], "app1-forged")
        conn.execute(sa.update(entries).where(entries.c.seq == row.seq).values(body=forged))
    engine.dispose()
    refused = lookup(url)
    assert refused.returncode != 0
    assert "does not verify" in result(refused)["msg"], result(refused)
