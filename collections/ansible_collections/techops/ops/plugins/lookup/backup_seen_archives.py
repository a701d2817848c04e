# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""The archives the ledger saw in a client's backup repository since our last prune."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: backup_seen_archives
short_description: The archives the ledger saw in a backup repository since our last prune
description:
  - Reads the ledger C(techops) records runs in (TECHOPS_LEDGER, which C(techops run) sets,
    else the controller's own) and returns, for each client named, the archives the last
    real backup maintenance left in its repository on I(server) and those the backup runs
    listed since (runner/reports/archives.py says exactly which).
  - The ledger's hash chain is verified first; a ledger that does not verify, or that
    cannot be opened, is an error, never an empty answer, since an empty answer would let
    a maintenance compact over deletions it cannot see.
options:
  _terms:
    description: Client names (as their backup evidence names them).
    required: true
    type: list
    elements: str
  server:
    description: The backup server's inventory name.
    required: true
    type: str
requirements:
  - the techops package (runner/ in this repository, installed in its virtualenv)
author:
  - TechOps (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read what the ledger saw in app1's repository
  ansible.builtin.debug:
    msg: "{{ lookup('techops.ops.backup_seen_archives', 'app1', server='backup1') }}"
"""

RETURN = r"""
_raw:
  description:
    - Per client, C(archives) (each C({name, id})), C(runs) (the run ids that listed them)
      and C(baseline) (the maintenance run the comparison starts from, or null).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

IMPORT_ERROR: str | None
try:
    from runner.core.errors import UserError
    from runner.ledger.store import Ledger, ledger_url
    from runner.reports.archives import seen_archives
    from runner.reports.model import load_runs
except ImportError as exc:  # pragma: no cover - techops is not importable here
    IMPORT_ERROR = str(exc)
else:
    IMPORT_ERROR = None


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if IMPORT_ERROR is not None:
            raise AnsibleError(
                "backup_seen_archives needs the techops package (run through techops, "
                "or with the repository's .venv): %s" % IMPORT_ERROR
            )
        server = self.get_option("server")
        url = ledger_url()
        try:
            ledger = Ledger.open(url, create=False)
        except UserError as exc:
            raise AnsibleError("cannot open the ledger: %s" % exc) from None
        try:
            verification = ledger.verify()
            if verification.problem is not None:
                raise AnsibleError(
                    "the ledger %s does not verify (%s): its record of the archives cannot "
                    "be trusted" % (ledger.where, verification.problem.reason)
                )
            runs = load_runs(ledger)
        except UserError as exc:
            raise AnsibleError("cannot read the ledger %s: %s" % (ledger.where, exc)) from None
        finally:
            ledger.close()
        return [seen_archives(runs, str(client), server).as_dict() for client in terms]
