"""Two-factor SSH on the bastion: key and TOTP code, each code once, no key-only logins
except the automation account from the controller."""

from __future__ import annotations

import os
import subprocess

from conftest import (
    KEYS,
    current_code,
    fresh_code,
    ssh_login,
)

from tests.helpers import container_address


def test_secrets_are_root_only_and_hold_the_configured_options(gw):
    secret = gw.file("/var/lib/techops-mfa/alice")
    assert secret.user == "root"
    # pam_google_authenticator rewrites it with 0400 after a login.
    assert secret.mode in (0o400, 0o600)
    assert gw.file("/var/lib/techops-mfa").mode == 0o700
    options = secret.content_string
    assert '" DISALLOW_REUSE' in options
    assert '" RATE_LIMIT 20 30' in options
    assert '" WINDOW_SIZE 3' in options
    assert '" TOTP_AUTH' in options
    # Five emergency scratch codes of eight digits.
    assert len([line for line in options.splitlines() if line.isdigit() and len(line) == 8]) == 5


def test_enrolment_material_is_on_the_controller_only_in_private_files():
    from conftest import ENROLMENT

    assert ENROLMENT.stat().st_mode & 0o777 == 0o700
    for user in ("alice", "bob"):
        assert (ENROLMENT / f"{user}.txt").stat().st_mode & 0o777 == 0o600


def test_key_and_code_log_in_and_the_same_code_is_refused_after(tunnels):
    alice = tunnels["alice"]
    code = fresh_code("alice")
    first = ssh_login(alice, "alice", code)
    assert first.rc == 0, first.stderr
    assert first.stdout == "alice"
    again = ssh_login(alice, "alice", code)
    assert again.rc == 255, "the same code was accepted twice"
    assert "Permission denied" in again.stderr


# The refusals come from different machines in the VPN (alice's, bob's, the internal host),
# a few each: OpenSSH 10 penalises a source after several failed logins.


def test_key_without_code_is_refused_after_the_key_is_accepted(tunnels):
    result = ssh_login(tunnels["bob"], "bob", None, verbose=True)
    assert result.rc == 255
    # The key was right: the server asked for the second factor.
    assert 'Authenticated using "publickey" with partial success' in result.stderr
    assert "Permission denied (keyboard-interactive)" in result.stderr


def test_wrong_code_is_refused(tunnels):
    code = current_code("alice")
    wrong = f"{(int(code) + 500_000) % 1_000_000:06d}"
    result = ssh_login(tunnels["alice"], "alice", wrong)
    assert result.rc == 255
    assert "Permission denied" in result.stderr


def test_code_without_the_key_is_refused(tunnels):
    bob = tunnels["bob"]
    # Another key for bob's account: the right code does not help.
    bob.run_expect([0], "rm -f /root/other_key*; ssh-keygen -q -t ed25519 -N '' -f /root/other_key")
    result = ssh_login(bob, "bob", current_code("bob"), key="/root/other_key")
    assert result.rc == 255
    assert "Permission denied (publickey)" in result.stderr


def test_automation_account_logs_in_with_its_key_alone_from_the_controller():
    result = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(KEYS / "lab"),
            f"ansible@{container_address('access-gw')}",
            "id",
            "-un",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ansible"


def test_automation_key_alone_is_refused_from_anywhere_else(internal):
    # From the internal host, through its tunnel: inside the VPN, but not the controller.
    subprocess.run(["podman", "cp", str(KEYS / "lab"), "access-internal:/root/lab_key"], check=True)
    try:
        internal.run_expect([0], "chmod 600 /root/lab_key")
        result = ssh_login(internal, "ansible", None, key="/root/lab_key", verbose=True)
    finally:
        internal.run("rm -f /root/lab_key")
    assert result.rc == 255
    assert 'Authenticated using "publickey" with partial success' in result.stderr


def test_sshd_validation_refuses_a_drop_in_that_would_drop_the_second_factor(gw):
    candidate = "/run/access-bad-mfa.conf"
    gw.run_expect([0], f"printf 'AuthenticationMethods publickey\\n' > {candidate}")
    try:
        refused = gw.run(
            f"/usr/local/libexec/techops/mfa-validate-sshd {candidate} 20-techops-mfa.conf"
        )
    finally:
        gw.run(f"rm -f {candidate}")
    assert refused.rc != 0
    assert "authenticationmethods publickey" in refused.stderr


def test_pam_validation_refuses_a_stack_with_a_missing_module(gw):
    candidate = "/run/access-bad-pam"
    gw.run_expect(
        [0], f"sed 's/pam_limits.so/pam_no_such_module.so/' /etc/pam.d/sshd > {candidate}"
    )
    try:
        refused = gw.run(f"/usr/local/libexec/techops/mfa-validate-pam {candidate}")
        accepted = gw.run("/usr/local/libexec/techops/mfa-validate-pam /etc/pam.d/sshd")
    finally:
        gw.run(f"rm -f {candidate}")
    assert refused.rc != 0
    assert "pam_no_such_module.so" in refused.stderr
    assert accepted.rc == 0, accepted.stderr


def test_sshd_validation_refuses_the_drop_in_when_an_earlier_one_disables_the_code_prompt(gw):
    # As the base role's drop-in reads with base_sshd_kbd_interactive_authentication false.
    earlier = "/etc/ssh/sshd_config.d/05-access-probe.conf"
    gw.run_expect([0], f"printf 'KbdInteractiveAuthentication no\\n' > {earlier}")
    try:
        refused = gw.run(
            "/usr/local/libexec/techops/mfa-validate-sshd"
            " /etc/ssh/sshd_config.d/20-techops-mfa.conf 20-techops-mfa.conf"
        )
    finally:
        gw.run(f"rm -f {earlier}")
    assert refused.rc != 0
    assert "base_sshd_kbd_interactive_authentication: true" in refused.stderr
