"""Who runs techops comes from the kernel, never from what the environment says."""

from __future__ import annotations

import os
import pwd

import pytest

from runner.core import identity
from runner.core.identity import real_user
from runner.ledger.recorder import who

ALL_NAMES = ("LOGNAME", "USER", "LNAME", "USERNAME", "SUDO_USER")


def unused_uid() -> int:
    return next(uid for uid in range(54321, 60000) if not _has_entry(uid))


def _has_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@pytest.fixture
def mallory(monkeypatch, tmp_path):
    """Every variable getpass and sudo's users read says mallory; no login session."""
    for name in ALL_NAMES:
        monkeypatch.setenv(name, "mallory")
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.setattr(identity, "LOGIN_UID_FILE", tmp_path / "no-loginuid")


def test_the_environment_cannot_name_the_user(mallory):
    me = pwd.getpwuid(os.getuid()).pw_name
    assert me != "mallory"
    person = real_user()
    assert person == {"kind": "user", "name": me, "uid": os.getuid()}
    assert who(None) == person  # as the recorder writes run.started
    assert who("patch-weekly") == {"kind": "schedule", "name": "patch-weekly", "user": person}


def test_sudo_is_recorded_from_its_uid_resolved_to_a_name(mallory, monkeypatch):
    monkeypatch.setenv("SUDO_UID", "1")
    person = real_user()
    assert (person["sudo_uid"], person["sudo_user"]) == (1, pwd.getpwuid(1).pw_name)
    monkeypatch.setenv("SUDO_UID", "mallory")  # not a uid: no sudo claim at all
    assert "sudo_user" not in real_user()


def test_a_uid_without_a_passwd_entry_is_recorded_as_its_number(mallory, monkeypatch):
    uid = unused_uid()
    monkeypatch.setattr(identity.os, "getuid", lambda: uid)
    monkeypatch.setenv("SUDO_UID", str(uid))
    person = real_user()
    assert (person["name"], person["uid"]) == (str(uid), uid)
    assert person["sudo_user"] == str(uid)


def test_the_login_uid_names_the_person_behind_the_account(mallory, tmp_path, monkeypatch):
    loginuid = tmp_path / "loginuid"
    monkeypatch.setattr(identity, "LOGIN_UID_FILE", loginuid)
    loginuid.write_text("1")
    person = real_user()
    assert (person["login_uid"], person["login_user"]) == (1, pwd.getpwuid(1).pw_name)
    loginuid.write_text(str(identity.NO_LOGIN_UID))  # no login session: nothing to say
    assert "login_uid" not in real_user() and "login_user" not in real_user()


def test_sudo_uid_is_believed_only_in_a_root_process(monkeypatch):
    """Anyone can set SUDO_UID in their own environment: only sudo's root process has it
    from sudo."""
    monkeypatch.setenv("SUDO_UID", "1")
    monkeypatch.setattr(identity.os, "geteuid", lambda: 1000)
    assert "sudo_user" not in real_user()
    monkeypatch.setattr(identity.os, "geteuid", lambda: 0)
    assert real_user()["sudo_uid"] == 1
