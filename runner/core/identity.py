"""Who runs techops, as the kernel knows it.

LOGNAME, USER, LNAME, USERNAME and SUDO_USER are whatever the caller's environment holds:
`LOGNAME=mallory techops run …` run as root must not be recorded as mallory. So the user
is the real uid, named through the passwd database. Beside it:

- the login uid (`/proc/self/loginuid`), which PAM sets at login and the kernel keeps
  across `su` and `sudo`: the person behind a shared or root account;
- `SUDO_UID`, which sudo sets: still an environment variable, so it is recorded as a
  number resolved to its passwd name, next to the kernel's answers and never instead of
  them.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

LOGIN_UID_FILE = Path("/proc/self/loginuid")
# (uid_t)-1: the process descends from no login session (a daemon, a container, boot).
NO_LOGIN_UID = 4294967295


def user_name(uid: int) -> str:
    """The passwd name of a uid, or the uid as text when it has no entry (a container's
    arbitrary uid, a deleted account)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _uid(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def login_uid() -> int | None:
    """The uid of the login session this process descends from, if the kernel knows one."""
    try:
        found = _uid(LOGIN_UID_FILE.read_text())
    except OSError:  # no /proc, or a kernel without audit support
        return None
    return None if found == NO_LOGIN_UID else found


def real_user() -> dict[str, Any]:
    """The user running this process, as recorded in the ledger and in lock files.

    `kind`, `name` and `sudo_user` are the keys reports read; `uid`, `login_uid`,
    `login_user` and `sudo_uid` say where each name comes from."""
    uid = os.getuid()
    person: dict[str, Any] = {"kind": "user", "name": user_name(uid), "uid": uid}
    login = login_uid()
    if login is not None:
        person["login_uid"] = login
        person["login_user"] = user_name(login)
    # sudo sets SUDO_UID in the root process it starts. In a process without root, which
    # its user starts with any environment they like, it would name whoever they chose.
    sudo = _uid(os.environ.get("SUDO_UID", ""))
    if sudo is not None and os.geteuid() == 0:
        person["sudo_uid"] = sudo
        person["sudo_user"] = user_name(sudo)
    return person
