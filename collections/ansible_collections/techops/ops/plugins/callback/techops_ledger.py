# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Put plain ansible-playbook runs on techops' record; keep them off protected inventories."""

from __future__ import annotations

DOCUMENTATION = r"""
name: techops_ledger
type: aggregate
short_description: Record plain ansible-playbook runs in techops' ledger; refuse protected ones
description:
  - C(techops run) gates protected environments and records every run in the ledger. A run
    started with plain C(ansible-playbook) bypasses it; this callback, enabled in the
    repository's ansible.cfg, puts such a run on the same record.
  - A run against an inventory of a protected environment (environments.yml) is refused
    before its first task, unless it is in check mode; the refusal is recorded, one line
    says it, and the process exits 3 at once. An exception raised in a callback would only
    be a warning, so the callback ends the process itself.
  - Every other run is recorded in the ledger C(techops) uses (TECHOPS_LEDGER, else the
    controller's own) through the same recorder and redaction as C(techops run), marked
    unwrapped. The callback hands the recorder the events ansible-runner would have
    delivered.
  - A run C(techops run) started is recorded by techops, once; the callback stays quiet when
    the run named by TECHOPS_RUN_ID is open in the ledger and was started by a process
    that this one descends from. On an execution node (TECHOPS_RUN_NODE, under
    ansible-runner) the controller records the run, and the callback stays quiet.
  - If the ledger cannot be opened, or environments.yml cannot be read, a run that may be
    protected is refused, and any other one warns and goes on unrecorded. Where the
    techops package cannot be imported (an execution node, an execution environment), the
    callback only warns.
  - It guards against accidents, not against someone who disables it on purpose.
requirements:
  - the techops package (runner/ in this repository, installed in its virtualenv)
author:
  - TechOps (!UNKNOWN)
"""

import atexit  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ansible import constants as C  # noqa: E402
from ansible import context  # noqa: E402
from ansible.parsing.vault import VaultSecretsContext  # noqa: E402
from ansible.plugins.callback import CallbackBase  # noqa: E402
from ansible.utils.display import Display  # noqa: E402
from ansible.utils.vars import transform_to_native_types  # noqa: E402

# techops itself (runner/, installed in the repository's .venv) decides and records. Where
# it cannot be imported, the plugin still loads (no "Skipping callback plugin"), and says
# the run is not recorded, except on an execution node, where the controller records it.
IMPORT_ERROR: str | None
try:
    from runner.execution import vault_probe
    from runner.scheduling import unwrapped
except ImportError as exc:  # an execution node, an execution environment
    unwrapped = None  # type: ignore[assignment]
    vault_probe = None  # type: ignore[assignment]
    IMPORT_ERROR = str(exc)
else:
    IMPORT_ERROR = None

display = Display()

# The markers `techops run` sets (runner.execution.request.RUN_MARKER and NODE_MARKER):
# spelled out here, since on an execution node techops itself cannot be imported.
RUN_MARKER = "TECHOPS_RUN_ID"
NODE_MARKER = "TECHOPS_RUN_NODE"
# Set by ansible-runner for the ansible-playbook it runs (a node's `ansible-runner worker`).
RUNNER_MARKER = "AWX_ISOLATED_DATA_DIR"
# The playbook name ansible (ad hoc) gives its single play: not a playbook run.
ADHOC_PLAYBOOK = "__adhoc_playbook__"
# What ansible-runner puts in place of a no_log result, kept so that both record alike.
CENSORED = (
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
)


def _jsonable(value: Any) -> Any:
    """What ansible-runner's event encoder does with values JSON has no type for."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    # Never str(): an encrypted value would decrypt.
    return "<%s>" % type(value).__name__


def as_event_data(data: Any) -> Any:
    """Event data as an ansible-runner event carries it: plain JSON. Ansible's own
    conversion first, which hides vaulted values; a value it has no type for is left to
    the encoder, which never prints an encrypted value either."""
    with contextlib.suppress(Exception):
        data = transform_to_native_types(data)
    return json.loads(json.dumps(data, default=_jsonable))


def task_context(task: Any) -> dict[str, Any]:
    """A task's fields in an event, as ansible-runner's awx_display callback sets them."""
    found = {
        "task": task.name or task.action,
        "task_action": task.action,
        "resolved_action": getattr(task, "resolved_action", task.action),
        "task_args": "",
    }
    with contextlib.suppress(AttributeError):
        found["task_path"] = task.get_path()
    role = getattr(task, "_role", None)
    name = role._role_name if role is not None else getattr(task, "role_name", "")
    if name:
        found["role"] = name
    return found


def censored(res: Any) -> Any:
    """A result as ansible-runner records it: a no_log result (or loop item) hidden whole."""
    if not isinstance(res, dict):
        return res
    if res.get("_ansible_no_log"):
        return {"censored": CENSORED}
    if isinstance(res.get("results"), list):
        res = dict(res)
        res["results"] = [
            {"censored": CENSORED}
            if isinstance(item, dict) and item.get("_ansible_no_log")
            else item
            for item in res["results"]
        ]
    return res


def is_node_run(environ: Mapping[str, str]) -> bool:
    """A run a controller handed to this execution node: it records the run itself."""
    return all(environ.get(name) for name in (RUN_MARKER, NODE_MARKER, RUNNER_MARKER))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "techops_ledger"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._begun = False
        self._run: Any = None  # an unwrapped.UnwrappedRun while a run is recorded
        self._pid = os.getpid()
        # Ansible calls callbacks from its main thread and from its results thread.
        self._lock = threading.Lock()
        self._counter = 0
        self._context: dict[str, Any] = {}
        self._host_start: dict[str, datetime.datetime] = {}
        self._warned = False

    # ------------------------------------------------------------------ the decision

    def v2_playbook_on_start(self, playbook: Any) -> None:
        if not self._begun:
            self._begun = True
            self._begin(playbook)
        self._context = {"playbook": getattr(playbook, "_file_name", None)}
        self._emit("playbook_on_start")

    def _begin(self, playbook: Any) -> None:
        """Before the first play: stay quiet, refuse the run, or start recording it."""
        if getattr(playbook, "_file_name", None) in (None, ADHOC_PLAYBOOK) or is_node_run(
            os.environ
        ):
            self.disabled = True
            return
        if unwrapped is None:
            display.warning(
                "techops_ledger: techops cannot be imported by this Ansible (%s): this run "
                "is not recorded in the techops ledger, nor judged against protected "
                "environments; use the repository's .venv, or `techops run`" % IMPORT_ERROR
            )
            self.disabled = True
            return
        invocation = self._invocation(playbook)
        try:
            decision = unwrapped.decide(invocation, os.environ)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # Whether the run is protected is unknown: it does not start.
            self._stop("techops: refused: the ledger callback could not judge this run (%s)" % exc)
            return
        if decision.action == unwrapped.REFUSE:
            try:
                line = unwrapped.refuse(decision, invocation)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                line = "techops: refused: %s; the refusal could not be recorded (%s)" % (
                    decision.said,
                    exc,
                )
            self._stop(line, decision.ledger)
        elif decision.action == unwrapped.UNRECORDED:
            display.warning("techops_ledger: %s" % decision.said)
            self.disabled = True
        elif decision.action == unwrapped.QUIET:
            display.vvv("techops_ledger: %s; not recorded a second time" % decision.said)
            if decision.ledger is not None:
                decision.ledger.close()
            self.disabled = True
        else:
            self._record(playbook, decision, invocation)

    def _invocation(self, playbook: Any) -> Any:
        args = context.CLIARGS
        tags = [t for t in args.get("tags") or () if t != "all"]
        return unwrapped.Invocation(
            playbook=Path(playbook._file_name).absolute(),
            # Each -i as given, made absolute by Ansible, or ansible.cfg's inventory.
            inventories=tuple(args.get("inventory") or ()),
            limit=args.get("subset") or None,
            tags=",".join(tags) or None,
            skip_tags=",".join(args.get("skip_tags") or ()) or None,
            check=bool(args.get("check")),
            diff=bool(args.get("diff")),
            forks=args.get("forks"),
            verbosity=args.get("verbosity") or 0,
        )

    def _record(self, playbook: Any, decision: Any, invocation: Any) -> None:
        """Start recording: the extra vars, hosts and secrets the run knows, read from the
        objects Ansible loaded for it."""
        try:
            plays = playbook.get_plays()
            variables = plays[0].get_variable_manager() if plays else None
            inventory = getattr(variables, "_inventory", None)
            loader = getattr(variables, "_loader", None) or getattr(playbook, "_loader", None)
            extravars = dict(variables.extra_vars) if variables is not None else {}
            known = vault_probe.secrets_in(extravars) | self._vault_passwords()
            hosts = None
            if inventory is not None:
                known |= vault_probe.inventory_values(
                    loader, inventory, variables, invocation.inventories
                )
                hosts = sorted(host.name for host in inventory.get_hosts("all"))
            run = unwrapped.UnwrappedRun(
                decision,
                invocation,
                extravars=as_event_data(extravars),
                hosts=hosts,
                known=known,
            )
            run.start()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if decision.environment is not None:  # nothing runs there unrecorded
                self._stop(
                    "techops: refused: a check-mode run on protected environment %r could not be "
                    "recorded (%s)" % (decision.environment.name, exc),
                    decision.ledger,
                )
            display.warning("techops_ledger: this run is not recorded: %s" % exc)
            decision.ledger.close()
            self.disabled = True
            return
        self._run = run
        atexit.register(self._finish)

    @staticmethod
    def _vault_passwords() -> set[str]:
        """The vault passwords this run was given (typed, files, scripts): known secrets."""
        current = VaultSecretsContext.current(optional=True)
        found = set()
        for _label, secret in getattr(current, "secrets", None) or ():
            # A secret whose bytes cannot be read here was never printed by this run either.
            with contextlib.suppress(Exception):
                found.add(secret.bytes.decode("utf-8", "surrogateescape"))
        return found

    def _stop(self, line: str, ledger: Any = None) -> None:
        """End ansible-playbook now, before any task: an exception in a callback is only a
        warning to Ansible, and SystemExit would depend on how Ansible catches it.
        os._exit cannot be caught; what normal exit would do is done first: the line is
        written, the ledger closed, Ansible's temporary directory removed."""
        sys.stdout.flush()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        if ledger is not None:
            ledger.close()
        shutil.rmtree(C.DEFAULT_LOCAL_TMP, ignore_errors=True)
        os._exit(unwrapped.EXIT_REFUSED if unwrapped is not None else 3)

    def _finish(self) -> None:
        """At exit: the run's end, from the last recap (a forked worker never gets here)."""
        if os.getpid() != self._pid or self._run is None:
            return
        with self._lock:
            run, self._run = self._run, None
            try:
                run.finish()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                display.warning(
                    "techops_ledger: the end of run %s is not recorded (%s); the ledger "
                    "marks it interrupted the next time it is used here" % (run.run_id, exc)
                )
            run.ledger.close()

    # ------------------------------------------------------------------ the events

    def _emit(self, event: str, task: Any = None, **data: Any) -> None:
        """One event as ansible-runner would have delivered it, to the recorder."""
        if self._run is None:
            return
        with self._lock:
            if self._run is None:
                return
            self._counter += 1
            event_data = dict(self._context)
            if task is not None:
                event_data.update(task_context(task))
            event_data.update(data)
            try:
                self._run.on_event(
                    {
                        "event": event,
                        "counter": self._counter,
                        "event_data": as_event_data(event_data),
                    }
                )
            except Exception as exc:  # pylint: disable=broad-exception-caught
                if not self._warned:
                    self._warned = True
                    display.warning(
                        "techops_ledger: an event of run %s is not recorded (%s)"
                        % (self._run.run_id, exc)
                    )

    def _result(self, event: str, result: Any, res: bool = True, **data: Any) -> None:
        host = result.host.get_name()
        data["host"] = host
        data["remote_addr"] = result.host.address
        if res:
            data["res"] = censored(result.result)
        start = self._host_start.get(host)
        if start is not None and event.startswith("runner_on_") and event != "runner_on_start":
            end = datetime.datetime.now(datetime.timezone.utc)
            data.update(start=start, end=end, duration=(end - start).total_seconds())
        self._emit(event, result.task, **data)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        pattern = ",".join(play.hosts) if isinstance(play.hosts, list) else play.hosts
        name = play.get_name().strip() or pattern
        self._context = {
            "playbook": self._context.get("playbook"),
            "play": name,
            "play_pattern": pattern,
        }
        self._emit("playbook_on_play_start", name=name, pattern=pattern)

    def v2_playbook_on_vars_prompt(self, varname: str, *args: Any, **kwargs: Any) -> None:
        self._emit("playbook_on_vars_prompt", varname=varname)

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._emit(
            "playbook_on_task_start", task, name=task.get_name(), is_conditional=is_conditional
        )

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._emit("playbook_on_task_start", task, name=task.get_name(), is_conditional=True)

    def v2_playbook_on_include(self, included_file: Any) -> None:
        self._emit("playbook_on_include", included_file=getattr(included_file, "_filename", None))

    def v2_playbook_on_no_hosts_matched(self) -> None:
        self._emit("playbook_on_no_hosts_matched")

    def v2_playbook_on_no_hosts_remaining(self) -> None:
        self._emit("playbook_on_no_hosts_remaining")

    def v2_playbook_on_notify(self, handler: Any, host: Any) -> None:
        self._emit("playbook_on_notify", host=host.get_name(), handler=handler.get_name())

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        self._host_start[host.get_name()] = datetime.datetime.now(datetime.timezone.utc)
        self._emit("runner_on_start", task, host=host.get_name())

    def v2_runner_on_ok(self, result: Any) -> None:
        if result.task.action in (
            "setup",
            "gather_facts",
            "ansible.builtin.setup",
            "ansible.builtin.gather_facts",
        ):
            # As ansible-runner does: the controller's environment stays out of the event.
            facts = result.result.get("ansible_facts")
            if isinstance(facts, dict):
                facts.pop("ansible_env", None)
        self._result("runner_on_ok", result, event_loop=getattr(result.task, "loop_with", None))

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result(
            "runner_on_failed",
            result,
            ignore_errors=ignore_errors,
            event_loop=getattr(result.task, "loop_with", None),
        )

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result(
            "runner_on_skipped",
            result,
            res=False,
            event_loop=getattr(result.task, "loop_with", None),
        )

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result("runner_on_unreachable", result)

    def v2_runner_on_async_poll(self, result: Any) -> None:
        self._result("runner_on_async_poll", result, jid=result.result.get("ansible_job_id"))

    def v2_runner_on_async_ok(self, result: Any) -> None:
        self._result("runner_on_async_ok", result, jid=result.result.get("ansible_job_id"))

    def v2_runner_on_async_failed(self, result: Any) -> None:
        self._result("runner_on_async_failed", result, jid=result.result.get("ansible_job_id"))

    def v2_runner_item_on_ok(self, result: Any) -> None:
        self._result("runner_item_on_ok", result)

    def v2_runner_item_on_failed(self, result: Any) -> None:
        self._result("runner_item_on_failed", result)

    def v2_runner_item_on_skipped(self, result: Any) -> None:
        self._result("runner_item_on_skipped", result)

    def v2_runner_retry(self, result: Any) -> None:
        self._result("runner_retry", result)

    def v2_on_file_diff(self, result: Any) -> None:
        self._emit(
            "runner_on_file_diff",
            result.task,
            host=result.host.get_name(),
            diff=result.result.get("diff"),
        )

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._context = {"playbook": self._context.get("playbook")}
        self._emit(
            "playbook_on_stats",
            changed=stats.changed,
            dark=stats.dark,
            failures=stats.failures,
            ignored=getattr(stats, "ignored", {}),
            ok=stats.ok,
            processed=stats.processed,
            rescued=getattr(stats, "rescued", {}),
            skipped=stats.skipped,
            artifact_data=stats.custom.get("_run", {}) if hasattr(stats, "custom") else {},
        )
