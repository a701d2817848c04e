#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Whether this host needs a reboot, and why."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: reboot_required
short_description: Tell whether a Debian host needs a reboot, and why
description:
  - A reboot is required when C(/run/reboot-required) exists (Debian packages' maintainer
    scripts create it, and list themselves in C(/run/reboot-required.pkgs)), or when a
    kernel newer than the running one is installed in C(/boot).
  - Only reads; C(/run) is emptied by the reboot itself.
version_added: "1.0.0"
author:
  - TechOps (!UNKNOWN)
options:
  check_kernel:
    description:
      - Also compare the newest kernel image in I(boot_dir) with the running kernel.
      - Containers have no kernel of their own in C(/boot); nothing is found there.
    type: bool
    default: true
  boot_dir:
    description: Where kernel images (C(vmlinuz-RELEASE)) are installed.
    type: path
    default: /boot
  run_dir:
    description: Where C(reboot-required) and C(reboot-required.pkgs) are written.
    type: path
    default: /run
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module changes nothing on the host, so it has no diff to show.
"""

EXAMPLES = r"""
- name: Does the host need a reboot?
  techops.ops.reboot_required:
  register: reboot

- name: Reboot when it does
  ansible.builtin.reboot:
  when: reboot.reboot_required
"""

RETURN = r"""
reboot_required:
  description: Whether the host needs a reboot.
  returned: always
  type: bool
  sample: true
reasons:
  description: Why (C(reboot-required file), C(newer kernel)); empty when no reboot is needed.
  returned: always
  type: list
  elements: str
  sample: [reboot-required file]
packages:
  description: The packages that asked for the reboot (C(/run/reboot-required.pkgs)), once each.
  returned: always
  type: list
  elements: str
  sample: [linux-image-6.1.0-28-amd64, libc6]
running_kernel:
  description: The running kernel's release (C(uname -r)).
  returned: always
  type: str
  sample: 6.1.0-27-amd64
newest_kernel:
  description: The newest kernel release installed in I(boot_dir); null when none is found.
  returned: always
  type: str
  sample: 6.1.0-28-amd64
"""

# Ansible's module layout: the documentation strings come first, then the imports.
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.techops.ops.plugins.module_utils.techops_apt import (  # noqa: E402
    compare_versions,
    installed_kernels,
    newest_kernel,
    parse_lines,
)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def main():
    module = AnsibleModule(
        argument_spec={
            "check_kernel": {"type": "bool", "default": True},
            "boot_dir": {"type": "path", "default": "/boot"},
            "run_dir": {"type": "path", "default": "/run"},
        },
        supports_check_mode=True,
    )
    params = module.params
    reasons = []
    flag = os.path.join(params["run_dir"], "reboot-required")
    if os.path.exists(flag):
        reasons.append("reboot-required file")
    packages = parse_lines(read(flag + ".pkgs"))

    running = os.uname().release
    newest = None
    if params["check_kernel"]:
        newest = newest_kernel(installed_kernels(params["boot_dir"]))
    if newest and compare_versions(newest, running) > 0:
        reasons.append("newer kernel")

    module.exit_json(
        changed=False,
        reboot_required=bool(reasons),
        reasons=reasons,
        packages=packages,
        running_kernel=running,
        newest_kernel=newest,
    )


if __name__ == "__main__":
    main()
