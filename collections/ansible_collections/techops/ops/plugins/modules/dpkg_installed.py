#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Which of a list of Debian packages dpkg has installed, without opening apt's cache."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dpkg_installed
short_description: Tell which of a list of Debian packages are installed, cheaply
description:
  - Asks C(dpkg-query) for the state of the named packages and returns which are installed
    (with their version) and which are missing.
  - Meant to guard M(ansible.builtin.apt) with C(state=present). The apt module opens apt's
    whole package cache through python3-apt on every run, which costs about a second of CPU
    per host even when nothing is to be done; this module costs one C(dpkg-query) call.
    Run apt only when RV(missing) is not empty.
  - A package counts as installed when dpkg's status is installed (C(ii), or C(hi) when held)
    with no error flag; a half-configured or removed package is missing.
  - Only reads; nothing on the host changes.
version_added: "1.0.0"
author:
  - TechOps (!UNKNOWN)
options:
  name:
    description:
      - The packages, as the apt module takes them with C(state=present), that is C(NAME),
        C(NAME:ARCH) or C(NAME=VERSION).
      - A package given with a version counts as installed only at exactly that version.
      - Version ranges and wildcards are refused, since dpkg alone cannot answer them as apt would.
    type: list
    elements: str
    required: true
    aliases: [pkg, package]
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module changes nothing on the host, so it has no diff to show.
"""

EXAMPLES = r"""
- name: Find which baseline packages are missing
  techops.ops.dpkg_installed:
    name: [chrony, nftables, sudo]
  register: baseline

- name: Install them, only when some are missing
  ansible.builtin.apt:
    name: "{{ baseline.missing }}"
    state: present
    update_cache: true
  when: baseline.missing | length > 0
"""

RETURN = r"""
installed:
  description: The requested packages that are installed, with the installed version.
  returned: always
  type: dict
  sample: {chrony: 4.3-2+deb12u1, nftables: 1.0.6-2+deb12u2}
missing:
  description: The requested packages that are not installed (as given in O(name)), in order.
  returned: always
  type: list
  elements: str
  sample: [sudo]
"""

# Ansible's module layout: the documentation strings come first, then the imports.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.techops.ops.plugins.module_utils.techops_apt import (  # noqa: E402
    C_ENV,
    DPKG_STATUS_FORMAT,
    installed_and_missing,
    parse_dpkg_status,
    parse_package_spec,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {
                "type": "list",
                "elements": "str",
                "required": True,
                "aliases": ["pkg", "package"],
            },
        },
        supports_check_mode=True,
    )
    specs = []
    for spec in module.params["name"]:
        try:
            specs.append(parse_package_spec(spec))
        except ValueError as exc:
            module.fail_json(msg="dpkg_installed: %s. Give plain package names." % exc)
    if not specs:
        module.exit_json(changed=False, installed={}, missing=[])

    dpkg_query = module.get_bin_path("dpkg-query", required=True)
    names = sorted({s["name"] + (":" + s["arch"] if s["arch"] else "") for s in specs})
    rc, out, err = module.run_command(
        [dpkg_query, "-W", "-f", DPKG_STATUS_FORMAT, "--", *names], environ_update=C_ENV
    )
    # rc 1 with "no packages found matching" only means some names are unknown to dpkg:
    # they are missing. Anything else is dpkg itself failing.
    unexpected = [
        line
        for line in err.splitlines()
        if line.strip() and "no packages found matching" not in line
    ]
    if rc not in (0, 1) or unexpected:
        module.fail_json(
            msg="dpkg-query failed (rc=%d): %s. Repair dpkg on the host "
            "(dpkg --configure -a) and rerun." % (rc, (err or out).strip()),
            rc=rc,
        )
    installed, missing = installed_and_missing(specs, parse_dpkg_status(out))
    module.exit_json(changed=False, installed=installed, missing=missing)


if __name__ == "__main__":
    main()
