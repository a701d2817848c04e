from __future__ import annotations

import os
import time

import pytest

from runner.core.errors import UserError
from runner.ledger.retention import Policy, prune_artifacts, prune_detail


def make_runs(root, names, age_days=0.0):
    for name in names:
        path = root / name
        (path / "artifacts").mkdir(parents=True)
        old = time.time() - age_days * 86400
        os.utime(path, (old, old))


def test_keeps_the_newest_n_runs(tmp_path):
    make_runs(tmp_path, [f"20261101T00000{i}Z-aaaaaa" for i in range(5)])
    removed = prune_artifacts(tmp_path, Policy(keep_runs=2, keep_days=None))
    assert sorted(removed) == [f"20261101T00000{i}Z-aaaaaa" for i in range(3)]
    assert len(list(tmp_path.iterdir())) == 2


def test_removes_runs_older_than_d_days_but_never_the_current_one(tmp_path):
    make_runs(tmp_path, ["20261001T000000Z-old000"], age_days=40)
    make_runs(tmp_path, ["20261002T000000Z-cur000"], age_days=40)
    make_runs(tmp_path, ["20261120T000000Z-new000"], age_days=1)
    removed = prune_artifacts(
        tmp_path, Policy(keep_runs=None, keep_days=30), keep={"20261002T000000Z-cur000"}
    )
    assert removed == ["20261001T000000Z-old000"]


def test_policy_from_environment(monkeypatch):
    monkeypatch.setenv("TECHOPS_KEEP_RUNS", "off")
    monkeypatch.setenv("TECHOPS_KEEP_DAYS", "7")
    assert Policy.from_env() == Policy(keep_runs=None, keep_days=7.0)
    monkeypatch.setenv("TECHOPS_KEEP_DAYS", "a week")
    with pytest.raises(UserError, match="TECHOPS_KEEP_DAYS"):
        Policy.from_env()


def test_pruning_detail_leaves_a_tombstone_and_a_valid_chain(ledger):
    rows = [{"run_id": "r1", "counter": 1, "event": "runner_on_ok", "host": "h", "data": "{}"}]
    ledger.append("run.started", "r1", {"playbook": "site.yml"}, event_rows=rows)
    ledger.append(
        "run.finished", "r1", {"status": "successful", "events": {"count": 1, "sha256": "ab"}}
    )
    body = prune_detail(ledger, "9999")
    assert body["runs"]["r1"]["events"] == 1
    assert ledger.run_events("r1") == []
    assert [e.kind for e in ledger.entries()] == ["run.started", "run.finished", "ledger.pruned"]
    assert ledger.verify().ok
    assert prune_detail(ledger, "9999") is None  # already pruned: no second tombstone
