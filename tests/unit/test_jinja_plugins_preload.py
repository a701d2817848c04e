"""The jinja_plugins_preload callback: the controller loads the Jinja plugins that every
forked worker would otherwise load again, and ansible.cfg enables it."""

from __future__ import annotations

import configparser
import os

import pytest

from tests.helpers import REPO, load_plugin


@pytest.fixture
def loaders():
    from ansible.plugins.loader import filter_loader, init_plugin_loader, test_loader

    init_plugin_loader([str(REPO / "collections")])
    # Adding a directory (as Ansible does for each role) empties the loaders' caches.
    for loader in (filter_loader, test_loader):
        loader._clear_caches()
    return filter_loader, test_loader


def test_the_callback_loads_filters_and_tests_before_a_fork(loaders):
    filter_loader, test_loader = loaders
    callback = load_plugin("plugins/callback/jinja_plugins_preload.py").CallbackModule()
    assert not filter_loader._cached_non_collection_wrappers
    callback.v2_playbook_on_task_start(task=None, is_conditional=False)
    # ansible-core's filters and tests and the collection's filter files are loaded once,
    # in this process...
    assert "ansible.builtin.to_json" in filter_loader._cached_non_collection_wrappers
    assert "ansible.builtin.match" in test_loader._cached_non_collection_wrappers
    # ...so a forked worker finds them loaded, and loads no plugin file itself.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read)
        loaded = []
        filter_loader._load_module_source = lambda *a, **k: loaded.append(a) or None
        assert filter_loader.get("techops.ops.techops_maintenance_status") is not None
        assert filter_loader.get("techops.ops.vpn_pool_address") is not None
        assert filter_loader.get("ansible.builtin.to_json") is not None
        os.write(write, str(len(loaded)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"


def test_ansible_cfg_enables_it_from_the_repository():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    assert cfg["defaults"]["callback_plugins"] == "plugins/callback"
    assert "jinja_plugins_preload" in cfg["defaults"]["callbacks_enabled"].split(",")


def test_techops_run_names_the_callback_directory_for_ansible_runner():
    from runner.core.paths import CALLBACK_PLUGINS

    assert (REPO / CALLBACK_PLUGINS / "jinja_plugins_preload.py").is_file()
