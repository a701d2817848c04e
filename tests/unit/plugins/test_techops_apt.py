"""Parsing in plugins/module_utils/techops_apt.py, on output captured from Debian 12 hosts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import load_plugin

apt = load_plugin("plugins/module_utils/techops_apt.py")

# `LANG=C apt-get -s --ignore-hold dist-upgrade` on a Debian 12 host (trimmed), and on a
# lab host with the scenario's flat repositories (release without a version).
SIMULATION = """\
NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following NEW packages will be installed:
  linux-image-6.1.0-41-amd64
The following packages will be upgraded:
  base-files bash libgcrypt20 liblzma-dev linux-image-amd64
Inst base-files [12.4+deb12u11] (12.4+deb12u15 Debian:12.15/oldstable [amd64])
Conf base-files (12.4+deb12u15 Debian:12.15/oldstable [amd64])
Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/oldstable [amd64])
Inst libgcrypt20 [1.10.1-3] (1.10.1-3+deb12u1 Debian:12.15/oldstable, \
Debian-Security:12/oldstable-security [amd64])
Inst liblzma-dev [5.4.1-1] (5.4.1-1+deb12u2 Debian-Security:12/oldstable-security [amd64]) []
Inst linux-image-6.1.0-41-amd64 (6.1.0-41 Debian-Security:12/oldstable-security [amd64])
Inst linux-image-amd64 [6.1.0-28] (6.1.0-41 Debian-Security:12/oldstable-security [amd64])
Inst techops-lab-secfix [1.0] (1.1 TechOps-Lab:lab-security [all])
Inst techops-lab-app [1.0] (1.1 TechOps-Lab:lab [all])
Conf techops-lab-app (1.1 TechOps-Lab:lab [all])
"""


@pytest.fixture
def simulated():
    return apt.parse_simulation(SIMULATION)


def test_simulation_lists_every_inst_line(simulated):
    assert [p["name"] for p in simulated] == [
        "base-files",
        "bash",
        "libgcrypt20",
        "liblzma-dev",
        "linux-image-6.1.0-41-amd64",
        "linux-image-amd64",
        "techops-lab-secfix",
        "techops-lab-app",
    ]
    bash = simulated[1]
    assert bash["installed"] == "5.2.15-2+b8"
    assert bash["candidate"] == "5.2.15-2+b13"
    assert bash["arch"] == "amd64"
    assert bash["releases"] == [{"origin": "Debian", "version": "12.15", "archive": "oldstable"}]


def test_simulation_reads_several_releases_and_flat_repositories(simulated):
    assert simulated[2]["releases"] == [
        {"origin": "Debian", "version": "12.15", "archive": "oldstable"},
        {"origin": "Debian-Security", "version": "12", "archive": "oldstable-security"},
    ]
    assert simulated[6]["releases"] == [
        {"origin": "TechOps-Lab", "version": "", "archive": "lab-security"}
    ]
    # A new package (a new kernel pulled in by its metapackage) has no installed version.
    assert simulated[4]["installed"] is None


def test_nothing_pending():
    assert apt.parse_simulation("Reading package lists...\n0 upgraded, 0 newly installed\n") == []


def test_pending_updates_mark_security_held_and_excluded(simulated):
    updates = {
        u["name"]: u
        for u in apt.pending_updates(
            simulated, held=["linux-image-amd64"], exclude=["techops-lab-a*"]
        )
    }
    # New packages are not updates.
    assert "linux-image-6.1.0-41-amd64" not in updates
    assert [n for n, u in updates.items() if u["security"]] == [
        "libgcrypt20",
        "liblzma-dev",
        "linux-image-amd64",
        "techops-lab-secfix",
    ]
    assert [n for n, u in updates.items() if u["held"]] == ["linux-image-amd64"]
    assert [n for n, u in updates.items() if u["excluded"]] == ["techops-lab-app"]
    assert updates["liblzma-dev"]["origin"] == "Debian-Security"
    assert updates["liblzma-dev"]["archive"] == "oldstable-security"
    # The first release names the origin (the mirror) even when a security release also has it.
    assert updates["libgcrypt20"]["origin"] == "Debian"


def test_security_patterns_are_configurable(simulated):
    updates = apt.pending_updates(simulated, held=[], security_patterns=["TechOps-Lab"])
    assert [u["name"] for u in updates if u["security"]] == [
        "techops-lab-secfix",
        "techops-lab-app",
    ]


def test_dpkg_query_keeps_installed_and_held_packages_only():
    text = (
        "ii \tbash\t5.2.15-2+b8\n"
        "hi \tlinux-image-amd64\t6.1.0-28\n"
        "rc \told-package\t1.0\n"
        "un \tnever-installed\t\n"
        "ii \tlibc6\t2.36-9\n"
        "ii \tlibc6\t2.36-9+other-arch\n"
        "garbage line\n"
    )
    assert apt.parse_dpkg_query(text) == {
        "bash": "5.2.15-2+b8",
        "linux-image-amd64": "6.1.0-28",
        "libc6": "2.36-9",
    }


def test_lines_once_each_in_order():
    assert apt.parse_lines("libc6\nlinux-image-6.1.0-41-amd64\n\nlibc6\n") == [
        "libc6",
        "linux-image-6.1.0-41-amd64",
    ]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0", 0),
        ("1.0", "1.1", -1),
        ("1.10", "1.9", 1),
        ("1.0~rc1", "1.0", -1),
        ("1:0.9", "2.0", 1),
        ("2.36-9", "2.36-9+deb12u1", -1),
        ("6.1.0-28-amd64", "6.1.0-41-amd64", -1),
        ("6.12.9-amd64", "6.1.0-41-amd64", 1),
        ("1.0a", "1.0", 1),
        ("1.0", "1.0-0", 0),
    ],
)
def test_compare_versions_orders_as_dpkg(a, b, expected):
    assert apt.compare_versions(a, b) == expected
    assert apt.compare_versions(b, a) == -expected


def test_newest_kernel_and_installed_kernels(tmp_path):
    for name in ("vmlinuz-6.1.0-28-amd64", "vmlinuz-6.1.0-41-amd64", "config-6.1.0-41-amd64"):
        (tmp_path / name).write_text("")
    kernels = apt.installed_kernels(str(tmp_path))
    assert kernels == ["6.1.0-28-amd64", "6.1.0-41-amd64"]
    assert apt.newest_kernel(kernels) == "6.1.0-41-amd64"
    assert apt.newest_kernel([]) is None
    assert apt.installed_kernels(str(tmp_path / "missing")) == []


HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_busy_locks_sees_a_lock_another_process_holds(tmp_path):
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    assert apt.busy_locks([str(lock), str(tmp_path / "absent")]) == []
    # fcntl locks belong to a process, as apt's do: another process holds this one.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert apt.busy_locks([str(lock)]) == [str(lock)]
        busy, waited = apt.wait_for_locks(0.2, [str(lock)], interval=0.05)
        assert busy == [str(lock)]
        assert waited >= 0.2
    finally:
        holder.communicate("", timeout=10)
    assert apt.busy_locks([str(lock)]) == []
