"""Each target after the patch run, seen on the host and from outside it."""

from __future__ import annotations

import urllib.request

from conftest import CANARY, RESULTS

from tests.helpers import container_address


def installed(host, package: str) -> str | None:
    pkg = host.package(package)
    return pkg.version if pkg.is_installed else None


def test_updates_are_installed(host, name):
    assert installed(host, "techops-lab-app") == "1.1"
    if name == CANARY:
        assert installed(host, "techops-lab-secfix") == "1.1"
    else:
        assert installed(host, "techops-lab-secfix") is None


def test_excluded_package_is_untouched_and_not_left_held(host):
    assert installed(host, "techops-lab-pinned") == "1.0"
    assert host.check_output("apt-mark showhold") == ""
    pending = host.check_output("apt-get -s dist-upgrade")
    assert "Inst techops-lab-pinned [1.0] (1.1 " in pending


def test_only_the_host_that_needed_it_rebooted(host, name):
    before = (RESULTS / f"pid1-{name}.txt").read_text().strip()
    now = host.check_output("stat -c %Z /proc/1")
    if name == CANARY:
        assert now != before, "PID 1 was not restarted: the canary did not reboot"
    else:
        assert now == before, "PID 1 was restarted on a host that needed no reboot"
    assert not host.file("/run/reboot-required").exists


def test_service_answers_from_outside_with_the_new_version(name):
    url = f"http://{container_address(name)}:8081/"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read().decode().strip() == "1.1"
