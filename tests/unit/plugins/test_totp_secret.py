"""The totp_secret module, run as Ansible runs it (a process with an arguments file)."""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, load_plugin

MODULE = REPO / "plugins" / "modules" / "totp_secret.py"
module = load_plugin("plugins/modules/totp_secret.py")

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run(tmp_path: Path, check_mode: bool = False, **args) -> dict:
    args.setdefault("owner", OWNER)
    args.setdefault("group", GROUP)
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(payload))
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(done.stdout)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "alice"


def test_a_new_secret_is_written_private_and_returned_once(tmp_path, path):
    first = run(tmp_path, path=str(path), label="alice@bastion1", window_size=5)
    assert first["changed"] and first["created"] and first["enrolled"]
    secret = first["secret"]
    # 160 bits, base32, as the PAM module and authenticator apps read it.
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
    assert first["uri"].startswith("otpauth://totp/TechOps:alice%40bastion1?secret=" + secret)
    assert len(first["scratch_codes"]) == 5
    assert all(len(code) == 8 and code.isdigit() for code in first["scratch_codes"])
    assert path.stat().st_mode & 0o777 == 0o600
    lines = path.read_text().splitlines()
    assert lines[0] == secret
    assert lines[1:5] == ['" RATE_LIMIT 3 30', '" WINDOW_SIZE 5', '" DISALLOW_REUSE', '" TOTP_AUTH']
    assert lines[5:] == first["scratch_codes"]

    second = run(tmp_path, path=str(path), label="alice@bastion1", window_size=5)
    assert not second["changed"]
    assert not second["created"]
    assert "secret" not in second and "uri" not in second and "scratch_codes" not in second
    assert path.read_text().splitlines()[0] == secret


def test_the_pam_modules_own_state_and_its_0400_mode_are_kept(tmp_path, path):
    created = run(tmp_path, path=str(path))
    # What pam_google_authenticator writes after logins: used codes, login timestamps, 0400.
    text = path.read_text()
    text = text.replace('" RATE_LIMIT 3 30', '" RATE_LIMIT 3 30 1763780000 1763780010')
    text = text.replace('" DISALLOW_REUSE', '" DISALLOW_REUSE 58792666')
    path.write_text(text)
    path.chmod(0o400)
    again = run(tmp_path, path=str(path))
    assert not again["changed"], again
    assert path.read_text() == text
    assert created["secret"] == path.read_text().splitlines()[0]


def test_changed_options_keep_the_secret_and_the_scratch_codes(tmp_path, path):
    created = run(tmp_path, path=str(path))
    changed = run(tmp_path, path=str(path), window_size=7, rate_limit_attempts=5)
    assert changed["changed"] and not changed["created"]
    assert "secret" not in changed
    lines = path.read_text().splitlines()
    assert lines[0] == created["secret"]
    assert '" WINDOW_SIZE 7' in lines and '" RATE_LIMIT 5 30' in lines
    assert lines[-5:] == created["scratch_codes"]


def test_rotation_replaces_the_secret(tmp_path, path):
    created = run(tmp_path, path=str(path))
    rotated = run(tmp_path, path=str(path), rotate=True)
    assert rotated["changed"] and rotated["created"]
    assert rotated["secret"] != created["secret"]
    assert path.read_text().splitlines()[0] == rotated["secret"]


def test_check_mode_writes_nothing(tmp_path, path):
    result = run(tmp_path, check_mode=True, path=str(path))
    assert result["changed"]
    assert not path.exists()
    run(tmp_path, path=str(path))
    before = path.read_text()
    assert run(tmp_path, check_mode=True, path=str(path), state="absent")["changed"]
    assert path.read_text() == before


def test_loose_permissions_are_tightened(tmp_path, path):
    run(tmp_path, path=str(path))
    path.chmod(0o644)
    assert run(tmp_path, path=str(path))["changed"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_absent_removes_the_file_and_is_idempotent(tmp_path, path):
    run(tmp_path, path=str(path))
    removed = run(tmp_path, path=str(path), state="absent")
    assert removed["changed"] and not removed["enrolled"]
    assert not path.exists()
    assert not run(tmp_path, path=str(path), state="absent")["changed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"window_size": 0}, "window_size"),
        ({"scratch_codes": 11}, "scratch_codes"),
        ({"rate_limit_seconds": 0}, "rate_limit"),
        ({"owner": "no-such-user-here"}, "unknown owner"),
    ],
)
def test_bad_input_fails_with_a_message(tmp_path, path, args, message):
    if "owner" in args:
        run(tmp_path, path=str(path))
    result = run(tmp_path, path=str(path), **args)
    assert result.get("failed"), result
    assert message in result["msg"]


def test_option_key_ignores_the_state_the_pam_module_appends():
    assert module.option_key('" RATE_LIMIT 3 30 1763780000') == "RATE_LIMIT 3 30"
    assert module.option_key('" DISALLOW_REUSE 1 2 3') == "DISALLOW_REUSE"
    assert module.option_key('" WINDOW_SIZE 3') == "WINDOW_SIZE 3"
