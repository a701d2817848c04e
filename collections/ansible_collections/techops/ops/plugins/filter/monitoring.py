# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Alert thresholds per host, from inventory data, as Prometheus rules need them.

Each monitored host carries its own `monitoring_thresholds` (group_vars give each group
its values; Ansible's variable precedence does the merging), over the monitoring host's
defaults. A rule is one expression per distinct value, selecting its hosts by the
`instance` label; this filter groups the hosts by value and checks every value first, so
that a malformed threshold stops the play naming the host and the variable, before any
file changes.
"""

from __future__ import annotations

import re
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # used without Ansible (the unit tests import this file)
    AnsibleFilterError = ValueError

# name -> (kind, minimum exclusive, maximum inclusive); kind "duration" is Prometheus's.
THRESHOLDS: dict[str, tuple[str, float, float | None]] = {
    "host_down_for": ("duration", 0, None),
    "disk_full_days": ("number", 0, 3650),
    "memory_available_ratio": ("number", 0, 1),
    "inode_free_ratio": ("number", 0, 1),
    "clock_offset_seconds": ("number", 0, 3600),
    "backup_check_max_age_hours": ("number", 0, 8760),
    "security_pending_days": ("number", 0, 3650),
    "reboot_required_days": ("number", 0, 3650),
    "drill_max_age_days": ("number", 0, 3650),
    "vpn_handshake_max_age_seconds": ("number", 0, 86400 * 30),
}
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")


def _check(name: str, value: Any, where: str) -> Any:
    kind, low, high = THRESHOLDS[name]
    if kind == "duration":
        if not isinstance(value, str) or not _DURATION.match(value):
            raise AnsibleFilterError(
                f"{where}: monitoring_thresholds.{name} must be a Prometheus duration "
                f"such as 5m or 1h30m, got {value!r}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnsibleFilterError(
            f"{where}: monitoring_thresholds.{name} must be a number, got {value!r}"
        )
    if value <= low or (high is not None and value > high):
        bound = f"above {low:g}" + (f" and at most {high:g}" if high is not None else "")
        raise AnsibleFilterError(
            f"{where}: monitoring_thresholds.{name} must be {bound}, got {value!r}"
        )
    return value


def _promql_regex(host: str) -> str:
    """A host name as a regular expression inside a PromQL string: host names hold only
    letters, digits, '_', '-', ':' and '.', of which only '.' means something to the
    regex, and PromQL strings take Go's escapes (a backslash is written twice)."""
    return host.replace(".", "\\\\.")


def alert_scopes(
    hostvars: Any, hosts: list[str], defaults: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """For each threshold, the distinct values and the hosts that have each:
    {name: [{"value": v, "hosts": [...], "selector": "^(a|b)$"}]}, in a stable order."""
    if not isinstance(defaults, dict):
        raise AnsibleFilterError("monitoring_thresholds must be a mapping of threshold names")
    unknown = sorted(set(defaults) - set(THRESHOLDS))
    if unknown:
        raise AnsibleFilterError(
            f"monitoring_thresholds: unknown threshold(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(THRESHOLDS))})"
        )
    missing = sorted(set(THRESHOLDS) - set(defaults))
    if missing:
        raise AnsibleFilterError(f"monitoring_thresholds: the defaults miss {', '.join(missing)}")
    scopes: dict[str, dict[Any, list[str]]] = {name: {} for name in sorted(THRESHOLDS)}
    for host in hosts:
        if not _HOST.match(str(host)):
            raise AnsibleFilterError(f"monitored host {host!r}: not a usable instance name")
        own = (hostvars.get(host) or {}).get("monitoring_thresholds") or {}
        if not isinstance(own, dict):
            raise AnsibleFilterError(
                f"host {host}: monitoring_thresholds must be a mapping, got {own!r}"
            )
        extra = sorted(set(own) - set(THRESHOLDS))
        if extra:
            raise AnsibleFilterError(
                f"host {host}: monitoring_thresholds has unknown threshold(s) "
                f"{', '.join(extra)} (known: {', '.join(sorted(THRESHOLDS))})"
            )
        for name in THRESHOLDS:
            value = _check(name, own.get(name, defaults[name]), f"host {host}")
            scopes[name].setdefault(value, []).append(str(host))
    for name in THRESHOLDS:
        _check(name, defaults[name], "the monitoring host's defaults")
    return {
        name: [
            {
                "value": value,
                "hosts": sorted(members),
                "selector": "^(" + "|".join(_promql_regex(h) for h in sorted(members)) + ")$",
            }
            for value, members in sorted(by_value.items(), key=lambda item: str(item[0]))
        ]
        for name, by_value in scopes.items()
    }


class FilterModule:
    """Filters for the monitoring role."""

    def filters(self) -> dict[str, Any]:
        return {"techops_alert_scopes": alert_scopes}
