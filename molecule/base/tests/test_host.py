"""Inside the host: time, accounts, sudo rules, sshd's safety net, journald, hostname."""

from __future__ import annotations

import re

# As converge.yml sets them.
TIMEZONE = "Europe/Amsterdam"
CHRONY_SOURCES = {"127.0.0.1", "127.0.0.2"}
SUDO_RULES = {"opsadmin": "ALL", "ansible": "NOPASSWD: ALL", "auditor": "ALL"}
VALIDATE_HELPER = "/usr/local/libexec/techops/sshd-validate-dropin"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-techops-base.conf"


def test_timezone_is_set(host):
    zone = host.check_output("timedatectl show --property=Timezone --value")
    assert zone == TIMEZONE


def test_chrony_runs_with_the_configured_sources_only(host):
    assert host.service("chrony").is_running
    assert host.service("chrony").is_enabled
    output = host.check_output("chronyc -n sources")
    # Source lines start with the mode and state, e.g. "^? 127.0.0.1".
    sources = {
        line.split()[1] for line in output.splitlines() if re.match(r"^[\^=#][*+?x~-]", line)
    }
    assert sources == CHRONY_SOURCES


def test_chronyd_leaves_the_clock_alone_in_a_container(host):
    log = host.check_output("journalctl --boot --unit=chrony --output=cat")
    assert "Disabled control of system clock" in log


def test_removed_admin_is_gone_with_home_and_sudo_rule(host):
    assert not host.user("former").exists
    assert not host.file("/home/former").exists
    assert not host.file("/etc/sudoers.d/former").exists


def test_authorized_keys_are_exactly_the_declared_ones(host, public_keys):
    content = host.file("/home/opsadmin/.ssh/authorized_keys").content_string
    keys = [line for line in content.splitlines() if line and not line.startswith("#")]
    assert [" ".join(key.split()[:2]) for key in keys] == [public_keys["admin"]]


def test_the_automation_key_works_from_the_controller_only(host):
    content = host.file("/home/ansible/.ssh/authorized_keys").content_string
    keys = [line for line in content.splitlines() if line and not line.startswith("#")]
    assert keys and all(re.match(r'^from="[0-9.]+" ssh-ed25519 ', key) for key in keys), keys


def test_only_the_automation_account_has_sudo_without_a_password(host):
    rules = host.check_output("cat /etc/sudoers /etc/sudoers.d/*")
    nopasswd = [
        line for line in rules.splitlines() if "NOPASSWD" in line and not line.startswith("#")
    ]
    assert nopasswd == ["ansible ALL=(ALL:ALL) NOPASSWD: ALL"]


def test_sudo_rules_are_valid_and_are_the_declared_ones(host):
    check = host.run("visudo -c")
    assert check.rc == 0, check.stdout + check.stderr
    for user, rule in SUDO_RULES.items():
        path = f"/etc/sudoers.d/{user}"
        assert f"{path}: parsed OK" in check.stdout
        sudoers = host.file(path)
        assert sudoers.user == "root"
        assert sudoers.mode == 0o440
        lines = [line for line in sudoers.content_string.splitlines() if not line.startswith("#")]
        # One rule, by the role (the lab's own "ansible ALL=(ALL) NOPASSWD:ALL" is replaced).
        assert lines == [f"{user} ALL=(ALL:ALL) {rule}"]


def test_sshd_drop_in_is_only_installed_when_the_whole_config_validates(host):
    """The validation helper refuses a broken candidate and accepts the installed one."""
    bad = "/run/molecule-bad-sshd.conf"
    host.run_expect([0], f"printf 'KexAlgorithms no-such-kex\\n' > {bad}")
    try:
        refused = host.run(f"{VALIDATE_HELPER} {bad} 10-techops-base.conf")
        assert refused.rc != 0
        assert "no-such-kex" in refused.stderr
    finally:
        host.run(f"rm -f {bad}")
    host.run_expect([0], f"{VALIDATE_HELPER} {SSHD_DROPIN} 10-techops-base.conf")


def test_sshd_applies_the_forwarding_logging_and_key_size_guidance(host):
    """What sshd itself says it would apply to an admin's login, not what a file says."""
    effective = host.check_output("sshd -T -C user=opsadmin,host=client,addr=192.0.2.1")
    settings = dict(line.split(" ", 1) for line in effective.splitlines() if " " in line)
    for forwarding in ("allowagentforwarding", "allowstreamlocalforwarding", "permittunnel"):
        assert settings[forwarding] == "no", forwarding
    assert settings["x11forwarding"] == "no"
    assert settings["loglevel"] == "VERBOSE"
    assert settings["requiredrsasize"] == "3072"
    # Post-quantum hybrid key exchange only, as far as this OpenSSH knows them.
    assert set(settings["kexalgorithms"].split(",")) <= {
        "mlkem768x25519-sha256",
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
    }
    version = re.search(r"OpenSSH_(\d+)\.(\d+)", host.run("ssh -V").stderr)
    assert version, "ssh -V names no OpenSSH version"
    if (int(version[1]), int(version[2])) >= (9, 8):
        assert settings["persourcepenalties"] != "no"  # penalties with their timings
    else:
        assert "persourcepenalties" not in settings  # this sshd has none to apply


def test_group_exchange_offers_no_modulus_under_3072_bits(host):
    small = host.check_output("awk '$1 !~ /^#/ && NF >= 7 && $5 + 1 < 3072' /etc/ssh/moduli")
    assert small == ""
    kept = host.check_output("awk '$1 !~ /^#/ && NF >= 7' /etc/ssh/moduli | wc -l")
    assert int(kept) > 0, "no modulus left: group exchange would fail"


def test_firewall_loads_at_boot(host):
    assert host.service("nftables").is_enabled
    ruleset = host.check_output("nft list chain inet techops_base input")
    assert "policy drop" in ruleset


def test_journald_is_persistent_with_the_configured_limit(host):
    log = host.check_output("journalctl --boot --unit=systemd-journald --output=cat")
    opened = [line for line in log.splitlines() if line.startswith("System Journal (")]
    assert opened, "journald has not opened a persistent journal"
    # The last start of journald: on disk, with the limit from converge.yml (64M).
    assert opened[-1].startswith("System Journal (/var/log/journal/")
    # Debian 12 writes "max 64.0M", Debian 13 "max 64M".
    assert re.search(r", max 64(\.0)?M,", opened[-1]), opened[-1]


def test_hostname_maps_to_127_0_1_1(host):
    name = host.backend.name
    assert host.check_output("hostname") == name
    entries = [line.split() for line in host.file("/etc/hosts").content_string.splitlines()]
    assert ["127.0.1.1", name] in entries
