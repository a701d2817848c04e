"""The rollout as the records show it: refusals, the canary, the evidence of the patch run."""

from __future__ import annotations

from conftest import (
    CANARY,
    FORCE_REASON,
    OTHER,
    RESULTS,
    TARGETS,
    run_record,
    task_results,
    techops,
)

GATE_PLAY = "Check the window for every host, and choose the canaries"
ROLLOUT_PLAY = "Patch the other hosts in batches"


def test_closed_window_refuses_every_host_before_anything_runs_on_them():
    record = run_record("refused")
    failed = {h: r for _, _, h, r in task_results(record) if r.get("failed")}
    assert set(failed) == set(TARGETS)
    for result in failed.values():
        assert "outside its maintenance window" in result["msg"]
    assert [p["play"]["name"] for p in record["plays"]] == [GATE_PLAY]
    for host in TARGETS:
        refusal = record["custom_stats"][host]["techops_evidence"]["patch"]
        assert refusal["status"] == "refused"
        assert refusal["window"]["open"] is False
        assert refusal["window"]["next_open"]
    assert all(s["changed"] == 0 for s in record["stats"].values())


def test_freeze_refuses_even_inside_an_open_window():
    record = run_record("frozen")
    failed = {h: r for _, _, h, r in task_results(record) if r.get("failed")}
    assert set(failed) == set(TARGETS)
    for result in failed.values():
        assert "change freeze molecule-freeze" in result["msg"]
    for host in TARGETS:
        refusal = record["custom_stats"][host]["techops_evidence"]["patch"]
        assert refusal["status"] == "refused"
        assert refusal["window"]["freeze"] == "molecule-freeze"
    assert [p["play"]["name"] for p in record["plays"]] == [GATE_PLAY]
    assert all(s["changed"] == 0 for s in record["stats"].values())


def test_unhealthy_canary_stops_the_rollout_before_the_other_hosts():
    record = run_record("canary-unhealthy")
    results = task_results(record)
    failed = [(task, host, r) for _, task, host, r in results if r.get("failed")]
    assert len(failed) == 1
    task, host, result = failed[0]
    assert host == CANARY
    assert task.endswith("Stop here if the host is unhealthy (before)")
    assert "techops-lab-app.service is inactive" in result["msg"]
    # The other host went through the gate and nothing else.
    assert {play for play, _, h, _ in results if h == OTHER} == {GATE_PLAY}
    assert ROLLOUT_PLAY not in [p["play"]["name"] for p in record["plays"] if p["tasks"]]
    canary_evidence = record["custom_stats"][CANARY]["techops_evidence"]["patch"]
    assert canary_evidence["status"] == "failed"
    assert canary_evidence["health_before"]["healthy"] is False


def test_nothing_was_patched_by_the_runs_that_refused_or_stopped():
    for host in TARGETS:
        text = (RESULTS / f"versions-after-side-effect-{host}.txt").read_text()
        versions = dict(line.split("\t") for line in text.splitlines() if line)
        assert set(versions.values()) == {"1.0"}, (host, versions)


def test_canary_was_patched_first_and_alone(evidence):
    assert evidence[CANARY]["finished"] <= evidence[OTHER]["started"]


def test_forced_run_proceeds_and_records_its_reason(evidence):
    for host in TARGETS:
        assert evidence[host]["status"] == "ok"
        assert evidence[host]["window"]["open"] is False
        assert evidence[host]["forced_reason"] == FORCE_REASON


def test_evidence_records_only_changed_packages_and_no_excluded_one(evidence):
    assert evidence[CANARY]["versions_before"] == {
        "techops-lab-app": "1.0",
        "techops-lab-secfix": "1.0",
    }
    assert evidence[CANARY]["versions_after"] == {
        "techops-lab-app": "1.1",
        "techops-lab-secfix": "1.1",
    }
    assert evidence[OTHER]["versions_after"] == {"techops-lab-app": "1.1"}
    for host in TARGETS:
        assert evidence[host]["excluded"] == ["techops-lab-pinned"]
        assert "techops-lab-pinned" not in evidence[host]["updates_applied"]


def test_evidence_separates_security_updates(evidence):
    assert evidence[CANARY]["security_updates_applied"] == ["techops-lab-secfix"]
    assert evidence[OTHER]["security_updates_applied"] == []
    summary = evidence[CANARY]["pending_before"]
    assert summary["by_severity"]["security"] == ["techops-lab-secfix"]
    assert summary["by_origin"]["TechOps-Lab"]["security"] == ["techops-lab-secfix"]
    for host in TARGETS:
        assert evidence[host]["security_pending_after"] == 0
        # The excluded package is still pending, as a regular update.
        assert evidence[host]["pending_after"] == 1


def test_reboot_only_where_a_package_asked_for_it(evidence):
    assert evidence[CANARY]["reboot_required"] is True
    assert evidence[CANARY]["reboot_required_packages"] == ["techops-lab-secfix"]
    assert evidence[CANARY]["rebooted"] is True
    assert evidence[CANARY]["reboot_s"] > 0  # how long the host was away
    assert evidence[OTHER]["reboot_required"] is False
    assert evidence[OTHER]["rebooted"] is False
    assert evidence[OTHER]["reboot_s"] is None
    for host in TARGETS:
        assert evidence[host]["health_before"]["healthy"] is True
        assert evidence[host]["health_after"]["healthy"] is True
        assert evidence[host]["duration_s"] > 0


def test_the_second_run_patched_and_rebooted_nothing(patch_runs):
    """The idempotence run, as the ledger recorded it."""
    assert [run["status"] for run in patch_runs] == ["successful", "successful"]
    second = patch_runs[1]["end"]
    assert all(c.get("changed", 0) == 0 for c in second["hosts"].values()), second["hosts"]
    for host in TARGETS:
        patch = second["evidence"][host]["patch"]
        assert patch["updates_applied"] == []
        assert patch["rebooted"] is False


def test_the_run_report_shows_versions_before_and_after_and_the_reboot(patch_runs, tmp_path):
    out = tmp_path / "report.html"
    made = techops("report", patch_runs[0]["run_id"], "--format", "html", "-o", str(out))
    assert made.returncode == 0, made.stderr
    html = out.read_text()
    # The patch evidence table, one row per target: status, reboot, each package's versions.
    patch = html[html.index("<h3>patch</h3>") :]
    canary_row = patch[patch.index(f'<td class="mono">{CANARY}</td>') :].split("</tr>")[0]
    other_row = patch[patch.index(f'<td class="mono">{OTHER}</td>') :].split("</tr>")[0]
    assert "rebooted" in canary_row
    assert "techops-lab-app 1.0 → 1.1" in canary_row
    assert "techops-lab-secfix 1.0 → 1.1" in canary_row
    assert "not required" in other_row
    assert "techops-lab-app 1.0 → 1.1" in other_row
    # The scenario's ledger has no signed checkpoint: the report says it holds internally.
    assert 'Ledger: <span class="status s-unanchored">verified internally only</span>' in html
