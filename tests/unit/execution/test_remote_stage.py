"""What a remote run sends to its node: the content Ansible needs there, the collection of
our plugins with it, and nothing of the controller's state."""

from __future__ import annotations

import shutil

from runner.execution.remote import Node, stage, transmit_kwargs
from runner.execution.request import NODE_MARKER, RUN_MARKER, RunRequest
from tests.helpers import REPO


def test_the_staged_project_holds_the_content_and_the_collection(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    app1:\n")
    staging, playbook, node_inventory = stage(
        "unit-stage-test", REPO / "playbooks" / "site.yml", str(inventory)
    )
    try:
        project = staging / "project"
        assert playbook == "playbooks/site.yml"
        assert (project / playbook).is_file()
        assert (project / "ansible.cfg").is_file()
        assert (project / "roles" / "base" / "tasks" / "main.yml").is_file()
        collection = project / "collections" / "ansible_collections" / "techops" / "ops"
        assert (collection / "plugins" / "modules" / "dpkg_installed.py").is_file()
        assert (collection / "meta" / "runtime.yml").is_file()
        # plugins/ stays a link into the staged collection, as in the repository.
        assert (project / "plugins").is_symlink()
        assert (project / "plugins").resolve() == (collection / "plugins").resolve()
        assert (project / "plugins" / "callback" / "jinja_plugins_preload.py").is_file()
        # Never the controller's state, the virtualenv or ansible-test's output.
        assert not (project / ".techops").exists()
        assert not (project / ".venv").exists()
        assert not (collection / "tests").exists()
        assert (staging / "inventory" / "hosts.yml").is_file()
        assert node_inventory == str(staging / "inventory" / "hosts.yml")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def test_a_staged_inventory_is_the_jobs_own_inventory_directory(tmp_path):
    """No relative inventory path goes to the worker: ansible-runner would pass it on as
    is, and ansible-playbook, in the project directory, would take it for a host name."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    app1:\n")
    request = RunRequest(playbook=REPO / "playbooks" / "site.yml", inventory=str(inventory))
    staging, playbook, node_inventory = stage(request.run_id, request.playbook, str(inventory))
    try:
        kwargs = transmit_kwargs(request, staging, playbook, node_inventory)
        assert "inventory" not in kwargs
        assert kwargs["private_data_dir"] == str(staging)
        assert kwargs["suppress_env_files"] is True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The node's ledger callback stays quiet (this controller records the run), and the
    # node never learns where the ledger is.
    request.node = Node(name="dc2", ssh="ansible@node.invalid")
    request.ledger_url = "postgresql://techops:CANARY-pw@db.invalid/techops"
    envvars = transmit_kwargs(request, staging, playbook, node_inventory)["envvars"]
    assert envvars == {
        "ANSIBLE_CALLBACK_PLUGINS": "plugins/callback",
        RUN_MARKER: request.run_id,
        NODE_MARKER: "dc2",
    }
    hosts = RunRequest(playbook=REPO / "playbooks" / "site.yml", inventory="app1,app2,")
    assert transmit_kwargs(hosts, staging, playbook, "app1,app2,")["inventory"] == "app1\napp2\n"
