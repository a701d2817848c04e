"""The jinja_plugins_preload callback: the controller loads the Jinja plugins that every
forked worker would otherwise load again, and ansible.cfg enables it."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys

from runner.core.paths import CALLBACK_PLUGINS
from tests.helpers import REPO

# In a fresh interpreter, as ansible-playbook's controller: optionally let the callback
# run at a task's start, fork a worker, and have the worker use filters and a test as a
# template would. It reports the Python modules the worker had to import to do so.
WORKER = """
import importlib.util, json, os, sys
from ansible.plugins.loader import filter_loader, init_plugin_loader, test_loader

init_plugin_loader([sys.argv[1]])
if sys.argv[3] == "preload":
    spec = importlib.util.spec_from_file_location("preload", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.CallbackModule().v2_playbook_on_task_start(task=None, is_conditional=False)
read, write = os.pipe()
if os.fork() == 0:
    before = set(sys.modules)
    for name in ("techops.ops.techops_maintenance_status", "techops.ops.vpn_pool_address",
                 "ansible.builtin.to_json"):
        assert filter_loader.get(name) is not None, name
    assert test_loader.get("ansible.builtin.match") is not None
    os.write(write, json.dumps(sorted(set(sys.modules) - before)).encode())
    os._exit(0)
os.close(write)
os.wait()
print(os.read(read, 1 << 20).decode())
"""


def worker_imports(mode: str) -> list[str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(REPO / "collections"),
            str(REPO / CALLBACK_PLUGINS / "jinja_plugins_preload.py"),
            mode,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_without_the_callback_each_worker_loads_the_plugin_files_itself():
    loaded = worker_imports("none")
    assert any(name.endswith("plugins.filter.maintenance") for name in loaded), loaded
    assert any(".filter." in name and "techops" not in name for name in loaded), loaded


def test_with_the_callback_a_forked_worker_loads_no_plugin_file():
    assert worker_imports("preload") == []


def test_ansible_cfg_enables_it_from_the_repository():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    assert cfg["defaults"]["callback_plugins"] == "plugins/callback"
    assert "jinja_plugins_preload" in cfg["defaults"]["callbacks_enabled"].split(",")


def test_techops_run_names_the_callback_directory_for_ansible_runner():
    assert (REPO / CALLBACK_PLUGINS / "jinja_plugins_preload.py").is_file()
