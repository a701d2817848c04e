"""What a remote run sends to its node: the content Ansible needs there, the collection of
our plugins with it, and nothing of the controller's state."""

from __future__ import annotations

import shutil

from runner.execution.remote import stage
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
