"""Inside the host: what each control of the hardening role makes the system do."""

from __future__ import annotations

import re
import shlex

import pytest

SYSCTL_FILE = "/etc/sysctl.d/60-techops-hardening.conf"
# A sample of the baseline, as defaults/main.yml sets it.
SYSCTL_EXPECTED = {
    "kernel.randomize_va_space": "2",
    "kernel.kptr_restrict": "2",
    "kernel.dmesg_restrict": "1",
    "kernel.yama.ptrace_scope": "1",
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
    "fs.suid_dumpable": "0",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.all.accept_source_route": "0",
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.all.log_martians": "1",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.icmp_echo_ignore_broadcasts": "1",
    "net.ipv6.conf.all.accept_ra": "0",
    "net.ipv6.conf.all.accept_redirects": "0",
}
# Present only when the kernel was built with Yama, magic SysRq and the BPF JIT (Debian's is).
KERNEL_OPTIONAL_KEYS = {"kernel.yama.ptrace_scope", "kernel.sysrq", "net.core.bpf_jit_harden"}
DISABLED_MODULES = [
    "cramfs",
    "freevxfs",
    "hfs",
    "hfsplus",
    "jffs2",
    "udf",
    "dccp",
    "sctp",
    "rds",
    "tipc",
]
AUDIT_RULES = "/etc/audit/rules.d/60-techops-hardening.rules"
AUDIT_CHECK = "/usr/local/libexec/techops/audit-rules-check"


def sysctl_file(host) -> dict[str, str]:
    settings = {}
    for line in host.file(SYSCTL_FILE).content_string.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_sysctl_file_holds_the_baseline_and_no_forwarding(host):
    settings = sysctl_file(host)
    for key, value in SYSCTL_EXPECTED.items():
        assert settings.get(key) == value, key
    # Forwarding belongs to the groups that route (hardening_sysctl_extra).
    assert not any("forwarding" in key or key.endswith("ip_forward") for key in settings)


def test_every_sysctl_key_exists_in_this_kernel(host):
    """A misspelt key would be ignored at boot without a word. Only keys that depend on the
    kernel's build options may be missing (the lab's kernel has no Yama, SysRq or BPF JIT)."""
    missing = {
        key
        for key in sysctl_file(host)
        if not host.file("/proc/sys/" + key.replace(".", "/")).exists
    }
    assert missing <= KERNEL_OPTIONAL_KEYS


def test_live_values_where_the_container_may_set_them(host):
    settings = sysctl_file(host)
    writable = [
        key for key in settings if host.run(f"test -w /proc/sys/{key.replace('.', '/')}").rc == 0
    ]
    for key in writable:
        assert host.check_output(f"sysctl -n {key}") == settings[key], key
    if not writable:
        pytest.skip("no key is writable here: the container's /proc/sys is read-only")


def test_core_dumps_are_off_for_a_login_session(host):
    assert host.check_output("su - opsadmin -c 'ulimit -H -c'") == "0"
    config = host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert re.search(r"^Storage=none$", config, re.M)
    assert re.search(r"^ProcessSizeMax=0$", config, re.M)


def test_login_defs(host):
    content = host.file("/etc/login.defs").content_string
    values = dict(
        line.split(None, 1) for line in content.splitlines() if line.strip() and line[0] != "#"
    )
    assert values["UMASK"].strip() == "027"
    assert values["ENCRYPT_METHOD"].strip() == "YESCRYPT"
    assert values["PASS_MAX_DAYS"].strip() == "365"
    assert values["PASS_MIN_DAYS"].strip() == "1"
    assert values["PASS_WARN_AGE"].strip() == "14"


def test_a_login_session_gets_the_umask(host):
    assert host.check_output("su - opsadmin -c umask") == "0027"


def test_aging_reaches_accounts_with_a_password_and_spares_the_automation_account(host):
    def aging(user: str) -> tuple[str, str, str]:
        fields = host.check_output(f"getent shadow {user}").split(":")
        return fields[3], fields[4], fields[5]  # min, max, warn

    assert aging("opsadmin") == ("1", "365", "14")
    assert aging("root") == ("1", "365", "14")
    # "*": no password to age; an expiry would only break its key logins.
    assert aging("ansible")[1] in ("", "99999")


def test_pwquality_refuses_weak_passwords_and_takes_strong_ones(host):
    for weak in ("short1", "onlylowercaseletters", "Abcdefgh12345"):
        scored = host.run(f"printf '%s\\n' {shlex.quote(weak)} | pwscore")
        assert scored.rc != 0 and "quality check failed" in scored.stderr, (weak, scored.stderr)
    strong = host.run("printf '%s\\n' 'Vq7#tLm2!pZr4@Xw' | pwscore")
    assert strong.rc == 0, strong.stderr


def test_a_password_change_through_pam_is_checked_even_for_root(host):
    """chpasswd runs PAM's common-password: pam_pwquality with enforce_for_root."""
    host.run_expect([0], "useradd --create-home pwtest")
    try:
        weak = host.run("printf 'pwtest:%s\\n' 'abc12345' | chpasswd")
        assert weak.rc != 0, weak.stdout + weak.stderr
        assert "BAD PASSWORD" in weak.stderr
        strong = host.run("printf 'pwtest:%s\\n' 'Vq7#tLm2!pZr4@Xw' | chpasswd")
        assert strong.rc == 0, strong.stderr
        # pam_unix keeps Debian's yescrypt.
        assert host.check_output("getent shadow pwtest").split(":")[1].startswith("$y$")
    finally:
        host.run("userdel --remove pwtest")


def test_audit_rules_are_in_place_and_valid(host):
    rules = host.file(AUDIT_RULES)
    assert rules.exists and rules.user == "root" and rules.mode == 0o640
    content = rules.content_string
    for watched in (
        "/etc/passwd",
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/group",
        "/etc/sudoers",
        "/etc/sudoers.d",
        "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d",
    ):
        assert re.search(rf"^-w {re.escape(watched)} -p wa -k \S+$", content, re.M), watched
    assert re.search(
        r"^-a always,exit -F arch=b64 -S .*\bsettimeofday\b.* -k time-change$", content, re.M
    )
    assert re.search(
        r"^-a always,exit -F arch=b64 -S .*\binit_module\b.* -k modules$", content, re.M
    )
    host.run_expect([0], f"{AUDIT_CHECK} {AUDIT_RULES}")
    # augenrules merged rules.d into the file auditd loads at boot.
    assert "No change" in host.check_output("augenrules --check")
    assert "-k identity" in host.file("/etc/audit/audit.rules").content_string


def test_the_audit_rules_check_refuses_broken_rules(host):
    bad = "/run/molecule-bad.rules"
    lines = [
        "-w /etc/passwd -p wz -k identity",
        "-a always,exit -F arch=b64 -S no_such_call -k x",
    ]
    host.run_expect([0], f"printf '%s\\n' {' '.join(shlex.quote(line) for line in lines)} > {bad}")
    try:
        refused = host.run(f"{AUDIT_CHECK} {bad}")
        assert refused.rc == 1
        assert "line 1" in refused.stderr and "line 2" in refused.stderr
        assert "no_such_call" in refused.stderr
    finally:
        host.run(f"rm -f {bad}")


def allow_list(host, path: str) -> list[str]:
    return [
        line for line in host.file(path).content_string.splitlines() if not line.startswith("#")
    ]


def test_only_the_allowed_accounts_may_use_cron_and_at(host):
    assert allow_list(host, "/etc/cron.allow") == ["root", "opsadmin"]
    assert allow_list(host, "/etc/at.allow") == ["root"]
    # crontab itself says who may: opsadmin (listed) may, ansible (not listed) may not.
    assert host.run("su -s /bin/sh -c 'crontab -l' opsadmin").rc in (0, 1)
    refused = host.run("su -s /bin/sh -c 'crontab -l' ansible")
    assert refused.rc != 0 and "not allowed" in refused.stderr
    refused_at = host.run("su -s /bin/sh -c 'atq' ansible")
    assert refused_at.rc != 0 and "permission" in refused_at.stderr + refused_at.stdout


def test_cron_files_and_directories_are_root_only(host):
    assert host.file("/etc/crontab").mode == 0o600
    for directory in (
        "/etc/cron.d",
        "/etc/cron.daily",
        "/etc/cron.hourly",
        "/etc/cron.weekly",
        "/etc/cron.monthly",
    ):
        assert host.file(directory).mode == 0o700, directory


@pytest.mark.parametrize(
    ("path", "group", "mode"),
    [
        ("/etc/passwd", "root", 0o644),
        ("/etc/group", "root", 0o644),
        ("/etc/shadow", "shadow", 0o640),
        ("/etc/gshadow", "shadow", 0o640),
        ("/etc/ssh/sshd_config", "root", 0o600),
    ],
)
def test_sensitive_file_permissions(host, path, group, mode):
    target = host.file(path)
    assert target.user == "root"
    assert target.group == group
    assert target.mode == mode


@pytest.mark.parametrize("module", DISABLED_MODULES)
def test_unused_modules_cannot_be_loaded(host, module):
    plan = host.check_output(f"modprobe --dry-run --verbose {module}").strip()
    assert plan == "install /bin/false", plan
    assert re.search(rf"^blacklist {module}$", host.check_output("modprobe --showconfig"), re.M)


def test_needrestart_lists_and_does_not_restart(host):
    content = host.file("/etc/needrestart/conf.d/60-techops-hardening.conf").content_string
    assert "$nrconf{restart} = 'l';" in content
    # needrestart reads the drop-in: its batch mode runs with it without complaint.
    assert host.run("needrestart -b -r l").rc == 0
    assert host.package("apt-listchanges").is_installed
