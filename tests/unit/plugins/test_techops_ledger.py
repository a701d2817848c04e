"""The ledger callback (plugins/callback/techops_ledger.py): a plain ansible-playbook run is
recorded once, marked unwrapped; against a protected inventory it is stopped before its
first task; a run of `techops run` is recorded once, by techops.

The end-to-end tests run the real ansible-playbook of .venv with the repository's
ansible.cfg on inventories of their own whose hosts are this machine (`ansible_connection:
local`), with TECHOPS_LEDGER and TECHOPS_ENVIRONMENTS in a temporary directory: no
container, no address, never the repository's own ledger."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from runner.core.paths import CALLBACK_PLUGINS
from runner.execution.request import NODE_MARKER, RUN_MARKER
from runner.ledger.store import Ledger
from tests.helpers import REPO, load_plugin, techops

PLUGIN = f"{CALLBACK_PLUGINS}/techops_ledger.py"
BIN = Path(sys.executable).parent
# Every outcome the recorder knows (ok, changed, failed, rescued, skipped), a no_log result
# and set_stats evidence, on hosts named for this test: `techops run` locks hosts by name,
# and a lab run elsewhere on this machine must not hold them.
OUTCOMES = """\
- name: Every outcome
  hosts: all
  gather_facts: false
  tasks:
    - name: Reach every host
      ansible.builtin.ping:

    - name: Change something on one host
      ansible.builtin.command: /bin/true
      changed_when: inventory_hostname == 'tl-changed'

    - name: Handle a secret
      ansible.builtin.debug:
        msg: "token is {{ canary }}"
      no_log: true
      vars:
        canary: CANARY-no-log-7f3e

    - name: Recover from an error
      when: inventory_hostname == 'tl-rescued'
      block:
        - name: Fail inside a block
          ansible.builtin.fail:
            msg: planned failure inside a block
      rescue:
        - name: Rescue it
          ansible.builtin.debug:
            msg: rescued

    - name: Publish evidence
      ansible.builtin.set_stats:
        data:
          techops_evidence:
            fixture:
              checked: "{{ inventory_hostname }}"
        per_host: true

    - name: Fail on one host
      ansible.builtin.fail:
        msg: planned failure
      when: inventory_hostname == 'tl-failed'
"""
HOSTS = ["tl-changed", "tl-failed", "tl-ok", "tl-rescued"]
LOCAL = (
    "  vars:\n    ansible_connection: local\n"
    "    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
)
# The first task creates a file on this machine: if the file exists, a task ran.
TOUCH = """\
- name: Touch a file first
  hosts: all
  gather_facts: false
  tasks:
    - name: Create the file that proves a task ran
      ansible.builtin.file:
        path: "{{ proof }}"
        state: touch
        mode: "0600"
"""
# Ansible only warns when a callback raises: the control experiment for the stop.
RAISING = """\
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "raising"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        raise RuntimeError("refused by raising")
"""


@dataclass(frozen=True)
class Site:
    root: Path
    lab: Path  # an unprotected inventory: HOSTS
    prod: Path  # a protected one: tl-prod1
    touch: Path
    outcomes: Path
    environments: Path

    def env(self, ledger: Path, **extra: str) -> dict[str, str]:
        clean = {
            k: v
            for k, v in os.environ.items()
            if k not in (RUN_MARKER, NODE_MARKER, "AWX_ISOLATED_DATA_DIR", "TECHOPS_LEDGER")
        }
        return {
            **clean,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "TECHOPS_LEDGER": f"sqlite:///{ledger}",
            "TECHOPS_ENVIRONMENTS": str(self.environments),
            "ANSIBLE_NOCOLOR": "1",
            **extra,
        }


def playbook(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Plain ansible-playbook, as someone would type it (from another directory: the
    repository's settings come from ANSIBLE_CONFIG)."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def entries(ledger: Path) -> list:
    if not ledger.exists():
        return []
    opened = Ledger.open(f"sqlite:///{ledger}", create=False)
    try:
        return list(opened.entries())
    finally:
        opened.close()


def stored_events(ledger: Path, run_id: str) -> list[dict]:
    opened = Ledger.open(f"sqlite:///{ledger}", create=False)
    try:
        return opened.run_events(run_id)
    finally:
        opened.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    root = tmp_path_factory.mktemp("unwrapped")
    (root / "lab").mkdir()
    lab = root / "lab" / "hosts.yml"
    lab.write_text(
        "all:\n  hosts:\n"
        + "".join(f"    {host}:\n" for host in HOSTS)
        + LOCAL
        + "    api_token: CANARY-inventory-token-41c7\n"
    )
    (root / "prod").mkdir()
    prod = root / "prod" / "hosts.yml"
    prod.write_text("all:\n  hosts:\n    tl-prod1:\n" + LOCAL)
    environments = root / "environments.yml"
    environments.write_text(
        "environments:\n"
        f"  - {{name: prodlike, inventories: [{root / 'prod'}], protected: true}}\n"
        f"  - {{name: lablike, inventories: [{root / 'lab'}], protected: false}}\n"
    )
    touch = root / "touch.yml"
    touch.write_text(TOUCH)
    outcomes = root / "outcomes.yml"
    outcomes.write_text(OUTCOMES)
    return Site(root, lab, prod, touch, outcomes, environments)


@pytest.fixture(scope="module")
def unwrapped_run(site):
    """The outcomes playbook with plain ansible-playbook, a stale wrapper marker in the
    environment (copied from another shell, say): it must not hide the run."""
    ledger = site.root / "unwrapped.sqlite3"
    proc = playbook(
        "-i",
        str(site.lab),
        str(site.outcomes),
        "-e",
        "db_password=CANARY-extra-password-9d2e",
        env=site.env(ledger, **{RUN_MARKER: "20260101T000000Z-000000"}),
        cwd=site.root,
    )
    return proc, ledger


@pytest.fixture(scope="module")
def wrapped_run(site):
    """The same playbook and inventory through `techops run`, with --ledger naming another
    ledger than TECHOPS_LEDGER: the callback must find the run in the wrapper's."""
    given = site.root / "wrapped.sqlite3"
    env_ledger = site.root / "env-ledger.sqlite3"
    proc = techops(
        "run",
        str(site.outcomes),
        "-i",
        str(site.lab),
        "--ledger",
        f"sqlite:///{given}",
        "--json",
        "-vvv",  # ansible-playbook's output (kept with the run) says what the callback decided
        env=site.env(env_ledger),
    )
    return proc, given, env_ledger


def test_an_unwrapped_run_is_recorded_once_with_its_tasks_and_marked(unwrapped_run, site):
    proc, ledger = unwrapped_run
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    recorded = entries(ledger)
    assert [e.kind for e in recorded] == ["run.started", "run.finished"]
    started, finished = recorded
    assert started.body["unwrapped"] is True
    detail = started.body["unwrapped_detail"]
    assert "plain ansible-playbook" in detail
    assert f"{RUN_MARKER}=20260101T000000Z-000000 was not taken" in detail
    assert started.body["playbook"] == str(site.outcomes)
    assert started.body["inventory"]["source"] == str(site.lab)
    assert started.body["hosts"] == HOSTS
    assert started.body["extra_vars"] == {"db_password": "**redacted**"}
    assert started.body["controller"]["pid"] != os.getpid()  # ansible-playbook's own
    # The run's end, as ansible-playbook's exit code and recap say it.
    assert (finished.body["status"], finished.body["rc"]) == ("failed", proc.returncode)
    outcomes = {host: counters["outcome"] for host, counters in finished.body["hosts"].items()}
    assert outcomes == {
        "tl-changed": "changed",
        "tl-failed": "failed",
        "tl-ok": "ok",
        "tl-rescued": "rescued",
    }
    assert [(t["host"], t["msg"]) for t in finished.body["failed_tasks"]] == [
        ("tl-rescued", "planned failure inside a block"),  # then rescued, as techops records it
        ("tl-failed", "planned failure"),
    ]
    assert [t["host"] for t in finished.body["changed_tasks"]] == ["tl-changed"]
    assert finished.body["evidence"]["tl-ok"] == {"fixture": {"checked": "tl-ok"}}
    # Its tasks, event by event, sealed by its end.
    events = stored_events(ledger, started.run_id)
    assert finished.body["events"]["count"] == len(events)
    tasks = {e["task"] for e in events if e["event"] == "playbook_on_task_start"}
    assert {"Reach every host", "Handle a secret", "Publish evidence", "Fail on one host"} <= tasks
    assert {e["host"] for e in events if e["event"] == "runner_on_ok"} == set(HOSTS)
    dump = json.dumps([e.body for e in recorded]) + json.dumps(events)
    assert "CANARY" not in dump
    # On the record as every run is: listed, marked, and the chain holds.
    env = site.env(ledger)
    listed = techops("runs", env=env, check=True).stdout
    assert "ansible-playbook (unwrapped)" in listed.splitlines()[1]
    report = techops("report", started.run_id, "--format", "md", env=env, check=True).stdout
    assert "| Started with | plain ansible-playbook, outside techops" in report
    assert techops("audit", "verify", env=env).returncode == 0


def test_techops_run_of_the_same_playbook_is_recorded_exactly_once_and_alike(
    unwrapped_run, wrapped_run
):
    proc, given, env_ledger = wrapped_run
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    run_id = json.loads(proc.stdout[proc.stdout.index("{") :])["run_id"]
    recorded = entries(given)
    assert [(e.kind, e.run_id) for e in recorded] == [
        ("run.started", run_id),
        ("run.finished", run_id),
    ]
    assert recorded[0].body["unwrapped"] is False
    # The callback ran, found the run open in the wrapper's ledger (not the one
    # TECHOPS_LEDGER names) and stayed quiet.
    kept = REPO / ".techops" / "runs" / run_id / "artifacts" / run_id / "stdout"
    assert f"techops_ledger: recorded by techops as run {run_id}" in kept.read_text()
    assert entries(env_ledger) == []
    # Both ways record the same outcome, task by task.
    _, plain = unwrapped_run
    unwrapped_end, wrapped_end = entries(plain)[1].body, recorded[1].body
    for key in ("status", "rc", "hosts", "failed_tasks", "changed_tasks", "evidence"):
        assert unwrapped_end[key] == wrapped_end[key], key

    def shape(ledger: Path, run: str) -> set[tuple]:
        kinds = ("playbook_on_task_start", "runner_on_ok", "runner_on_failed", "runner_on_skipped")
        return {
            (e["event"], e["host"], e.get("task"), e.get("role"), e.get("changed"), e.get("msg"))
            for e in stored_events(ledger, run)
            if e["event"] in kinds
        }

    unwrapped_shape = shape(plain, entries(plain)[0].run_id)
    assert len(unwrapped_shape) > 20  # every task on every host, not an empty match
    assert unwrapped_shape == shape(given, run_id)


def test_a_protected_run_stops_before_its_first_task(site, tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    proof = tmp_path / "a-task-ran"
    proc = playbook(
        "-i",
        str(site.prod),
        str(site.touch),
        "-e",
        f"proof={proof}",
        env=site.env(ledger),
        cwd=tmp_path,
    )
    assert not proof.exists(), "a task ran on the protected inventory"
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "TASK [" not in proc.stdout and "PLAY RECAP" not in proc.stdout
    said = [line for line in proc.stderr.splitlines() if line.startswith("techops:")]
    assert len(said) == 1, proc.stderr
    assert said[0].startswith(
        f"techops: refused: inventory {site.prod} is in protected environment 'prodlike': "
        "a run that can change it must go through `techops run`"
    )
    (refusal,) = entries(ledger)
    assert refusal.kind == "change.decision"
    assert refusal.body["action"] == "refuse" and refusal.body["unwrapped"] is True
    assert refusal.body["environment"] == "prodlike"
    assert refusal.body["inventory"] == str(site.prod)
    assert f"({refusal.run_id})" in said[0]


def test_an_exception_in_a_callback_would_not_have_stopped_it(site, tmp_path):
    """The control experiment: the same playbook with a callback that raises where the
    ledger callback stops. Ansible turns the exception into a warning and runs the task,
    which is why the callback ends the process itself."""
    plugins = tmp_path / "callbacks"
    plugins.mkdir()
    (plugins / "raising.py").write_text(RAISING)
    proof = tmp_path / "a-task-ran"
    env = site.env(
        tmp_path / "ledger.sqlite3",
        ANSIBLE_CALLBACK_PLUGINS=str(plugins),
        ANSIBLE_CALLBACKS_ENABLED="raising",
    )
    proc = playbook(
        "-i",
        str(site.lab),
        "-l",
        "tl-ok",
        str(site.touch),
        "-e",
        f"proof={proof}",
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused by raising" in proc.stderr
    assert proof.exists()


def test_check_mode_with_a_playbook_from_elsewhere_is_stopped_too(site, tmp_path):
    """Check mode changes nothing only as far as the content says so (a task with
    check_mode: false runs for real): a playbook that is not the repository's committed
    content does not look at a protected inventory either. (A committed playbook's check
    run is admitted and recorded: tests/unit/scheduling/test_unwrapped.py.)"""
    ledger = tmp_path / "ledger.sqlite3"
    proof = tmp_path / "a-task-ran"
    proc = playbook(
        "-i",
        str(site.prod),
        str(site.touch),
        "--check",
        "-e",
        f"proof={proof}",
        env=site.env(ledger),
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert not proof.exists()
    assert "runs committed playbooks only" in proc.stderr
    [decision] = entries(ledger)
    assert (decision.kind, decision.body["action"]) == ("change.decision", "refuse")


def test_a_run_handed_to_an_execution_node_is_left_to_its_controller(site, tmp_path):
    """On a node, ansible-runner's worker runs the playbook with the markers `techops run
    --node` sends: the controller records the run; the node's callback neither records
    nor refuses it, whatever the inventory."""
    ledger = tmp_path / "ledger.sqlite3"
    proof = tmp_path / "a-task-ran"
    env = site.env(
        ledger,
        **{
            RUN_MARKER: "20261203T000000Z-abcdef",
            NODE_MARKER: "dc2",
            "AWX_ISOLATED_DATA_DIR": str(tmp_path / "artifacts"),
        },
    )
    proc = playbook(
        "-i", str(site.prod), str(site.touch), "-e", f"proof={proof}", env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proof.exists()
    assert entries(ledger) == []
    assert "techops" not in proc.stderr


def test_secrets_the_run_knows_are_redacted_from_its_record(site, tmp_path):
    """Values the callback learns from the inventory Ansible loaded, vaulted ones
    decrypted with the run's own vault password, are scrubbed wherever a task prints them."""
    ledger = tmp_path / "ledger.sqlite3"
    password = tmp_path / "vault-pass"
    password.write_text("CANARY-vault-password-0b3a\n")
    encrypted = subprocess.run(
        [
            str(BIN / "ansible-vault"),
            "encrypt_string",
            "--vault-password-file",
            str(password),
            "CANARY-vaulted-value-77e1",
            "--name",
            "vaulted_note",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=site.env(ledger),
    ).stdout
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    tl-secrets:\n"
        + LOCAL
        + "    api_token: CANARY-inventory-token-41c7\n"
        + "".join(f"    {line}\n" for line in encrypted.splitlines())
    )
    printing = tmp_path / "print.yml"
    printing.write_text(
        "- name: Print what the inventory holds\n  hosts: all\n  gather_facts: false\n"
        "  tasks:\n    - name: Show it\n      ansible.builtin.debug:\n"
        "        msg: 'token {{ api_token }} note {{ vaulted_note }}'\n"
        "    - name: Fail with it\n      ansible.builtin.fail:\n"
        "        msg: 'note {{ vaulted_note }}'\n"
    )
    proc = playbook(
        "-i",
        str(inventory),
        str(printing),
        "--vault-password-file",
        str(password),
        env=site.env(ledger),
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "CANARY-vaulted-value-77e1" in proc.stdout, proc.stderr
    recorded = entries(ledger)
    assert [e.kind for e in recorded] == ["run.started", "run.finished"]
    assert recorded[1].body["failed_tasks"][0]["msg"] == "note **redacted**"
    dump = json.dumps([e.body for e in recorded]) + json.dumps(
        stored_events(ledger, recorded[0].run_id)
    )
    assert "CANARY" not in dump


# ---------------------------------------------------------------------- the plugin's parts


def test_ansible_cfg_enables_it_beside_the_preload_callback():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    enabled = [n.strip() for n in cfg["defaults"]["callbacks_enabled"].split(",")]
    assert enabled == ["jinja_plugins_preload", "techops_ledger"]
    assert (REPO / PLUGIN).is_file()


def test_the_plugin_spells_the_markers_as_techops_sets_them():
    plugin = load_plugin(PLUGIN)
    assert (plugin.RUN_MARKER, plugin.NODE_MARKER) == (RUN_MARKER, NODE_MARKER)
    assert plugin.IMPORT_ERROR is None and plugin.unwrapped is not None


class _Playbook:
    _file_name = "/srv/site.yml"


def test_without_techops_it_warns_once_except_on_an_execution_node(monkeypatch):
    """Where techops cannot be imported (a node's ansible-runner, an execution
    environment), the callback loads all the same (no "Skipping callback plugin") and
    never stops a run; only a run that is not a node's says it is not recorded."""
    for package in ("runner", "runner.execution", "runner.scheduling"):
        monkeypatch.setitem(sys.modules, package, None)  # as if techops were not installed
    plugin = load_plugin(PLUGIN)
    assert plugin.unwrapped is None and "runner" in plugin.IMPORT_ERROR
    warnings: list[str] = []
    monkeypatch.setattr(plugin.display, "warning", warnings.append)
    for name in (RUN_MARKER, NODE_MARKER, "AWX_ISOLATED_DATA_DIR"):
        monkeypatch.setenv(name, "x")
    on_node = plugin.CallbackModule()
    on_node.v2_playbook_on_start(_Playbook())
    assert on_node.disabled and warnings == []
    monkeypatch.delenv(NODE_MARKER)
    elsewhere = plugin.CallbackModule()
    elsewhere.v2_playbook_on_start(_Playbook())
    assert elsewhere.disabled
    assert len(warnings) == 1 and "this run is not recorded" in warnings[0]


def test_an_ad_hoc_command_is_not_a_playbook_run(monkeypatch):
    plugin = load_plugin(PLUGIN)
    adhoc = plugin.CallbackModule()
    playbook = _Playbook()
    playbook._file_name = plugin.ADHOC_PLAYBOOK
    adhoc.v2_playbook_on_start(playbook)
    assert adhoc.disabled and adhoc._run is None


def test_a_node_run_needs_all_three_markers():
    plugin = load_plugin(PLUGIN)
    every = {RUN_MARKER: "r", NODE_MARKER: "dc2", "AWX_ISOLATED_DATA_DIR": "/tmp/a"}
    assert plugin.is_node_run(every)
    for name in every:
        assert not plugin.is_node_run({k: v for k, v in every.items() if k != name})


def test_events_carry_what_ansible_runner_events_carry():
    plugin = load_plugin(PLUGIN)
    hidden = plugin.censored({"changed": True, "_ansible_no_log": True, "msg": "CANARY"})
    assert hidden == {"censored": plugin.CENSORED}
    items = plugin.censored({"results": [{"_ansible_no_log": True, "x": 1}, {"x": 2}]})
    assert items["results"] == [{"censored": plugin.CENSORED}, {"x": 2}]
    when = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    data = plugin.as_event_data(
        {"start": when, "day": date(2026, 12, 3), "raw": b"ok", "seen": {"b", "a"}, "odd": object()}
    )
    assert data == {
        "start": "2026-12-03T12:00:00+00:00",
        "day": "2026-12-03",
        "raw": "ok",
        "seen": ["a", "b"],
        "odd": "<object>",
    }


def test_a_task_is_described_as_ansible_runner_describes_it():
    plugin = load_plugin(PLUGIN)

    class Role:
        _role_name = "base"

    class Task:
        name = ""
        action = "ansible.builtin.command"
        resolved_action = "ansible.builtin.command"
        _role = Role()

        def get_path(self) -> str:
            return "/srv/roles/base/tasks/main.yml:3"

    assert plugin.task_context(Task()) == {
        "task": "ansible.builtin.command",
        "task_action": "ansible.builtin.command",
        "resolved_action": "ansible.builtin.command",
        "task_args": "",
        "task_path": "/srv/roles/base/tasks/main.yml:3",
        "role": "base",
    }
