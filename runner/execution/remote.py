"""Remote execution: a run handed to an execution node with ansible-runner's streaming.

ansible-runner splits a run in three: `transmit` packs the job (project, inventory,
settings) into a stream; `worker`, on the execution node, runs it and streams back events
and artifacts; `process`, here, replays that stream through the same event handlers as a
local run. So the progress display and the ledger recorder see exactly the events they
would see locally.

Two transports carry the streams:
- SSH, to a node that has ansible-runner installed: `ssh NODE ansible-runner worker`;
- Receptor, through `receptorctl work submit WORKTYPE --node NODE --payload - --follow`
  where a Receptor mesh exists.

Nodes are data, in nodes.yml at the repository root:

    nodes:
      - name: dc2
        ssh: ansible@exec1.dc2.example.com
        ssh_options: [-i, /etc/techops/exec_key]
        ansible_runner: /opt/techops-node/bin/ansible-runner
      - name: mesh-eu
        receptor: {socket: /var/run/receptor/receptor.sock, node: exec-eu-1,
                   worktype: ansible-runner}
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

from runner.core.errors import UserError
from runner.core.inventory import inventory_files
from runner.core.paths import CALLBACK_PLUGINS, repo_root, state_dir
from runner.execution.request import NODE_MARKER, RUN_MARKER

# What a job needs of the repository on the node; never the virtualenv, git or state.
PROJECT_PARTS = (
    "ansible.cfg",
    "playbooks",
    "roles",
    "plugins",  # a link into the collection below, sent as a link
    "collections/requirements.yml",
    "collections/ansible_collections/techops/ops/galaxy.yml",
    "collections/ansible_collections/techops/ops/meta",
    "collections/ansible_collections/techops/ops/plugins",
    "schedules.yml",
    "tests/fixtures/playbooks",
)


@dataclass(frozen=True)
class Node:
    name: str
    ssh: str | None = None
    ssh_options: tuple[str, ...] = ()
    ansible_runner: str = "ansible-runner"
    receptor: dict[str, str] = field(default_factory=dict)

    def worker_argv(self) -> list[str]:
        """The command that carries the job to the node and the results back. The worker
        unpacks the job into a temporary directory of its own and removes it after."""
        if self.ssh:
            remote = f"{shlex.quote(self.ansible_runner)} worker"
            if "/" in self.ansible_runner:
                # ansible-runner finds ansible-playbook on PATH: put the tools installed
                # beside it (its virtualenv) first, as a login shell would not.
                bindir = shlex.quote(self.ansible_runner.rsplit("/", 1)[0])
                remote = f'PATH={bindir}:"$PATH" {remote}'
            return ["ssh", "-o", "BatchMode=yes", *self.ssh_options, self.ssh, remote]
        receptorctl = shutil.which("receptorctl")
        if receptorctl is None:
            raise UserError(
                f"node {self.name} is reached through Receptor but receptorctl is "
                "not installed (pip install receptorctl)"
            )
        return [
            receptorctl,
            "--socket",
            self.receptor["socket"],
            "work",
            "submit",
            self.receptor.get("worktype", "ansible-runner"),
            "--node",
            self.receptor["node"],
            "--payload",
            "-",
            "--follow",
        ]


def load_nodes(path: Path | None = None) -> dict[str, Node]:
    path = path or Path(os.environ.get("TECHOPS_NODES") or repo_root() / "nodes.yml")
    if not path.is_file():
        raise UserError(f"{path} not found: execution nodes are listed in nodes.yml")
    data = yaml.safe_load(path.read_text()) or {}
    nodes: dict[str, Node] = {}
    for index, spec in enumerate(data.get("nodes") or []):
        where = f"{path}: nodes[{index}]"
        if not isinstance(spec, dict) or not spec.get("name"):
            raise UserError(f"{where}: each node needs a name")
        if bool(spec.get("ssh")) == bool(spec.get("receptor")):
            raise UserError(f"{where} ({spec['name']}): give either ssh or receptor")
        receptor = spec.get("receptor") or {}
        if receptor and not (receptor.get("socket") and receptor.get("node")):
            raise UserError(f"{where} ({spec['name']}): receptor needs socket and node")
        nodes[spec["name"]] = Node(
            name=spec["name"],
            ssh=spec.get("ssh"),
            ssh_options=tuple(str(o) for o in spec.get("ssh_options") or ()),
            ansible_runner=spec.get("ansible_runner", "ansible-runner"),
            receptor=receptor,
        )
    return nodes


def stage(run_id: str, playbook: Path, inventory: str) -> tuple[Path, str, str]:
    """A private data dir to transmit: project/ (the content) and inventory/.

    Returns the directory and the playbook and inventory paths as the node will see them.
    """
    root = repo_root()
    staging = state_dir() / "transmit" / run_id
    project = staging / "project"
    project.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        source = root / part
        target = project / part
        if source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(source))
        elif source.is_dir():
            shutil.copytree(
                source,
                target,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    try:
        relative_playbook = str(playbook.resolve().relative_to(root))
    except ValueError:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(
            f"playbook {playbook} is outside the repository: a remote run "
            "can only send the repository's content"
        ) from None
    base, files = inventory_files(inventory)
    if files:
        target = staging / "inventory"
        for file in files:
            (target / file.relative_to(base)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target / file.relative_to(base))
        entry = Path(inventory)
        # ansible-runner resolves a relative inventory against the private data dir.
        node_inventory = str(target if entry.is_dir() else target / entry.name)
    else:
        node_inventory = inventory  # an explicit host list
    return staging, relative_playbook, node_inventory


def transmit_kwargs(request: Any, staging: Path, playbook: str, inventory: str) -> dict:
    """ansible-runner's arguments for a remote run: paths relative to the job, no local
    environment (the node has its own tools, facts and PATH). suppress_env_files stays:
    vault passwords travel in these arguments, and the node's ansible-runner must keep
    them in memory, not write them to env/passwords in the job's directory."""
    kwargs = request.runner_kwargs()
    for local_only in (
        "project_dir",
        "envvars",
        "fact_cache",
        "fact_cache_type",
    ):
        kwargs.pop(local_only, None)
    if isinstance(kwargs["inventory"], list):
        # transmit takes one source: a host list travels as inventory text, one host a line.
        hosts = [h.strip() for h in kwargs["inventory"][0].split(",") if h.strip()]
        kwargs["inventory"] = "\n".join(hosts) + "\n"
    else:
        # The staged inventory/ directory holds exactly the inventory's files: without an
        # inventory argument, the worker uses it as an absolute path in its own job
        # directory (a relative path would be read against ansible-playbook's working
        # directory, the project, and taken for a host name).
        del kwargs["inventory"]
    kwargs.update(private_data_dir=str(staging), playbook=playbook)
    # The node's ansible-runner runs in the staged project, and its own callback directory
    # hides ansible.cfg's callback_plugins as it does here: name ours relative to the project.
    # The markers keep the ledger callback there quiet: this controller records the run
    # from the returned events, and the node can neither read nor should reach its ledger
    # (whose URL is never sent).
    kwargs["envvars"] = {
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACK_PLUGINS,
        RUN_MARKER: request.run_id,
        NODE_MARKER: getattr(request.node, "name", None) or "node",
    }
    return kwargs


def execute_remote(
    request: Any, node: Node, on_event: Callable[[dict], bool], cancel: Callable[[], bool]
) -> Any:
    """Run `request` on `node`; events reach `on_event` as in a local run."""
    # Known before anything is staged: a node that cannot be reached leaves no staged copy
    # (of the inventory and the extra vars) behind.
    argv = node.worker_argv()
    staging, playbook, inventory = stage(request.run_id, request.playbook, request.inventory)
    # Sent inside the job, as a file the worker passes by path: never on the node's
    # command line. The worker's directory, and this staging copy, are removed after.
    request.write_extravars(staging)
    kwargs = transmit_kwargs(request, staging, playbook, inventory)
    try:
        worker = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot start {argv[0]} to reach node {node.name}") from None
    errors: list[bytes] = []

    def send() -> None:
        try:
            ansible_runner.run(streamer="transmit", _output=worker.stdin, **kwargs)
        except OSError:
            if not cancel():  # a stopped transport closes the pipe: expected then
                raise
        finally:
            with contextlib.suppress(OSError):
                assert worker.stdin is not None
                worker.stdin.close()

    def drain() -> None:
        assert worker.stderr is not None
        errors.append(worker.stderr.read())

    sender = threading.Thread(target=send, daemon=True)
    reader = threading.Thread(target=drain, daemon=True)
    # ansible-runner's process streamer reads until the stream ends and does not ask the
    # cancel callback: on Ctrl-C, SIGTERM or the time limit, stop the transport, which
    # ends the stream (and, over SSH, the worker's session on the node).
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.5):
            if cancel():
                _stop(worker)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    sender.start()
    reader.start()
    watcher.start()
    local = state_dir() / "runs" / request.run_id
    local.mkdir(parents=True, exist_ok=True)
    result: Any = None
    try:
        result = ansible_runner.run(
            streamer="process",
            _input=worker.stdout,
            private_data_dir=str(local),
            ident=request.run_id,
            event_handler=on_event,
            cancel_callback=cancel,
            quiet=True,
        )
    except Exception:
        if not cancel():
            raise
    finally:
        finished.set()
        sender.join(timeout=30)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _stop(worker)
        reader.join(timeout=5)
        shutil.rmtree(staging, ignore_errors=True)
    if cancel():
        return Canceled(result)
    if worker.returncode != 0 and result.status not in ("successful", "failed"):
        detail = b"".join(errors).decode(errors="replace").strip().splitlines()
        raise UserError(
            f"node {node.name}: the worker failed ({argv[0]} exit "
            f"{worker.returncode}): {detail[-1] if detail else 'no message'}"
        )
    return result


class Canceled:
    """The outcome of a remote run stopped here: whatever the stream delivered before."""

    status = "canceled"
    rc = None

    def __init__(self, partial: Any) -> None:
        self.stats = getattr(partial, "stats", None)
        self.config = getattr(partial, "config", None)
        # Where the stream's raw events were written: the run's end scrubs them there.
        self.artifact_dir = getattr(partial, "artifact_dir", None)


def _stop(worker: subprocess.Popen) -> None:
    """End the transport process: politely, then for sure."""
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=5)
