# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Reading apt and dpkg state on Debian hosts, shared by apt_pending_updates,
reboot_required and dpkg_installed.

The functions that parse command output are pure (text in, data out) so that they are
unit-tested on captured output (tests/unit/test_patch_modules.py). apt's own output is
parsed rather than python3-apt's API: the modules then need nothing on the host beyond apt
itself, work in check mode on a host that never had python3-apt, and behave the same on
Debian 12 and 13.
"""

from __future__ import absolute_import, annotations, division, print_function

import errno
import fcntl
import fnmatch
import os
import re
import time
from collections.abc import Iterable
from typing import Any

# An `Inst` line of `apt-get -s` (simulate):
#   Inst NAME [INSTALLED] (CANDIDATE RELEASE, RELEASE [ARCH])
# INSTALLED is absent for a package that would be newly installed (a new dependency).
# Each RELEASE is ORIGIN:VERSION/ARCHIVE, or ORIGIN:ARCHIVE when the Release file names no
# version (flat repositories), e.g. "Debian-Security:12/stable-security".
_INST = re.compile(
    r"^Inst (?P<name>\S+)(?: \[(?P<installed>[^\]]+)\])? "
    r"\((?P<candidate>\S+)(?: (?P<releases>.*?))? \[(?P<arch>[^\]]+)\]\)"
)

# The locks apt and dpkg take (fcntl locks): while another process holds one, neither an
# update of the lists nor an install can run.
APT_LOCKS = (
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/lib/apt/lists/lock",
    "/var/cache/apt/archives/lock",
)

DEFAULT_SECURITY_PATTERNS = ("Debian-Security", "*-security")

# apt's and dpkg's messages in English, whatever the host's locale: the modules read them.
C_ENV = {"LANG": "C", "LC_ALL": "C", "LANGUAGE": ""}


def parse_release(text: str) -> dict:
    """One release of an Inst line: {origin, version, archive}."""
    origin, _sep, rest = text.strip().partition(":")
    version, slash, archive = rest.partition("/")
    if not slash:
        version, archive = "", rest
    return {"origin": origin, "version": version, "archive": archive}


def parse_simulation(text: str) -> list:
    """The packages an `apt-get -s (dist-)upgrade` would install, in apt's order."""
    packages = []
    for line in text.splitlines():
        match = _INST.match(line.strip())
        if not match:
            continue
        releases = match.group("releases") or ""
        packages.append(
            {
                "name": match.group("name"),
                "installed": match.group("installed"),
                "candidate": match.group("candidate"),
                "arch": match.group("arch"),
                "releases": [parse_release(r) for r in releases.split(", ") if r.strip()],
            }
        )
    return packages


def matches_any(value: str, patterns: Iterable[str] | None) -> bool:
    """Shell-style match of a value against any of the patterns (case-sensitive)."""
    return any(fnmatch.fnmatchcase(value, p) for p in patterns or ())


def is_security(releases: list, patterns: Iterable[str] = DEFAULT_SECURITY_PATTERNS) -> bool:
    """A package is a security update when one of its releases' origin or archive matches."""
    return any(
        matches_any(r.get("origin", ""), patterns) or matches_any(r.get("archive", ""), patterns)
        for r in releases
    )


def parse_lines(text: str) -> list:
    """Non-empty stripped lines, duplicates dropped, first occurrence kept."""
    seen = []
    for line in text.splitlines():
        line = line.strip()
        if line and line not in seen:
            seen.append(line)
    return seen


def parse_dpkg_query(text: str) -> dict:
    """Installed packages from dpkg-query's status, name and version, tab-separated.

    The format is `${db:Status-Abbrev}\\t${Package}\\t${Version}\\n`. Only packages dpkg
    has installed (status `ii`, or `hi` when held); for a package of several architectures
    the first line wins.
    """
    versions = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        status, name, version = (p.strip() for p in parts)
        if status[:2] in ("ii", "hi") and name not in versions:
            versions[name] = version
    return versions


# The dpkg-query format dpkg_installed reads: status, name, architecture, version.
DPKG_STATUS_FORMAT = "${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n"


def parse_package_spec(spec: str) -> dict:
    """One package as apt takes it: NAME, NAME:ARCH or NAME=VERSION (or NAME:ARCH=VERSION).

    Raises ValueError for what dpkg cannot answer exactly: empty names, version ranges
    (>=, <<) and wildcards.
    """
    text = spec.strip()
    name, eq, version = text.partition("=")
    if not name or (eq and not version) or any(c in text for c in "<>*?[] \t"):
        raise ValueError(
            f"'{spec}' is not NAME, NAME:ARCH or NAME=VERSION "
            "(version ranges and wildcards cannot be checked against dpkg exactly)"
        )
    name, colon, arch = name.partition(":")
    if colon and not arch:
        raise ValueError(f"'{spec}' names no architecture after ':'")
    return {"spec": spec, "name": name, "arch": arch or None, "version": version or None}


def parse_dpkg_status(text: str) -> list:
    """dpkg-query's lines in DPKG_STATUS_FORMAT: [{name, arch, version, installed}].

    A package counts as installed when dpkg's wanted state is install or hold and its
    status is installed (`ii`, `hi`), without an error flag.
    """
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        status, name, arch, version = parts
        installed = status[:2] in ("ii", "hi") and status[2:].strip() == ""
        rows.append(
            {
                "name": name.strip(),
                "arch": arch.strip(),
                "version": version.strip(),
                "installed": installed,
            }
        )
    return rows


def installed_and_missing(specs: list, rows: list) -> tuple:
    """Which of the wanted packages (parsed specs) dpkg has at the wanted state.

    Returns ({spec: installed version}, [specs missing]). A spec with a version counts as
    installed only at that version; one without an architecture matches any architecture.
    """
    installed, missing = {}, []
    for want in specs:
        match = next(
            (
                row
                for row in rows
                if row["installed"]
                and row["name"] == want["name"]
                and want["arch"] in (None, row["arch"])
                and want["version"] in (None, row["version"])
            ),
            None,
        )
        if match:
            installed[want["spec"]] = match["version"]
        else:
            missing.append(want["spec"])
    return installed, missing


def pending_updates(
    simulated: list,
    held: Iterable[str],
    exclude: Iterable[str] = (),
    security_patterns: Iterable[str] = DEFAULT_SECURITY_PATTERNS,
) -> list[dict[str, Any]]:
    """Annotate simulated upgrades: origin, security or not, held, excluded.

    New packages (pulled in as dependencies, nothing installed yet) are not updates and are
    left out.
    """
    updates = []
    for pkg in simulated:
        if not pkg["installed"]:
            continue
        first = pkg["releases"][0] if pkg["releases"] else {"origin": "", "archive": ""}
        updates.append(
            {
                "name": pkg["name"],
                "installed": pkg["installed"],
                "candidate": pkg["candidate"],
                "arch": pkg["arch"],
                "origin": first["origin"],
                "archive": first["archive"],
                "releases": pkg["releases"],
                "security": is_security(pkg["releases"], security_patterns),
                "held": pkg["name"] in held,
                "excluded": matches_any(pkg["name"], exclude),
            }
        )
    return updates


# --- Debian version comparison (deb-version(7)), for kernel versions ---------------------


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    epoch, _sep, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _sep, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return int(epoch or 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as dpkg --compare-versions orders a against b."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def newest_kernel(releases: Iterable[str]) -> str | None:
    """The newest of the kernel releases (vmlinuz-RELEASE in /boot), by Debian ordering."""
    newest = None
    for release in releases:
        if newest is None or compare_versions(release, newest) > 0:
            newest = release
    return newest


def installed_kernels(boot_dir: str = "/boot") -> list:
    """Kernel releases with an image in /boot (none in a container)."""
    try:
        names = os.listdir(boot_dir)
    except OSError:
        return []
    return sorted(n[len("vmlinuz-") :] for n in names if n.startswith("vmlinuz-"))


# --- Locks --------------------------------------------------------------------------------


def busy_locks(paths: Iterable[str] = APT_LOCKS) -> list:
    """The lock files another process holds now (each tried without waiting, then let go)."""
    busy = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue  # no such lock file: nobody can hold it
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                busy.append(path)
            else:
                raise
        finally:
            os.close(fd)
    return busy


def wait_for_locks(
    timeout: float, paths: Iterable[str] = APT_LOCKS, interval: float = 2.0
) -> tuple:
    """Wait up to `timeout` seconds for apt's locks to be free: (busy locks, seconds waited)."""
    start = time.monotonic()
    while True:
        busy = busy_locks(paths)
        waited = time.monotonic() - start
        if not busy or waited >= timeout:
            return busy, round(waited, 1)
        time.sleep(interval)
