"""Logging in from outside, with the real OpenSSH client: who gets in, and how.

Each refusal is set up to succeed on Debian's defaults (prepare.yml authorizes the keys and
sets a password), so it shows the role's configuration at work.
"""

from __future__ import annotations

import re
import stat
import subprocess

# The methods sshd offers, as the client reports them on a refused login.
DENIED = re.compile(r"Permission denied \(([^)]*)\)")

# The password prepare.yml gave opsadmin.
OPSADMIN_PASSWORD = "molecule-only"  # noqa: S105 - a throwaway test account's password


def offered_methods(stderr: str) -> str:
    match = DENIED.search(stderr)
    assert match, f"not a refused login: {stderr!r}"
    return match.group(1)


def test_admin_logs_in_with_key_and_gets_root_with_its_password(ssh):
    result = ssh("opsadmin", f"echo {OPSADMIN_PASSWORD} | sudo -S -p '' id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_automation_account_keeps_key_login_and_passwordless_sudo(ssh):
    result = ssh("ansible", "sudo", "-n", "id", "-u", key="lab")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_admin_with_password_sudo_is_asked_for_a_password(ssh):
    result = ssh("auditor", "sudo", "-n", "true")
    assert result.returncode == 1
    assert "a password is required" in result.stderr


def test_old_key_no_longer_works(ssh):
    result = ssh("opsadmin", "true", key="stale")
    assert result.returncode == 255
    assert offered_methods(result.stderr) == "publickey"


def test_password_login_is_refused_even_with_the_right_password(ssh, tmp_path):
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{OPSADMIN_PASSWORD}'\n")
    askpass.chmod(stat.S_IRWXU)
    result = ssh(
        "opsadmin",
        "true",
        key=None,
        options=[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
        ],
        env={"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"},
    )
    assert result.returncode == 255, "password login succeeded"
    # Only public keys are offered: no password, no keyboard-interactive.
    assert offered_methods(result.stderr) == "publickey"


def test_root_login_is_refused_although_root_has_the_key(host, ssh, public_keys):
    assert public_keys["admin"] in host.file("/root/.ssh/authorized_keys").content_string
    result = ssh("root", "true")
    assert result.returncode == 255
    assert offered_methods(result.stderr) == "publickey"


def test_account_outside_allow_users_is_refused_although_it_has_the_key(host, ssh, public_keys):
    assert public_keys["admin"] in host.file("/home/outsider/.ssh/authorized_keys").content_string
    result = ssh("outsider", "true")
    assert result.returncode == 255
    assert offered_methods(result.stderr) == "publickey"


def test_removed_admin_cannot_log_in(ssh):
    result = ssh("former", "true")
    assert result.returncode == 255
    assert offered_methods(result.stderr) == "publickey"


def test_weak_key_exchange_is_refused(ssh):
    result = ssh(
        "opsadmin",
        "true",
        options=[
            "-o",
            "BatchMode=yes",
            "-o",
            # In the default server list of both OpenSSH 9.2 and 10.0, not in the role's.
            "KexAlgorithms=ecdh-sha2-nistp256",
            # The client reports a failed negotiation at INFO level.
            "-o",
            "LogLevel=INFO",
        ],
    )
    assert result.returncode == 255
    assert "no matching key exchange method found" in result.stderr


def test_sha1_mac_is_refused(ssh):
    result = ssh(
        "opsadmin",
        "true",
        options=[
            "-o",
            "BatchMode=yes",
            "-o",
            "Ciphers=aes128-ctr",
            "-o",
            "MACs=hmac-sha1",
            "-o",
            "LogLevel=INFO",
        ],
    )
    assert result.returncode == 255
    assert "no matching MAC found" in result.stderr


def test_an_rsa_key_under_3072_bits_is_refused_even_when_authorized(host, ssh, tmp_path):
    """RequiredRSASize: a 2048-bit key, put in opsadmin's authorized_keys for this test
    only, does not log in."""
    key = tmp_path / "rsa2048"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(key)], check=True
    )
    public = (tmp_path / "rsa2048.pub").read_text().strip()
    keys = "/home/opsadmin/.ssh/authorized_keys"
    host.run_expect([0], f"cp -p {keys} {keys}.molecule && echo '{public}' >> {keys}")
    try:
        result = ssh(
            "opsadmin",
            "true",
            key=None,
            options=["-o", "BatchMode=yes", "-i", str(key), "-o", "IdentitiesOnly=yes"],
        )
    finally:
        host.run_expect([0], f"mv {keys}.molecule {keys}")
    assert result.returncode == 255
    assert offered_methods(result.stderr) == "publickey"
