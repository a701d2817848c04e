#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Check restored files against the manifest written at backup time."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_manifest_verify
short_description: Verify restored files against a backup manifest (path, size, sha256)
description:
  - "Reads the manifest the backup role's hook wrote into the archive (JSON,
    C({files: [{path, size, sha256}]})) and checks every listed file under I(root): it must
    exist, have the recorded size and the recorded sha256."
  - Names every missing or different file. Fails when any is found, unless
    I(fail_on_mismatch=false).
  - Only reads.
version_added: "1.0.0"
author:
  - TechOps (!UNKNOWN)
options:
  manifest:
    description: The manifest file (as restored).
    type: path
    required: true
  root:
    description: Where the archive was restored; manifest paths are taken relative to it.
    type: path
    default: /
  fail_on_mismatch:
    description: Fail the task when a file is missing or differs.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module changes nothing on the host, so it has no diff to show.
"""

EXAMPLES = r"""
- name: Verify the restore
  techops.ops.backup_manifest_verify:
    manifest: /var/lib/techops-backup/manifest/manifest.json
    root: /
  register: restore_check

- name: Verify a restore into a scratch directory, without failing
  techops.ops.backup_manifest_verify:
    manifest: /scratch/var/lib/techops-backup/manifest/manifest.json
    root: /scratch
    fail_on_mismatch: false
  register: restore_check
"""

RETURN = r"""
passed:
  description: Every file in the manifest is present and identical.
  returned: always
  type: bool
  sample: true
files_total:
  description: The number of files in the manifest.
  returned: always
  type: int
  sample: 120
files_verified:
  description: The number of files that match.
  returned: always
  type: int
  sample: 120
mismatches:
  description: One entry per missing or different file, with what was expected and found.
  returned: always
  type: list
  elements: dict
  sample: [{path: /srv/app/data/b.txt, problem: sha256, expected: 9f86..., actual: 2c26...}]
missing:
  description: The paths of the missing files (also in I(mismatches)).
  returned: always
  type: list
  elements: str
  sample: [/srv/app/data/c.txt]
created:
  description: When the manifest was written (at backup time), as recorded in it.
  returned: always
  type: str
  sample: "2026-11-22T01:03:10+00:00"
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.techops.ops.plugins.module_utils.techops_backup import (  # noqa: E402
    load_manifest,
    verify_entries,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "manifest": {"type": "path", "required": True},
            "root": {"type": "path", "default": "/"},
            "fail_on_mismatch": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        with open(params["manifest"], encoding="utf-8") as handle:
            manifest = load_manifest(handle.read())
    except (OSError, ValueError) as exc:
        module.fail_json(
            msg="Cannot read the manifest %s: %s (was it restored with the archive?)"
            % (params["manifest"], exc),
            passed=False,
            files_verified=0,
            mismatches=[],
        )
    entries = manifest["files"]
    verified, mismatches = verify_entries(entries, params["root"])
    result = {
        "changed": False,
        "passed": not mismatches,
        "files_total": len(entries),
        "files_verified": verified,
        "mismatches": mismatches,
        "missing": [m["path"] for m in mismatches if m["problem"] == "missing"],
        "created": manifest.get("created", ""),
    }
    if mismatches and params["fail_on_mismatch"]:
        names = ", ".join("%s (%s)" % (m["path"], m["problem"]) for m in mismatches)
        module.fail_json(
            msg="%d of %d files do not match the manifest: %s"
            % (len(mismatches), len(entries), names),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
