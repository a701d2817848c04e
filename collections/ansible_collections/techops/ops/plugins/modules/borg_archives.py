#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""The archives of a borg repository, and when the latest was made."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: borg_archives
short_description: List a borg repository's archives and the latest archive's time
description:
  - Runs C(borg list --json) on a repository (local path or C(ssh://) URL) and returns its
    archives oldest first, with times in ISO 8601 with an offset.
  - Optionally runs C(borg info --json) on the latest archive for its file count and sizes.
  - With I(missing_ok), a repository that does not exist yet is an answer (RV(exists) false),
    not an error, so one call both finds the repository and reads its archives.
  - Only reads; the repository is never changed.
version_added: "1.0.0"
author:
  - TechOps (!UNKNOWN)
options:
  repository:
    description:
      - The repository, as borg takes it (C(ssh://borg@backup1/srv/borg/app1/repo) or a path).
    type: str
    required: true
  passcommand:
    description:
      - A command that prints the passphrase (C(BORG_PASSCOMMAND)),
        for example C(cat /etc/techops-backup/passphrase).
      - Preferred to I(passphrase), since the secret never passes through Ansible.
      - The command is not a secret itself, so it is not hidden from logs (C(no_log=false));
        hiding it would only mask every occurrence of the command in the output and the
        error messages. Never write the passphrase itself into it (C(echo SECRET)); use
        I(passphrase) for that.
    type: str
  passphrase:
    description: The passphrase itself (C(BORG_PASSPHRASE)).
    type: str
  rsh:
    description: The SSH command borg uses (C(BORG_RSH)), with the key and known_hosts file.
    type: str
  base_dir:
    description: C(BORG_BASE_DIR) (cache, security and config); empty for borg's default.
    type: path
  prefix:
    description: Only archives whose name starts with this count for I(latest).
    type: str
    default: ""
  latest_info:
    description: Also read the latest archive's statistics (one more borg call).
    type: bool
    default: true
  missing_ok:
    description:
      - Return RV(exists) false, with no archives, when borg says the repository does not
        exist, instead of failing.
      - An unreachable server or a refused key still fails.
    type: bool
    default: false
  lock_wait:
    description: Seconds to wait for the repository lock.
    type: int
    default: 60
  borg:
    description: The borg executable.
    type: path
    default: borg
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module changes nothing in the repository, so it has no diff to show.
"""

EXAMPLES = r"""
- name: Find the latest archive
  techops.ops.borg_archives:
    repository: ssh://borg@backup1/srv/borg/app1/repo
    passcommand: cat /etc/techops-backup/passphrase
    rsh: ssh -i /etc/techops-backup/id_ed25519 -o BatchMode=yes
  register: archives

- name: Show its age
  ansible.builtin.debug:
    msg: "{{ archives.latest.name }} is {{ archives.latest.age_s }} s old"
  when: archives.latest
"""

RETURN = r"""
exists:
  description: Whether the repository exists (always true without I(missing_ok)).
  returned: always
  type: bool
  sample: true
archives:
  description: Every archive, oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: app1-2026-11-22T01:03:11, time: "2026-11-22T01:03:11+00:00", epoch: 1795309391}
count:
  description: The number of archives.
  returned: always
  type: int
  sample: 14
latest:
  description:
    - The newest archive (matching I(prefix)), with C(age_s) (seconds since it was made) and,
      with I(latest_info), C(nfiles), C(original_size), C(compressed_size), C(deduplicated_size).
    - Empty when the repository has no archive.
  returned: always
  type: dict
  sample:
    {name: app1-2026-11-22T01:03:11, time: "2026-11-22T01:03:11+00:00", age_s: 812,
     nfiles: 120, original_size: 52340}
"""

import os  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.techops.ops.plugins.module_utils.techops_backup import (  # noqa: E402
    archive_stats_from_info_json,
    archives_from_list_json,
    latest_archive,
)


def borg_env(params):
    env = {
        # Never answer a question interactively: refuse instead.
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    }
    if params["passcommand"]:
        env["BORG_PASSCOMMAND"] = params["passcommand"]
    if params["passphrase"] is not None:
        env["BORG_PASSPHRASE"] = params["passphrase"]
    if params["rsh"]:
        env["BORG_RSH"] = params["rsh"]
    if params["base_dir"]:
        env["BORG_BASE_DIR"] = params["base_dir"]
    return env


def repository_missing(rc, err):
    """Whether borg failed only because the repository does not exist yet.

    borg exits 2 both for a missing repository and for an unreachable server; its message
    tells them apart ("Repository PATH does not exist.").
    """
    return rc == 2 and "does not exist" in err


def run_borg(module, args, missing_ok=False):
    """borg's stdout; None when missing_ok and the repository does not exist."""
    params = module.params
    command = [params["borg"], "--lock-wait", str(params["lock_wait"]), *args]
    rc, out, err = module.run_command(command, environ_update=borg_env(params))
    if missing_ok and repository_missing(rc, err):
        return None
    if rc != 0:
        module.fail_json(
            msg="borg %s failed (rc %d) on %s: %s"
            % (args[0], rc, params["repository"], err.strip() or out.strip()),
            rc=rc,
            stderr=err,
        )
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            "repository": {"type": "str", "required": True},
            # A command that prints the passphrase (e.g. cat FILE), not the secret: logging it
            # is safe, and no_log would mask the command wherever it appears in the output.
            "passcommand": {"type": "str", "no_log": False},
            "passphrase": {"type": "str", "no_log": True},
            "rsh": {"type": "str"},
            "base_dir": {"type": "path"},
            "prefix": {"type": "str", "default": ""},
            "latest_info": {"type": "bool", "default": True},
            "missing_ok": {"type": "bool", "default": False},
            "lock_wait": {"type": "int", "default": 60},
            "borg": {"type": "path", "default": "borg"},
        },
        mutually_exclusive=[["passcommand", "passphrase"]],
        supports_check_mode=True,
    )
    params = module.params
    if params["base_dir"] and not os.path.isdir(params["base_dir"]):
        os.makedirs(params["base_dir"], 0o700)
    repo = params["repository"]
    listed = run_borg(module, ["list", "--json", repo], missing_ok=params["missing_ok"])
    if listed is None:
        module.exit_json(changed=False, exists=False, archives=[], count=0, latest={})
    try:
        archives = archives_from_list_json(listed)
    except ValueError as exc:
        module.fail_json(msg="Cannot read the archive list of %s: %s" % (repo, exc))
    latest = latest_archive(archives, params["prefix"])
    if latest:
        latest = dict(latest, age_s=int(time.time() - latest["epoch"]))
        if params["latest_info"]:
            info = run_borg(module, ["info", "--json", "%s::%s" % (repo, latest["name"])])
            latest.update(archive_stats_from_info_json(info))
    module.exit_json(
        changed=False, exists=True, archives=archives, count=len(archives), latest=latest or {}
    )


if __name__ == "__main__":
    main()
