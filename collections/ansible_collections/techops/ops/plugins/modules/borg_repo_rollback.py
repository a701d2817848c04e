#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Roll an append-only borg repository back to its last good transaction."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: borg_repo_rollback
short_description: Roll an append-only borg repository back to a transaction (undo client deletes)
description:
  - In append-only mode a client's C(borg delete) or C(borg prune) succeeds and the archives
    vanish from C(borg list), but the data stays; the deletions are new transactions.
    This module undoes such transactions, on the backup server, on the repository's files.
  - It reads the repository's C(transactions) log and the entries of its segment files.
    Without I(to), the last good transaction is the one before the first transaction (after
    I(after)) that deleted more than the previous manifest (which every C(borg create) replaces).
  - It removes the segments written after that transaction, the C(index.N), C(hints.N) and
    C(integrity.N) files of later transactions, drops the later lines from the log, and gives
    the files back to I(owner). borg rebuilds its index on the next access.
  - Clients that used the repository afterwards keep a cache and a security record that now
    look newer than the repository; remove them
    (C(~/.cache/borg/ID), C(~/.config/borg/security/ID)).
  - Run it only when nothing uses the repository (it refuses while a lock is held).
  - borg logs transactions only in append-only mode. A commit that is not in the log was
    made in normal mode (the controller's prune and compaction); the last one is a floor.
    Deletions up to it are the maintenance's own, and the rollback never goes back past it,
    since its compaction removed the segments from before it (and made earlier deletions
    permanent).
version_added: "1.0.0"
author:
  - TechOps (!UNKNOWN)
options:
  path:
    description:
      - The repository directory on this host (it holds C(config), C(data/), C(transactions)).
    type: path
    required: true
  to:
    description: The transaction to go back to (a number from the C(transactions) log).
    type: int
  after:
    description:
      - Ignore deletions in transactions up to this one (an admin prune already accepted).
    type: int
    default: 0
  owner:
    description: The account that owns the repository files (the borg user).
    type: str
    default: borg
attributes:
  check_mode:
    support: full
    description: In check mode (the dry run) it only reports what it would remove.
  diff_mode:
    support: none
    description:
      - No diff is returned; RV(removed) and RV(dropped_transactions) list what is removed
        (in check mode, what would be removed).
"""

EXAMPLES = r"""
- name: What a rollback would remove (dry run)
  techops.ops.borg_repo_rollback:
    path: /srv/borg/app1/repo
  check_mode: true
  register: plan

- name: Roll back to transaction 12
  techops.ops.borg_repo_rollback:
    path: /srv/borg/app1/repo
    to: 12
"""

RETURN = r"""
last_good:
  description: The transaction kept (null when nothing needs rolling back).
  returned: always
  type: int
  sample: 12
reason:
  description: Why that transaction was chosen.
  returned: always
  type: str
  sample: transaction 15 deleted 13 entries (a delete or prune)
dropped_transactions:
  description: The transactions undone, as C(ID at UTC time).
  returned: always
  type: list
  elements: str
  sample: ["15 at 2026-11-22T04:01:02.123456"]
removed:
  description: The files removed (or, in check mode, that would be removed), relative to I(path).
  returned: always
  type: list
  elements: str
  sample: [data/0/15, data/0/16, index.16, hints.16, integrity.16]
repository_id:
  description: The repository's id, to find the clients' cache and security directories.
  returned: always
  type: str
  sample: 5b4d1c...
"""

import os  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.techops.ops.plugins.module_utils.techops_backup import (  # noqa: E402
    parse_transactions,
    plan_rollback,
    read_repository_id,
    segment_tags,
)


def read_segments(path):
    """{number: (relative path, tags)} of every segment file under data/."""
    found = {}
    data = os.path.join(path, "data")
    for directory in sorted(os.listdir(data)):
        full_dir = os.path.join(data, directory)
        if not os.path.isdir(full_dir):
            continue
        for name in os.listdir(full_dir):
            if name.isdigit():
                with open(os.path.join(full_dir, name), "rb") as handle:
                    tags = segment_tags(handle.read())
                found[int(name)] = ("data/%s/%s" % (directory, name), tags)
    return found


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "to": {"type": "int"},
            "after": {"type": "int", "default": 0},
            "owner": {"type": "str", "default": "borg"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        with open(os.path.join(path, "config")) as handle:
            repo_id = read_repository_id(handle.read())
        with open(os.path.join(path, "transactions")) as handle:
            transactions = parse_transactions(handle.read())
        segments = read_segments(path)
    except (OSError, ValueError) as exc:
        module.fail_json(
            msg="Cannot read the repository %s: %s (is it an append-only borg repository?)"
            % (path, exc)
        )
    if os.path.exists(os.path.join(path, "lock.exclusive")):
        module.fail_json(
            msg="The repository %s is locked (lock.exclusive): wait for borg to finish, then retry."
            % path
        )
    try:
        plan = plan_rollback(
            transactions,
            {n: tags for n, (_rel, tags) in segments.items()},
            to=module.params["to"],
            after=module.params["after"],
        )
    except ValueError as exc:
        module.fail_json(msg="No rollback possible for %s: %s" % (path, exc))

    removed = [segments[n][0] for n in plan["segments"]]
    if plan["last_good"] is not None:
        for name in sorted(os.listdir(path)):
            match = re.match(r"^(index|hints|integrity)\.(\d+)$", name)
            if match and int(match.group(2)) > plan["last_good"]:
                removed.append(name)
    result = {
        "changed": bool(removed or plan["dropped"]),
        "last_good": plan["last_good"],
        "reason": plan["reason"],
        "dropped_transactions": ["%d at %s" % item for item in plan["dropped"]],
        "removed": removed,
        "repository_id": repo_id,
    }
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)

    for rel in removed:
        os.remove(os.path.join(path, rel))
    log = os.path.join(path, "transactions")
    with open(log) as handle:
        lines = handle.readlines()
    kept = []
    for line in lines:
        parsed = parse_transactions(line)
        if parsed and parsed[0][0] > plan["last_good"]:
            continue
        kept.append(line)
    with open(log, "w") as handle:
        handle.writelines(kept)
    account = pwd.getpwnam(module.params["owner"])
    for directory, _dirs, files in os.walk(path):
        os.chown(directory, account.pw_uid, account.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), account.pw_uid, account.pw_gid)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
