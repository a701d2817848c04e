#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Retention and compaction of a borg repository, refused over an unexplained deletion."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: borg_maintain
short_description: Prune and compact a borg repository unless archives vanished unexplained
description:
  - Lists the repository's archives and compares them with I(expected), the archives a
    trusted record (the ledger) last saw there. An expected archive that is gone, and that
    I(accept_vanished) does not name, means someone deleted it outside our retention (a
    client's key in append-only mode can), and only a compaction would make the deletion
    permanent. Then nothing is pruned or compacted, and RV(refused) is true.
  - Otherwise runs C(borg prune) with the retention given (archives whose names start with
    I(prefix) only), lists the archives again, then C(borg compact).
  - Run it from a trusted controller with a key whose forced command on the server is
    C(borg serve --restrict-to-repository REPO), without C(--append-only); clients keep
    their append-only keys, and the server never holds the passphrase.
  - In check mode, prune runs with C(--dry-run) and compaction is skipped.
version_added: "1.0.0"
author:
  - TechOps (!UNKNOWN)
options:
  repository:
    description: The repository, as borg takes it (C(ssh://borg@backup1:22/srv/borg/app1/repo)).
    type: str
    required: true
  passphrase:
    description: The repository's passphrase (C(BORG_PASSPHRASE)), from the vault.
    type: str
    required: true
  rsh:
    description: The SSH command borg uses (C(BORG_RSH)), with the maintenance key.
    type: str
  base_dir:
    description: C(BORG_BASE_DIR) (cache and security records); empty for borg's default.
    type: path
  prefix:
    description: Retention applies to the archives whose names start with this.
    type: str
    required: true
  keep_daily:
    description: Daily archives to keep.
    type: int
    required: true
  keep_weekly:
    description: Weekly archives to keep.
    type: int
    required: true
  keep_monthly:
    description: Monthly archives to keep.
    type: int
    required: true
  expected:
    description:
      - The archives a trusted record last saw in the repository, each C({name, id}).
      - An archive matches by its id when one is given (a new archive under an old name
        does not stand in for the one deleted), by its name otherwise.
      - Empty when there is no record yet; nothing can have vanished then.
    type: list
    elements: dict
    default: []
  accept_vanished:
    description:
      - Names of expected archives whose disappearance an operator explains (deleted on
        purpose); they do not stop the maintenance.
    type: list
    elements: str
    default: []
  compact:
    description: Compact after pruning (frees the space of deleted archives for good).
    type: bool
    default: true
  lock_wait:
    description: Seconds to wait for the repository lock.
    type: int
    default: 600
  borg:
    description: The borg executable.
    type: path
    default: borg
attributes:
  check_mode:
    support: full
    description: Prune with C(--dry-run) (RV(pruned) names what it would prune); no compaction.
  diff_mode:
    support: none
    description: The archives pruned are in RV(pruned).
"""

EXAMPLES = r"""
- name: Prune and compact app1's repository
  techops.ops.borg_maintain:
    repository: ssh://borg@backup1:22/srv/borg/app1/repo
    passphrase: "{{ backup_passphrase }}"
    rsh: ssh -i ~/.ssh/techops-borg/backup1-app1 -o IdentitiesOnly=yes -o BatchMode=yes
    prefix: app1-
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
    expected: [{name: app1-2026-11-30T01:02:03, id: 4f1c...}]
  register: maintained
"""

RETURN = r"""
refused:
  description: Archives vanished unexplained; nothing was pruned or compacted.
  returned: always
  type: bool
vanished:
  description: Expected archives that are gone (C({name, id})), explained or not.
  returned: always
  type: list
  elements: dict
unexplained:
  description: The names of the vanished archives that I(accept_vanished) does not name.
  returned: always
  type: list
  elements: str
before:
  description: The archives before pruning, oldest first (C({name, id, time})).
  returned: always
  type: list
  elements: dict
pruned:
  description: The names of the archives pruned (in check mode, that would be pruned).
  returned: always
  type: list
  elements: str
after:
  description: The archives after pruning, oldest first (C({name, id, time})).
  returned: always
  type: list
  elements: dict
compacted:
  description: Whether C(borg compact) ran and passed.
  returned: always
  type: bool
freed:
  description: The space compaction says it freed, as borg prints it (C(1.23 MB)); null if not said.
  returned: always
  type: str
"""

import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.techops.ops.plugins.module_utils.techops_backup import (  # noqa: E402
    archives_from_list_json,
    vanished_archives,
)

# borg prune --list, in a dry run (borg 1.2 and 1.4 print both forms on stderr).
WOULD_PRUNE = re.compile(r"^Would prune:\s+(\S+)", re.MULTILINE)
# borg compact --info: "compaction freed about 1.23 MB repository space."
FREED = re.compile(r"compaction freed about (\S+ ?[kMGTP]?i?B)")


def borg_env(params):
    env = {
        "BORG_PASSPHRASE": params["passphrase"],
        # Never answer a question interactively: refuse instead.
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    }
    if params["rsh"]:
        env["BORG_RSH"] = params["rsh"]
    if params["base_dir"]:
        env["BORG_BASE_DIR"] = params["base_dir"]
    return env


def run_borg(module, args, result):
    params = module.params
    command = [params["borg"], "--lock-wait", str(params["lock_wait"]), *args]
    rc, out, err = module.run_command(command, environ_update=borg_env(params))
    if rc != 0:
        result.update(
            msg="borg %s failed (rc %d) on %s: %s"
            % (args[0], rc, params["repository"], err.strip() or out.strip()),
            rc=rc,
        )
        module.fail_json(**result)
    return out, err


def listing(module, result):
    out = run_borg(module, ["list", "--json", module.params["repository"]], result)[0]
    try:
        archives = archives_from_list_json(out)
    except ValueError as exc:
        result["msg"] = "Cannot read the archive list of %s: %s" % (
            module.params["repository"],
            exc,
        )
        module.fail_json(**result)
    return [{"name": a["name"], "id": a["id"], "time": a["time"]} for a in archives]


def main():
    module = AnsibleModule(
        argument_spec={
            "repository": {"type": "str", "required": True},
            "passphrase": {"type": "str", "required": True, "no_log": True},
            "rsh": {"type": "str"},
            "base_dir": {"type": "path"},
            "prefix": {"type": "str", "required": True},
            "keep_daily": {"type": "int", "required": True},
            "keep_weekly": {"type": "int", "required": True},
            "keep_monthly": {"type": "int", "required": True},
            "expected": {"type": "list", "elements": "dict", "default": []},
            "accept_vanished": {"type": "list", "elements": "str", "default": []},
            "compact": {"type": "bool", "default": True},
            "lock_wait": {"type": "int", "default": 600},
            "borg": {"type": "path", "default": "borg"},
        },
        supports_check_mode=True,
    )
    params = module.params
    repo = params["repository"]
    if not params["prefix"]:
        module.fail_json(msg="prefix is empty: retention would apply to every archive of %s" % repo)
    if params["keep_daily"] + params["keep_weekly"] + params["keep_monthly"] < 1:
        module.fail_json(
            msg="keep_daily, keep_weekly and keep_monthly are all 0: "
            "prune would delete every archive"
        )
    result: dict = {
        "changed": False,
        "refused": False,
        "vanished": [],
        "unexplained": [],
        "before": [],
        "pruned": [],
        "after": [],
        "compacted": False,
        "freed": None,
    }
    before = listing(module, result)
    result["before"] = before
    try:
        vanished = vanished_archives(params["expected"], before)
    except ValueError as exc:
        module.fail_json(msg="expected: %s" % exc, **result)
    accepted = set(params["accept_vanished"])
    result["vanished"] = vanished
    result["unexplained"] = [a["name"] for a in vanished if a["name"] not in accepted]
    if result["unexplained"]:
        result["refused"] = True
        result["after"] = before
        module.exit_json(**result)

    prune = ["prune", "--list", "--glob-archives", params["prefix"] + "*"]
    for keep in ("daily", "weekly", "monthly"):
        prune += ["--keep-" + keep, str(params["keep_" + keep])]
    if module.check_mode:
        err = run_borg(module, [*prune, "--dry-run", repo], result)[1]
        result["pruned"] = WOULD_PRUNE.findall(err)
        result["after"] = [a for a in before if a["name"] not in set(result["pruned"])]
        module.exit_json(**result)

    run_borg(module, [*prune, repo], result)
    after = listing(module, result)
    kept = {a["id"] for a in after}
    result["after"] = after
    result["pruned"] = [a["name"] for a in before if a["id"] not in kept]
    result["changed"] = bool(result["pruned"])
    if params["compact"]:
        err = run_borg(module, ["compact", "--info", repo], result)[1]
        result["compacted"] = True
        freed = FREED.search(err)
        result["freed"] = freed.group(1) if freed else None
        if freed and not re.match(r"0(\.0+)? ", freed.group(1)):
            result["changed"] = True
    module.exit_json(**result)


if __name__ == "__main__":
    main()
