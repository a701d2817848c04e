from __future__ import annotations

from runner.core.inventory import inventory_files


def test_a_file_inventory_brings_its_group_and_host_vars(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text("all: {}\n")
    (tmp_path / "group_vars" / "all" / "vars.yml").write_text("a: 1\n")
    (tmp_path / "host_vars" / "h1.yml").write_text("b: 2\n")
    (tmp_path / "other.yml").write_text("not part of it\n")
    base, files = inventory_files(str(tmp_path / "hosts.yml"))
    assert base == tmp_path
    assert [str(f.relative_to(base)) for f in files] == [
        "hosts.yml",
        "group_vars/all/vars.yml",
        "host_vars/h1.yml",
    ]


def test_a_directory_inventory_is_all_its_files_and_a_host_list_none(tmp_path):
    (tmp_path / "inv" / "group_vars").mkdir(parents=True)
    (tmp_path / "inv" / "hosts").write_text("h1\n")
    (tmp_path / "inv" / "group_vars" / "all.yml").write_text("a: 1\n")
    base, files = inventory_files(str(tmp_path / "inv"))
    assert [str(f.relative_to(base)) for f in files] == ["group_vars/all.yml", "hosts"]
    assert inventory_files("web1,web2")[1] == []
