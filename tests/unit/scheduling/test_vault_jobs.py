"""Scheduled jobs against vaulted inventories: the units carry the vault passwords as
systemd credentials (paths only), and a job finds them where systemd put them."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from runner.core.errors import UserError
from runner.scheduling.jobs import job_vault
from runner.scheduling.model import ScheduleError, load
from runner.scheduling.units import render_units, scheduler_unit

SCHEDULES = """\
timezone: UTC
{vault}
windows:
  - name: nightly
    groups: [all]
    rrule: "FREQ=DAILY;BYHOUR=2;BYMINUTE=0"
    duration: 2h
jobs:
  - name: prod-patch
    playbook: playbooks/patch.yml
    inventory: inventories/production/hosts.yml
    cron: "15 2 * * *"
    window: nightly
    vault_ids: {vault_ids}
  - name: lab-backup
    playbook: playbooks/site.yml
    cron: "0 3 * * *"
    changes_hosts: false
"""


def schedules(tmp_path, vault_ids="[prod]", vault=""):
    path = tmp_path / "schedules.yml"
    path.write_text(SCHEDULES.format(vault_ids=vault_ids, vault=vault))
    return load(path, check_files=False)


def test_units_load_the_vault_password_as_a_credential_never_as_text(tmp_path):
    password = f"CANARY-{secrets.token_hex(6)}"
    directory = tmp_path / "vault"
    directory.mkdir()
    (directory / "prod").write_text(password)
    loaded = schedules(tmp_path, vault=f"vault: {{credentials_dir: {directory}}}")
    units = render_units(loaded, "/opt/techops/bin/techops")
    service = units["techops-job-prod-patch.service"]
    assert f"LoadCredential=techops-vault-prod:{directory}/prod\n" in service
    assert "LoadCredential" not in units["techops-job-lab-backup.service"]
    scheduler = scheduler_unit("/opt/techops/bin/techops", loaded)
    assert f"LoadCredential=techops-vault-prod:{directory}/prod\n" in scheduler
    everything = "".join(units.values()) + scheduler
    assert password not in everything
    assert not any(
        line.startswith("Environment=") and "vault" in line.lower()
        for line in everything.splitlines()
    )


def test_the_default_credentials_directory(tmp_path):
    service = render_units(schedules(tmp_path), "t")["techops-job-prod-patch.service"]
    assert "LoadCredential=techops-vault-prod:/etc/techops/vault/prod\n" in service


@pytest.mark.parametrize(
    ("vault_ids", "vault"),
    [("prod", ""), ("[prod, 'bad label']", ""), ("[prod]", "vault: {credentials_dir: rel}")],
)
def test_malformed_vault_settings_are_named_with_their_line(tmp_path, vault_ids, vault):
    with pytest.raises(ScheduleError) as caught:
        schedules(tmp_path, vault_ids=vault_ids, vault=vault)
    assert "schedules.yml:" in str(caught.value)
    assert "vault" in str(caught.value)


def test_a_job_reads_its_password_from_systemds_credentials(tmp_path, monkeypatch):
    loaded = schedules(tmp_path)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "techops-vault-prod").write_text("pw")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    vault = job_vault(loaded.job("prod-patch"), tmp_path / "nowhere")
    assert vault.ids == (f"prod@{credentials}/techops-vault-prod",)
    assert job_vault(loaded.job("lab-backup"), tmp_path).ids == ()


def test_a_job_fired_by_hand_reads_the_controllers_file(tmp_path, monkeypatch):
    loaded = schedules(tmp_path)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "prod").write_text("pw")
    assert job_vault(loaded.job("prod-patch"), tmp_path).ids == (f"prod@{tmp_path}/prod",)


def test_a_missing_password_is_one_line_saying_where_to_put_it(tmp_path, monkeypatch):
    loaded = schedules(tmp_path)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(UserError) as caught:
        job_vault(loaded.job("prod-patch"), tmp_path / "vault")
    message = str(caught.value)
    assert "\n" not in message
    assert f"{tmp_path}/vault/prod is missing" in message


@pytest.mark.skipif(
    subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode != 0,
    reason="systemd-analyze is not installed",
)
def test_systemd_accepts_the_rendered_unit(tmp_path):
    loaded = schedules(tmp_path)
    service = render_units(loaded, "/bin/true")["techops-job-prod-patch.service"]
    unit = tmp_path / "techops-job-prod-patch.service"
    unit.write_text(service)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert "LoadCredential" not in proc.stderr, proc.stderr
