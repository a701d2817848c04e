#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""The updates apt would install on this host, as facts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: apt_pending_updates
short_description: List the package updates apt would install, as facts
description:
  - Simulates C(apt-get dist-upgrade) (C(apt-get -s --ignore-hold dist-upgrade), so held
    packages are listed too) and returns each pending update with its installed and
    candidate version, its origin and archive (suite), whether it is a security update,
    whether it is held (C(apt-mark showhold)) and whether it matches the exclusions.
  - Reads apt's own output, so it needs nothing on the host but apt (no python3-apt), and it
    never changes the host. It does not refresh apt's lists; run C(apt update) first.
  - Optionally waits for apt's and dpkg's locks to be free first, and fails with a clear
    message when another process keeps them.
  - Optionally returns the version of every installed package (C(dpkg-query)), to record
    versions before and after an upgrade.
version_added: "1.0.0"
author:
  - TechOps (!UNKNOWN)
options:
  security_patterns:
    description:
      - Shell-style patterns matched against each candidate release's origin
        (C(Debian-Security)) and archive or suite (C(bookworm-security), C(stable-security)).
        A package with a matching release is a security update.
    type: list
    elements: str
    default: [Debian-Security, "*-security"]
  exclude:
    description:
      - Shell-style patterns of package names marked C(excluded) (never to be upgraded).
    type: list
    elements: str
    default: []
  lock_timeout:
    description:
      - Seconds to wait for apt's and dpkg's locks to be free. C(0) does not check them.
      - The module fails when a lock is still held after that time.
    type: int
    default: 0
  installed_versions:
    description:
      - Also return C(installed_versions), the version of every installed package.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module changes nothing on the host, so it has no diff to show.
  facts:
    support: full
    description: Returns C(ansible_facts.apt_pending_updates), which updates the host's facts.
notes:
  - Debian and its derivatives only (apt and dpkg).
"""

EXAMPLES = r"""
- name: Read the pending updates
  techops.ops.apt_pending_updates:
    exclude: [postgresql-*]
    lock_timeout: 120

- name: Show the security updates still pending
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts['apt_pending_updates'] | selectattr('security') | map(attribute='name') }}
"""

RETURN = r"""
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: dict
  contains:
    apt_pending_updates:
      description: One entry per package apt would upgrade (new dependencies are not listed).
      type: list
      elements: dict
      sample:
        - name: libssl3
          installed: 3.0.11-1~deb12u2
          candidate: 3.0.15-1~deb12u1
          arch: amd64
          origin: Debian-Security
          archive: stable-security
          releases: [{origin: Debian-Security, version: "12", archive: stable-security}]
          security: true
          held: false
          excluded: false
pending:
  description: Number of pending updates.
  returned: always
  type: int
  sample: 4
security:
  description: Number of pending security updates.
  returned: always
  type: int
  sample: 1
held:
  description: Packages on hold (C(apt-mark showhold)), pending updates or not.
  returned: always
  type: list
  elements: str
  sample: [linux-image-amd64]
lock_wait_s:
  description: Seconds spent waiting for apt's locks.
  returned: always
  type: float
  sample: 0.0
installed_versions:
  description: Version of every installed package, by name.
  returned: when I(installed_versions=true)
  type: dict
  sample: {libssl3: 3.0.11-1~deb12u2}
"""

# Ansible's module layout: the documentation strings come first, then the imports.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.techops.ops.plugins.module_utils.techops_apt import (  # noqa: E402
    C_ENV,
    parse_dpkg_query,
    parse_lines,
    parse_simulation,
    pending_updates,
    wait_for_locks,
)


def run(module, args):
    rc, out, err = module.run_command(args, environ_update=C_ENV)
    if rc != 0:
        module.fail_json(
            msg=f"{' '.join(args)} failed (rc={rc}): {err.strip() or out.strip()}. "
            "Repair apt on the host (apt-get -f install, dpkg --configure -a) and rerun.",
            rc=rc,
        )
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            "security_patterns": {
                "type": "list",
                "elements": "str",
                "default": ["Debian-Security", "*-security"],
            },
            "exclude": {"type": "list", "elements": "str", "default": []},
            "lock_timeout": {"type": "int", "default": 0},
            "installed_versions": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params

    waited = 0.0
    if params["lock_timeout"] > 0:
        busy, waited = wait_for_locks(params["lock_timeout"])
        if busy:
            module.fail_json(
                msg=f"apt/dpkg locks still held after {waited:.0f} s: {', '.join(busy)}. "
                "Another apt, dpkg or unattended-upgrades run is active: let it finish "
                "(or stop it), then rerun.",
                busy_locks=busy,
            )

    apt_get = module.get_bin_path("apt-get", required=True)
    apt_mark = module.get_bin_path("apt-mark", required=True)
    held = parse_lines(run(module, [apt_mark, "showhold"]))
    simulated = parse_simulation(
        run(module, [apt_get, "-s", "-q", "--ignore-hold", "dist-upgrade"])
    )
    updates = pending_updates(simulated, held, params["exclude"], params["security_patterns"])

    result = {
        "changed": False,
        "ansible_facts": {"apt_pending_updates": updates},
        "pending": len(updates),
        "security": sum(1 for u in updates if u["security"]),
        "held": held,
        "lock_wait_s": waited,
    }
    if params["installed_versions"]:
        dpkg_query = module.get_bin_path("dpkg-query", required=True)
        fmt = "${db:Status-Abbrev}\t${Package}\t${Version}\n"
        result["installed_versions"] = parse_dpkg_query(run(module, [dpkg_query, "-W", "-f", fmt]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
