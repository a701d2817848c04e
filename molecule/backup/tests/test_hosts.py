"""What each host was made into: the server's restrictions, the client's schedule and secrets."""

from __future__ import annotations

import pytest
import yaml


@pytest.fixture
def name(host) -> str:
    return host.backend.name


def test_server_key_is_forced_to_append_only_borg_serve(host, name):
    if name != "backup-server":
        pytest.skip("server only")
    keys = host.file("/srv/borg/.ssh/authorized_keys").content_string.splitlines()
    client_keys = [k for k in keys if "techops-backup@backup-app" in k]
    assert len(client_keys) == 1
    assert client_keys[0].startswith(
        'command="borg serve --append-only --restrict-to-path /srv/borg/backup-app",restrict '
    )
    # The controller's maintenance key: this repository only, not append-only, and from the
    # controller's address only.
    maintenance = [k for k in keys if "techops-maintain@backup-app" in k]
    assert len(maintenance) == 1
    assert maintenance[0].startswith(
        'command="borg serve --restrict-to-repository /srv/borg/backup-app/repo",restrict,from="'
    ), maintenance[0]
    assert "--append-only" not in maintenance[0]
    # The drill's temporary key was revoked by the drill's cleanup (or never added).
    assert not [k for k in keys if "techops-dr-drill" in k]


def test_server_holds_no_passphrase(host, name):
    if name != "backup-server":
        pytest.skip("server only")
    found = host.run(
        "grep -rIl --exclude-dir=proc -e molecule-only-passphrase /etc /srv /root /home /var/lib"
    )
    assert found.rc == 1, found.stdout  # 1: nothing found
    assert not host.file("/etc/techops-backup/server").exists


def test_server_lets_borg_in_with_a_key_alone(host, name):
    if name != "backup-server":
        pytest.skip("server only")
    effective = host.check_output("sshd -T -C user=borg,host=client,addr=192.0.2.1")
    assert "authenticationmethods publickey" in effective
    assert "permittty no" in effective
    # The Match block ends with its drop-in: other accounts keep the main settings.
    others = host.check_output("sshd -T -C user=ansible,host=client,addr=192.0.2.1")
    assert "permittty yes" in others


def test_server_checks_repositories_and_no_longer_prunes(host, name):
    if name != "backup-server":
        pytest.skip("server only")
    timer = host.service("techops-borg-check@backup-app.timer")
    assert timer.is_enabled
    assert timer.is_running
    # Retention and compaction run from the controller only (backup_maintain.yml).
    units = host.check_output("systemctl list-unit-files --no-legend 'techops-borg-*'")
    assert "maintain" not in units and "verify" not in units, units


def test_client_timer_has_a_random_delay_and_secrets_are_root_only(host, name):
    if name != "backup-app":
        pytest.skip("client only")
    assert host.service("techops-backup.timer").is_enabled
    delay = host.check_output("systemctl show -P RandomizedDelayUSec techops-backup.timer")
    assert delay not in ("0", "")
    for path in ("/etc/techops-backup/passphrase", "/etc/techops-backup/id_ed25519"):
        secret = host.file(path)
        assert secret.user == "root"
        assert secret.mode == 0o600
    # The format the installed borgmatic expects: in sections before 1.8.0 (Debian 12's
    # 1.7.7), flat from then on.
    version = tuple(int(n) for n in host.check_output("borgmatic --version").split(".")[:2])
    config = yaml.safe_load(host.file("/etc/borgmatic/config.yaml").content_string)
    assert ("location" in config) == (version < (1, 8)), (version, list(config))
    options = dict(config)
    for section in ("location", "storage", "hooks"):
        options.update(config.get(section) or {})
    # Retention is not the client's job: its borgmatic has no retention options.
    assert "retention" not in config
    assert not [k for k in options if k.startswith("keep_")]
    assert options["encryption_passcommand"] == "cat /etc/techops-backup/passphrase"


def test_client_masks_debians_borgmatic_units(host, name):
    """Debian's timer would run plain `borgmatic` (prune, compact, check) beside ours."""
    if name != "backup-app":
        pytest.skip("client only")
    shipped = host.check_output("dpkg-query -L borgmatic").splitlines()
    for unit in ("borgmatic.timer", "borgmatic.service"):
        # The names are the package's own, so the masks hide real units.
        assert [p for p in shipped if p.endswith(f"/systemd/system/{unit}")], unit
        assert host.run(f"systemctl is-enabled {unit}").stdout.strip() == "masked", unit
        assert not host.service(unit).is_running, unit
