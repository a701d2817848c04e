# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Load the Jinja filters and tests once in the controller, before Ansible forks its workers."""

from __future__ import annotations

DOCUMENTATION = r"""
name: jinja_plugins_preload
type: aggregate
short_description: Load Jinja filter and test plugins once, before the workers fork
description:
  - Ansible forks one worker process per task and host. A worker that templates anything
    with a filter or a test first loads every filter and test plugin file it can find
    (ansible-core's, the site's C(filter_plugins)), because the controller process, whose
    memory the worker inherits, has not loaded them. On a 2-core controller that repeated
    loading is a measurable share of an idempotent run's CPU.
  - The filters of the collection techops.ops are not listed by the loader; they are
    loaded by asking for a name no filter has, for which the loader loads every filter
    file of the collection while it looks.
  - This callback makes the controller load them at the start of every task and handler
    (a no-op once loaded), before that task's workers fork, so that every worker inherits
    them already loaded.
  - It changes no result and prints nothing. Enabled in the repository's ansible.cfg.
author:
  - TechOps (!UNKNOWN)
"""

from ansible.plugins.callback import CallbackBase  # noqa: E402
from ansible.plugins.loader import filter_loader, test_loader  # noqa: E402

# No filter has this name: looking for it loads every filter file of the collection.
COLLECTION_PROBE = "techops.ops.jinja_plugins_preload_probe"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jinja_plugins_preload"
    CALLBACK_NEEDS_ENABLED = True

    def _preload(self) -> None:
        # all() fills the loaders' cache of legacy (non-collection) plugins on first use and
        # returns at once afterwards; adding a plugin directory (a role's) empties it again.
        for loader in (filter_loader, test_loader):
            for _plugin in loader.all():
                pass
        filter_loader.get(COLLECTION_PROBE)

    def v2_playbook_on_task_start(self, task: object, is_conditional: bool) -> None:
        self._preload()

    def v2_playbook_on_handler_task_start(self, task: object) -> None:
        self._preload()
