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
    # The drill's temporary key was revoked by the drill's cleanup (or never added).
    assert not [k for k in keys if "techops-dr-drill" in k]


def test_server_lets_borg_in_with_a_key_alone(host, name):
    if name != "backup-server":
        pytest.skip("server only")
    effective = host.check_output("sshd -T -C user=borg,host=client,addr=192.0.2.1")
    assert "authenticationmethods publickey" in effective
    assert "permittty no" in effective
    # The Match block ends with its drop-in: other accounts keep the main settings.
    others = host.check_output("sshd -T -C user=ansible,host=client,addr=192.0.2.1")
    assert "permittty yes" in others


def test_server_maintenance_and_verification_timers(host, name):
    if name != "backup-server":
        pytest.skip("server only")
    for timer in ("techops-borg-maintain@backup-app.timer", "techops-borg-verify@backup-app.timer"):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running


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
    # Retention is not the client's job: its borgmatic has no retention section.
    config = yaml.safe_load(host.file("/etc/borgmatic/config.yaml").content_string)
    assert "retention" not in config
    assert config["storage"]["encryption_passcommand"] == "cat /etc/techops-backup/passphrase"
