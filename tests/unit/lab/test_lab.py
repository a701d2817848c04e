from __future__ import annotations

import pytest

from runner.core.errors import UserError
from runner.lab import hosts, images


@pytest.mark.parametrize("name", ["techops", "ci", "ci-lab-2"])
def test_good_lab_names(name):
    assert hosts.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Bad", "bad name", "9lab", "-x", "a" * 25, "lab;rm"])
def test_bad_lab_names_say_what_is_allowed(name):
    with pytest.raises(UserError) as info:
        hosts.validate_name(name)
    assert "lower-case letters" in str(info.value)


def test_unknown_release_lists_the_known_ones():
    with pytest.raises(UserError) as info:
        hosts.Lab(release="11")
    assert "12, 13" in str(info.value)


def test_recipe_hash_changes_with_the_recipe(monkeypatch):
    before = images.recipe_hash("12")
    assert before != images.recipe_hash("13")
    monkeypatch.setattr(images, "IMAGE_PACKAGES", (*images.IMAGE_PACKAGES, "vim-tiny"))
    assert images.recipe_hash("12") != before


def test_mirrors_from_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("TECHOPS_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert images.host_mirrors(tmp_path) == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )


def test_mirrors_from_one_line_sources_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("TECHOPS_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://m.example/debian/ bookworm main\n"
    )
    assert images.host_mirrors(tmp_path) == ("http://m.example/debian", None)
    monkeypatch.setenv("TECHOPS_DEBIAN_MIRROR", "http://other.example/debian")
    assert images.host_mirrors(tmp_path)[0] == "http://other.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TECHOPS_DEBIAN_MIRROR", raising=False)
    with pytest.raises(UserError) as info:
        images.host_mirrors(tmp_path)
    assert "TECHOPS_DEBIAN_MIRROR" in str(info.value)


def test_inventory_has_the_groups_the_roles_use(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    the_lab = hosts.Lab(name="unit")
    the_lab.key.with_suffix(".pub").write_text("ssh-ed25519 AAAA unit\n")
    addresses = {h.name: f"10.0.0.{i}" for i, h in enumerate(hosts.LAB_HOSTS, 2)}
    inventory = hosts.render_inventory(
        the_lab, addresses, {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}
    )
    groups = inventory["all"]["children"]["lab"]["children"]
    assert set(groups) == {
        "bastion",
        "vpn_gateway",
        "app",
        "backup_clients",
        "backup_server",
        "dr_standby",
        "monitoring",
    }
    assert groups["app"]["hosts"] == {
        "app1": {"ansible_host": "10.0.0.3"},
        "app2": {"ansible_host": "10.0.0.4"},
    }
    common = inventory["all"]["vars"]
    assert common["ansible_user"] == "ansible"
    assert "StrictHostKeyChecking=yes" in common["ansible_ssh_common_args"]
    assert common["techops_lab_automation_key"] == "ssh-ed25519 AAAA unit"


def test_only_the_default_lab_writes_the_default_inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    assert hosts.Lab().inventory.name == "hosts.yml"
    assert hosts.Lab(name="ci").inventory.name == "hosts-ci.yml"


def test_inventory_says_where_the_controller_is(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    the_lab = hosts.Lab(name="unit")
    the_lab.key.with_suffix(".pub").write_text("ssh-ed25519 AAAA unit\n")
    addresses = {h.name: "10.0.0.9" for h in hosts.LAB_HOSTS}
    common = hosts.render_inventory(
        the_lab, addresses, {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}
    )["all"]["vars"]
    assert common["techops_controller_addresses"] == ["10.0.0.1"]
    assert common["techops_lab_subnet"] == "10.0.0.0/24"


def test_a_new_container_forgets_the_facts_cached_for_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    from runner.execution.request import fact_cache_dir

    runner_cache = fact_cache_dir("inventories/lab/hosts.yml")
    runner_cache.mkdir(parents=True)
    plain_cache = runner_cache.parent
    for directory in (plain_cache, runner_cache):
        # ansible-core 2.19 writes s1_<host>; earlier versions <host>.
        for name in ("app1", "s1_app1", "app2", "s1_app2", "s1_app10"):
            (directory / name).write_text("{}")
    hosts.forget_facts("app1")
    for directory in (plain_cache, runner_cache):
        assert not (directory / "app1").exists() and not (directory / "s1_app1").exists()
        assert (directory / "app2").exists() and (directory / "s1_app2").exists()
        assert (directory / "s1_app10").exists()
    assert fact_cache_dir("a.yml") != fact_cache_dir("b.yml")
