"""Lockout: failed authentications lock an account with a password, while root and the
automation account keep getting in.

PAM is driven with pamtester through sudo's stack (common-auth, no pam_rootok): the auth
stack a password login or a sudo with password goes through.
"""

from __future__ import annotations

import pytest

# As converge.yml sets hardening_faillock_deny.
DENY = 3


@pytest.fixture
def clean_tallies(host):
    host.run_expect([0], "faillock --user opsadmin --reset && faillock --user root --reset")
    yield
    host.run("faillock --user opsadmin --reset; faillock --user root --reset")


def failures(host, user: str) -> int:
    """The failure records faillock holds for the user (lines after its header)."""
    lines = host.check_output(f"faillock --user {user}").splitlines()
    return len([line for line in lines[2:] if line.strip()])


def test_the_right_password_works_before_any_failure(authenticate, passwords, clean_tallies):
    assert authenticate("opsadmin", passwords["opsadmin"])


def test_failures_lock_the_account_until_reset(host, authenticate, passwords, ssh, clean_tallies):
    for _ in range(DENY):
        assert not authenticate("opsadmin", "wrong-password")
    assert failures(host, "opsadmin") == DENY
    # Locked: the right password is refused now.
    assert not authenticate("opsadmin", passwords["opsadmin"])
    # Meanwhile the automation account logs in with its key and has sudo.
    result = ssh("sudo", "-n", "true")
    assert result.returncode == 0, result.stderr
    # An administrator's reset lets the account in again.
    host.run_expect([0], "faillock --user opsadmin --reset")
    assert authenticate("opsadmin", passwords["opsadmin"])


def test_failures_do_not_lock_root(host, authenticate, passwords, clean_tallies):
    for _ in range(DENY + 1):
        assert not authenticate("root", "wrong-password")
    assert failures(host, "root") == DENY + 1
    assert authenticate("root", passwords["root"])


def test_failed_attempts_on_the_automation_account_do_not_stop_its_key_logins(
    host, authenticate, ssh
):
    """Someone guessing the automation account's (non-existent) password locks its password
    logins, not its key: sshd's publickey login and sudo -n do not pass the auth stack."""
    try:
        for _ in range(DENY + 1):
            assert not authenticate("ansible", "guess")
        assert failures(host, "ansible") >= DENY
        result = ssh("sudo", "-n", "true")
        assert result.returncode == 0, result.stderr
    finally:
        host.run("faillock --user ansible --reset")


def test_the_pam_check_catches_a_broken_stack(host):
    """The role's check (run after pam-auth-update, with a rollback on failure) refuses a stack
    that names a missing module and would lock root and the automation account out."""
    check = "/usr/local/libexec/techops/pam-stack-check"
    passing = host.run(f"{check} --account root --account ansible")
    assert passing.rc == 0, passing.stderr
    assert set(passing.stdout.split()) == {"su:root", "su:ansible", "sudo:ansible"}
    host.run_expect([0], "cp -p /etc/pam.d/common-account /run/common-account.keep")
    try:
        host.run_expect(
            [0], "echo 'account required pam_no_such_module.so' >> /etc/pam.d/common-account"
        )
        broken = host.run(
            f"{check} --account root --account ansible --require su:root --require sudo:ansible"
        )
        assert broken.rc == 1
        assert "pam_no_such_module.so does not exist" in broken.stderr
        assert "root no longer passes" in broken.stderr
        assert "ansible no longer passes `sudo -n true`" in broken.stderr
    finally:
        host.run_expect([0], "cp -p /run/common-account.keep /etc/pam.d/common-account")
    assert host.run(f"{check} --account root --account ansible --require sudo:ansible").rc == 0
