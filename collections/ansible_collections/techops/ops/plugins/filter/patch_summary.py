# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Filters of the patch role: what to upgrade, what changed, health, and the report's summary.

Input is what the role's modules return (apt_pending_updates' `apt_pending_updates` facts
and `installed_versions`), so the same functions serve the role and the compliance report.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # used without Ansible (tests, reports)
    AnsibleFilterError = ValueError

MODES = ("all", "security")


def _check_updates(pending: Any, name: str) -> list:
    if not isinstance(pending, list) or not all(isinstance(u, dict) for u in pending):
        raise AnsibleFilterError(f"{name}: expected a list of updates (apt_pending_updates)")
    for update in pending:
        if "name" not in update:
            raise AnsibleFilterError(f"{name}: an update has no name: {update!r}")
    return pending


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def techops_patch_select(pending: Any, mode: str = "all", only: Any = None) -> list:
    """Names of the packages to upgrade: neither held nor excluded; security ones only in
    mode `security`; only those matching `only` (patterns) when it is not empty."""
    _check_updates(pending, "techops_patch_select")
    if mode not in MODES:
        raise AnsibleFilterError(f"techops_patch_select: mode must be one of {MODES}, not {mode!r}")
    only = list(only or [])
    return sorted(
        u["name"]
        for u in pending
        if not u.get("held")
        and not u.get("excluded")
        and (mode == "all" or u.get("security"))
        and (not only or _matches(u["name"], only))
    )


def techops_patch_in_scope(pending: Any, only: Any = None) -> list:
    """The pending updates the run is about (all, or those matching `only`)."""
    _check_updates(pending, "techops_patch_in_scope")
    only = list(only or [])
    return [u for u in pending if not only or _matches(u["name"], only)]


def techops_patch_changes(before: Any, after: Any) -> dict:
    """Packages whose version differs between two {name: version} maps, with both versions
    (null for a package installed or removed by the run)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        raise AnsibleFilterError("techops_patch_changes: expected two {package: version} maps")
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }


def techops_patch_summary(pending: Any) -> dict:
    """Updates grouped by origin and by severity (security or regular), names sorted."""
    _check_updates(pending, "techops_patch_summary")
    by_origin: dict = {}
    by_severity: dict = {"security": [], "regular": []}
    for update in pending:
        severity = "security" if update.get("security") else "regular"
        origin = update.get("origin") or "unknown"
        group = by_origin.setdefault(origin, {"security": [], "regular": []})
        group[severity].append(update["name"])
        by_severity[severity].append(update["name"])
    for group in [*by_origin.values(), by_severity]:
        for names in group.values():
            names.sort()
    return {
        "total": len(pending),
        "security": len(by_severity["security"]),
        "regular": len(by_severity["regular"]),
        "held": sorted(u["name"] for u in pending if u.get("held")),
        "excluded": sorted(u["name"] for u in pending if u.get("excluded")),
        "by_origin": dict(sorted(by_origin.items())),
        "by_severity": by_severity,
    }


def techops_patch_health(services: Any, states: Any = None, probes: Any = None) -> dict:
    """Health of a host from the states `systemctl is-active` printed for the services (a list
    in the same order, or that output as text, one per line) and ansible.builtin.uri results
    (each with item.url and item.status)."""
    services = list(services or [])
    if isinstance(states, str):
        states = states.splitlines()
    states = [str(s).strip() for s in states or []]
    # A service without a state (output cut short) counts as unknown, so as unhealthy.
    states += ["unknown"] * (len(services) - len(states))
    service_states = dict(zip(services, states[: len(services)], strict=True))
    probe_results = []
    for result in probes or []:
        item = result.get("item") or {}
        expected = int(item.get("status", 200))
        probe_results.append(
            {
                "url": item.get("url"),
                "expected": expected,
                "status": result.get("status"),
                "ok": result.get("status") == expected,
            }
        )
    problems = [f"{name} is {state}" for name, state in service_states.items() if state != "active"]
    problems += [
        f"{p['url']} answered {p['status']} (expected {p['expected']})"
        for p in probe_results
        if not p["ok"]
    ]
    return {
        "healthy": not problems,
        "services": service_states,
        "probes": probe_results,
        "problems": problems,
    }


class FilterModule:
    def filters(self):
        return {
            "techops_patch_select": techops_patch_select,
            "techops_patch_in_scope": techops_patch_in_scope,
            "techops_patch_changes": techops_patch_changes,
            "techops_patch_summary": techops_patch_summary,
            "techops_patch_health": techops_patch_health,
        }
