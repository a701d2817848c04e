from __future__ import annotations

import importlib.util
import tomllib

from tests.helpers import REPO

spec = importlib.util.spec_from_file_location(
    "containers_conf", REPO / "scripts/containers_conf.py"
)
containers_conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(containers_conf)


def test_missing_file_gets_both_settings(tmp_path):
    path = tmp_path / "containers.conf"
    messages = containers_conf.ensure(path)
    data = tomllib.loads(path.read_text())
    assert data["engine"]["runtime"] == "runc"
    assert data["containers"]["default_ulimits"] == ["nofile=1024:1024", "nproc=1024:1024"]
    assert all("added" in m for m in messages)


def test_existing_sections_keep_their_other_settings(tmp_path):
    path = tmp_path / "containers.conf"
    path.write_text('[engine]\nevents_logger = "file"\n\n[network]\ndns_bind_port = 54\n')
    containers_conf.ensure(path)
    data = tomllib.loads(path.read_text())
    assert data["engine"] == {"events_logger": "file", "runtime": "runc"}
    assert data["network"]["dns_bind_port"] == 54


def test_second_run_changes_nothing(tmp_path):
    path = tmp_path / "containers.conf"
    containers_conf.ensure(path)
    first = path.read_text()
    messages = containers_conf.ensure(path)
    assert path.read_text() == first
    assert all("already set" in m for m in messages)


def test_a_different_value_is_reported_not_changed(tmp_path):
    path = tmp_path / "containers.conf"
    path.write_text('[engine]\nruntime = "crun"\n')
    messages = containers_conf.ensure(path)
    assert 'runtime = "crun"' in path.read_text()
    assert any("left as is" in m for m in messages)
