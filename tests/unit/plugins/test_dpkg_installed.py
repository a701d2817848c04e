"""dpkg_installed: which packages dpkg has, so the apt module runs only when one is missing.

The parsing is tested on dpkg-query output captured from a Debian 12 host; the module itself
runs for real on this machine (a Debian controller) through ansible's ad-hoc command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, load_plugin

apt = load_plugin("plugins/module_utils/techops_apt.py")

# `dpkg-query -W -f "${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n"` for
# an installed package, a second architecture of a library, a removed package that kept its
# configuration, a held one, one whose configuration failed half-way, and one dpkg knows
# only by name.
STATUS = (
    "ii \tchrony\tamd64\t4.3-2+deb12u1\n"
    "ii \tlibc6\tamd64\t2.36-9+deb12u14\n"
    "ii \tlibc6\ti386\t2.36-9+deb12u14\n"
    "rc \tnftables\tamd64\t1.0.6-2+deb12u2\n"
    "hi \tsudo\tamd64\t1.9.13p3-1+deb12u1\n"
    "iF \tborgbackup\tamd64\t1.2.4-1\n"
    "iU \tborgmatic\tall\t1.7.7-1\n"
    "un \tqrencode\t\t\n"
)


def specs(*names):
    return [apt.parse_package_spec(n) for n in names]


def test_installed_held_and_other_architectures_count_as_installed():
    installed, missing = apt.installed_and_missing(
        specs("chrony", "sudo", "libc6", "libc6:i386"), apt.parse_dpkg_status(STATUS)
    )
    assert installed == {
        "chrony": "4.3-2+deb12u1",
        "sudo": "1.9.13p3-1+deb12u1",
        "libc6": "2.36-9+deb12u14",
        "libc6:i386": "2.36-9+deb12u14",
    }
    assert missing == []


def test_removed_half_installed_unknown_and_absent_packages_are_missing():
    installed, missing = apt.installed_and_missing(
        specs("nftables", "borgbackup", "borgmatic", "qrencode", "wireguard-go", "libc6:arm64"),
        apt.parse_dpkg_status(STATUS),
    )
    assert installed == {}
    assert missing == [
        "nftables",
        "borgbackup",
        "borgmatic",
        "qrencode",
        "wireguard-go",
        "libc6:arm64",
    ]


def test_a_pinned_version_counts_only_when_it_is_the_installed_one():
    rows = apt.parse_dpkg_status(STATUS)
    assert apt.installed_and_missing(specs("chrony=4.3-2+deb12u1"), rows) == (
        {"chrony=4.3-2+deb12u1": "4.3-2+deb12u1"},
        [],
    )
    assert apt.installed_and_missing(specs("chrony=4.3-1"), rows) == ({}, ["chrony=4.3-1"])


def test_package_specs_are_parsed_as_apt_takes_them():
    assert apt.parse_package_spec("libc6:i386=2.36-9") == {
        "spec": "libc6:i386=2.36-9",
        "name": "libc6",
        "arch": "i386",
        "version": "2.36-9",
    }
    assert apt.parse_package_spec("chrony")["arch"] is None


@pytest.mark.parametrize("spec", ["", "chrony>=4.3", "python3-*", "foo=", "foo:", "two words"])
def test_specs_dpkg_cannot_answer_exactly_are_refused(spec):
    with pytest.raises(ValueError):
        apt.parse_package_spec(spec)


def test_module_documentation_is_yaml(monkeypatch):
    import yaml

    monkeypatch.setitem(
        sys.modules, "ansible_collections.techops.ops.plugins.module_utils.techops_apt", apt
    )
    module = load_plugin("plugins/modules/dpkg_installed.py")
    for block in (module.DOCUMENTATION, module.EXAMPLES, module.RETURN):
        assert yaml.safe_load(block)
    assert yaml.safe_load(module.DOCUMENTATION)["attributes"]["check_mode"]["support"] == "full"


# --- The module on this machine, as Ansible runs it ---------------------------------------------

ANSIBLE = Path(sys.executable).parent / "ansible"


def run_module(args: str) -> dict:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
    )
    proc = subprocess.run(
        [
            str(ANSIBLE),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            "techops.ops.dpkg_installed",
            "-a",
            args,
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = json.loads(proc.stdout)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-query") is None or not ANSIBLE.exists(),
    reason="needs a Debian controller (dpkg-query) and ansible in this virtualenv",
)


@needs_dpkg
def test_the_module_reports_what_this_machine_has():
    dpkg_version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True
    ).stdout
    result = run_module(f"name=dpkg,dpkg={dpkg_version},dpkg=0.0-not-this,techops-no-such-package")
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["installed"] == {"dpkg": dpkg_version, f"dpkg={dpkg_version}": dpkg_version}
    assert result["missing"] == ["dpkg=0.0-not-this", "techops-no-such-package"]


@needs_dpkg
def test_the_module_refuses_a_version_range_with_a_clear_message():
    result = run_module("name=dpkg>=1.0")
    assert result["failed"] is True
    assert "version ranges and wildcards" in result["msg"]
