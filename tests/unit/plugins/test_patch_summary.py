"""The patch role's filters, called directly (plugins/filter/patch_summary.py)."""

from __future__ import annotations

import pytest

from tests.helpers import load_plugin

patch = load_plugin("plugins/filter/patch_summary.py")


def update(name, *, security=False, held=False, excluded=False, origin="Debian"):
    return {
        "name": name,
        "installed": "1.0",
        "candidate": "1.1",
        "origin": origin,
        "security": security,
        "held": held,
        "excluded": excluded,
    }


PENDING = [
    update("libssl3", security=True, origin="Debian-Security"),
    update("bash"),
    update("linux-image-amd64", held=True),
    update("postgresql-15", security=True, excluded=True, origin="Debian-Security"),
    update("techops-lab-app", origin="TechOps-Lab"),
]


def test_select_all_skips_held_and_excluded_packages():
    assert patch.techops_patch_select(PENDING, "all") == ["bash", "libssl3", "techops-lab-app"]


def test_select_security_only():
    assert patch.techops_patch_select(PENDING, "security") == ["libssl3"]


def test_select_only_matching_packages():
    assert patch.techops_patch_select(PENDING, "all", ["techops-lab-*"]) == ["techops-lab-app"]
    assert patch.techops_patch_select(PENDING, "security", ["techops-lab-*"]) == []


def test_select_rejects_an_unknown_mode_and_bad_input():
    with pytest.raises(patch.AnsibleFilterError, match="mode must be one of"):
        patch.techops_patch_select(PENDING, "everything")
    with pytest.raises(patch.AnsibleFilterError, match="expected a list of updates"):
        patch.techops_patch_select({"bash": "1.1"})
    with pytest.raises(patch.AnsibleFilterError, match="has no name"):
        patch.techops_patch_select([{"security": True}])


def test_in_scope_keeps_held_and_excluded_packages():
    names = [u["name"] for u in patch.techops_patch_in_scope(PENDING, ["postgresql-*", "bash"])]
    assert names == ["bash", "postgresql-15"]
    assert patch.techops_patch_in_scope(PENDING) == PENDING


def test_summary_groups_by_origin_and_severity():
    summary = patch.techops_patch_summary(PENDING)
    assert summary["total"] == 5
    assert summary["security"] == 2
    assert summary["regular"] == 3
    assert summary["held"] == ["linux-image-amd64"]
    assert summary["excluded"] == ["postgresql-15"]
    assert summary["by_severity"] == {
        "security": ["libssl3", "postgresql-15"],
        "regular": ["bash", "linux-image-amd64", "techops-lab-app"],
    }
    assert list(summary["by_origin"]) == ["Debian", "Debian-Security", "TechOps-Lab"]
    assert summary["by_origin"]["Debian-Security"] == {
        "security": ["libssl3", "postgresql-15"],
        "regular": [],
    }
    assert summary["by_origin"]["Debian"] == {
        "security": [],
        "regular": ["bash", "linux-image-amd64"],
    }


def test_summary_of_nothing_pending():
    summary = patch.techops_patch_summary([])
    assert summary["total"] == 0
    assert summary["by_origin"] == {}


def test_summary_names_an_unknown_origin():
    summary = patch.techops_patch_summary([{"name": "x", "origin": ""}])
    assert summary["by_origin"] == {"unknown": {"security": [], "regular": ["x"]}}


def test_changes_lists_only_packages_whose_version_changed():
    before = {"bash": "5.2.15-2+b8", "libssl3": "3.0.11", "vim": "9.0", "gone": "1"}
    after = {"bash": "5.2.15-2+b13", "libssl3": "3.0.11", "vim": "9.0", "new-dep": "2"}
    assert patch.techops_patch_changes(before, after) == {
        "bash": {"before": "5.2.15-2+b8", "after": "5.2.15-2+b13"},
        "gone": {"before": "1", "after": None},
        "new-dep": {"before": None, "after": "2"},
    }
    assert patch.techops_patch_changes(before, before) == {}
    with pytest.raises(patch.AnsibleFilterError):
        patch.techops_patch_changes(before, None)


def test_health_all_good():
    health = patch.techops_patch_health(
        ["ssh.service", "app.service"],
        ["active", "active"],
        [{"item": {"url": "http://127.0.0.1/", "status": 200}, "status": 200}],
    )
    assert health["healthy"] is True
    assert health["problems"] == []
    assert health["services"] == {"ssh.service": "active", "app.service": "active"}


def test_health_reports_each_problem():
    health = patch.techops_patch_health(
        ["ssh.service", "app.service", "db.service"],
        "active\nfailed\n",
        [
            {"item": {"url": "http://127.0.0.1/health"}, "status": 503},
            {"item": {"url": "http://127.0.0.1/", "status": 204}, "status": 204},
        ],
    )
    assert health["healthy"] is False
    assert health["problems"] == [
        "app.service is failed",
        "db.service is unknown",
        "http://127.0.0.1/health answered 503 (expected 200)",
    ]


def test_health_with_nothing_to_check_is_healthy():
    assert patch.techops_patch_health([], [], [])["healthy"] is True


def test_filters_are_registered():
    names = set(patch.FilterModule().filters())
    assert names == {
        "techops_patch_select",
        "techops_patch_in_scope",
        "techops_patch_changes",
        "techops_patch_summary",
        "techops_patch_health",
    }
