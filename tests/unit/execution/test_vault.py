"""Vault options and the inventory's secrets as Ansible reads them (a real Ansible process,
with real ansible-vault encryption)."""

from __future__ import annotations

import json
import re
import secrets
import stat
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from runner.core.errors import BadOptions, UserError
from runner.execution.request import RunRequest
from runner.execution.vault import ASK_PATTERN, Vault, inventory_secrets, label_pattern


def canary(tag: str) -> str:
    return f"CANARY-{tag}-{secrets.token_hex(4)}"


def encrypt(text: str, password: str) -> str:
    return VaultLib([("default", VaultSecret(password.encode()))]).encrypt(text).decode()


def inline_vault(name: str, value: str, password: str) -> str:
    body = "\n".join("  " + line for line in encrypt(value, password).splitlines())
    return f"{name}: !vault |\n{body}\n"


@pytest.fixture
def vaulted(tmp_path):
    """An INI inventory with group_vars: plain secrets, an inline !vault value under an
    innocent name, and a file encrypted whole."""
    password = canary("vaultpw")
    (tmp_path / "pass").write_text(password + "\n")
    values = {k: canary(k) for k in ("ini", "allvars", "yaml", "inline", "whole", "plain")}
    (tmp_path / "hosts.ini").write_text(
        f"[web]\nweb1 ansible_host=192.0.2.10 db_pw={values['ini']}\n"
        f"[all:vars]\ndb_password={values['allvars']}\n"
    )
    group_vars = tmp_path / "group_vars" / "web"
    group_vars.mkdir(parents=True)
    (group_vars / "plain.yml").write_text(
        f"backup_passphrase: {values['yaml']}\nlisten_note: {values['plain']}\n"
        + inline_vault("greeting", values["inline"], password)
    )
    (group_vars / "vault.yml").write_text(
        encrypt(f"anything_at_all: {values['whole']}\nport_number: 8443\n", password)
    )
    return tmp_path, password, values


def test_the_inventory_secrets_are_read_from_every_source_with_the_vault(vaulted):
    root, _, values = vaulted
    (root / "ansible.cfg").write_text("[defaults]\n")
    found = inventory_secrets(
        str(root / "hosts.ini"),
        Vault(ids=(str(root / "pass"),)),
        {"ANSIBLE_CONFIG": str(root / "ansible.cfg")},
    ).values
    for tag in ("ini", "allvars", "yaml", "inline", "whole"):
        assert values[tag] in found, tag
    # A vaulted file is secret as a whole; a plain value under a plain name is not.
    assert "8443" in found
    assert values["plain"] not in found


def test_cached_facts_are_not_taken_for_inventory_secrets(vaulted, tmp_path_factory):
    """A fact cache holds what hosts reported: a service whose name says "password" is not
    a secret, and its values ("systemd", "stopped") must not be redacted from every run."""
    root, _, values = vaulted
    cache = tmp_path_factory.mktemp("facts")
    # As Ansible's jsonfile cache writes them (a schema prefix, the facts as a payload).
    facts = {
        "services": {
            "systemd-ask-password-console.service": {
                "name": "systemd-ask-password-console.service",
                "source": "systemd",
                "state": "stopped",
            }
        }
    }
    for host in ("web1", "web2", "db1", "app1"):
        (cache / f"s1_{host}").write_text(json.dumps({"__payload__": json.dumps(facts)}))
    (root / "ansible.cfg").write_text(
        f"[defaults]\nfact_caching = jsonfile\nfact_caching_connection = {cache}\n"
        "fact_caching_timeout = 0\n"
    )
    found = inventory_secrets(
        str(root / "hosts.ini"),
        Vault(ids=(str(root / "pass"),)),
        {"ANSIBLE_CONFIG": str(root / "ansible.cfg")},
    ).values
    assert values["inline"] in found
    assert not {"systemd", "stopped"} & found


def test_a_typed_password_opens_the_vault_too(vaulted):
    root, password, values = vaulted
    opened = inventory_secrets(str(root / "hosts.ini"), Vault(prompted={"default": password}), {})
    found = opened.values
    assert values["inline"] in found


def test_a_wrong_vault_password_stops_before_anything_runs(vaulted, tmp_path_factory):
    root, password, _ = vaulted
    wrong = tmp_path_factory.mktemp("wrong") / "pass"
    wrong.write_text("not-the-password\n")
    with pytest.raises(UserError) as caught:
        inventory_secrets(str(root / "hosts.ini"), Vault(ids=(str(wrong),)), {})
    message = str(caught.value)
    assert caught.value.exit_code == 5
    assert "\n" not in message
    assert "decrypt" in message.lower()
    assert "nothing was run" in message
    assert password not in message and "not-the-password" not in message


def test_no_vault_secret_for_a_vaulted_inventory_is_one_line(vaulted):
    root, _, _ = vaulted
    with pytest.raises(UserError) as caught:
        inventory_secrets(str(root / "hosts.ini"), Vault(), {})
    assert caught.value.exit_code == 5
    assert "vault" in str(caught.value).lower()


def test_password_files_are_checked_and_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "prod.pass").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    vault = Vault.from_options(["prod.pass"], ["prod@prod.pass"])
    assert vault.ids == (str(tmp_path / "prod.pass"), f"prod@{tmp_path / 'prod.pass'}")
    with pytest.raises(BadOptions, match=r"missing\.pass: no such file"):
        Vault.from_options(["missing.pass"])
    with pytest.raises(BadOptions, match="no such file"):
        Vault.from_options([], ["prod@missing.pass"])


def test_prompts_need_a_terminal():
    with pytest.raises(BadOptions, match="needs a terminal"):
        Vault.from_options(ask=True, interactive=lambda: False)
    with pytest.raises(BadOptions, match="needs a terminal"):
        Vault.from_options(vault_ids=["prod@prompt"], interactive=lambda: False)


def test_typed_passwords_reach_ansible_playbook_through_its_prompt_only():
    typed = iter(["pw-prod-typed", "pw-ask-typed"])
    vault = Vault.from_options(
        vault_ids=["prod@prompt"],
        ask=True,
        prompt=lambda _text: next(typed),
        interactive=lambda: True,
    )
    args = vault.cmdline()
    assert args == ["--vault-id", "prod@prompt", "--ask-vault-pass"]
    assert "pw-prod-typed" not in repr(vault)
    answers = vault.passwords()
    # The patterns match the prompts ansible-playbook prints for each form.
    assert re.search(label_pattern("prod"), "Vault password (prod): ")
    assert re.search(ASK_PATTERN, "Vault password: ")
    assert answers == {label_pattern("prod"): "pw-prod-typed", ASK_PATTERN: "pw-ask-typed"}
    assert vault.known_passwords() == {"pw-prod-typed", "pw-ask-typed"}


def test_an_empty_typed_password_is_refused():
    with pytest.raises(BadOptions, match="empty"):
        Vault.from_options(ask=True, prompt=lambda _t: "", interactive=lambda: True)


def test_extra_vars_go_to_ansible_playbook_as_a_private_file(tmp_path):
    request = RunRequest(
        playbook=Path("/x/site.yml"),
        inventory="h1,",
        extravars={"db_password": "CANARY-ev"},
        vault=Vault(ids=("/etc/techops/vault/prod",)),
    )
    kwargs = request.runner_kwargs()
    assert "extravars" not in kwargs
    assert "CANARY-ev" not in repr(kwargs)
    assert "--vault-id /etc/techops/vault/prod" in kwargs["cmdline"]
    path = request.write_extravars(tmp_path)
    assert path == tmp_path / "env" / "extravars"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "CANARY-ev" in path.read_text()
    request.remove_extravars(tmp_path)
    assert not path.exists()


def test_the_configured_vault_password_file_applies_as_for_ansible_playbook(vaulted):
    root, _, values = vaulted
    found = inventory_secrets(
        str(root / "hosts.ini"), Vault(), {"ANSIBLE_VAULT_PASSWORD_FILE": str(root / "pass")}
    ).values
    assert values["whole"] in found


def test_a_node_run_types_every_loaded_password_into_the_nodes_prompt(vaulted):
    """The password files are on this machine: a --node run carries their content as
    answers to the node's prompts, and names no local path."""
    root, password, _ = vaulted
    opened = inventory_secrets(str(root / "hosts.ini"), Vault(ids=(f"prod@{root / 'pass'}",)), {})
    assert opened.passwords == [("prod", password)]
    node = Vault(ids=(f"prod@{root / 'pass'}",)).for_node(opened.passwords)
    assert node.cmdline() == ["--vault-id", "prod@prompt"]
    assert node.passwords() == {label_pattern("prod"): password}
    assert str(root) not in " ".join(node.cmdline())


def test_two_unlabelled_passwords_cannot_be_told_apart_on_a_node():
    with pytest.raises(BadOptions, match="give each its own label"):
        Vault().for_node([("default", "one-password"), ("default", "another-one")])
