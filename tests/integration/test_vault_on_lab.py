"""A vaulted inventory run on the lab through `techops run`, with each vault option: the
vault opens, and no vaulted value, extra var or password is anywhere afterwards, nor on
any process's command line while the run is in flight."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import sys
import threading
from pathlib import Path

import pexpect
import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from runner.execution.request import fact_cache_dir
from tests.helpers import REPO, techops

PLAYBOOK = "tests/fixtures/playbooks/vault_canary.yml"


def encrypt(text: str, password: str) -> str:
    return VaultLib([("default", VaultSecret(password.encode()))]).encrypt(text).decode()


class Canaries:
    """Fresh values for each test: nothing can pass by matching an old run's leftovers.
    One per way a secret reaches a run, each printed by the playbook without no_log."""

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.password = f"CANARY-vaultpw-{tag}"  # the vault password itself
        self.note = f"CANARY-inline-{tag}"  # a !vault value under an innocent name
        self.whole = f"CANARY-wholefile-{tag}"  # a file encrypted whole
        self.extra = f"CANARY-extra-{tag}"  # an extra var given in a 0600 file
        self.ini = f"CANARY-ini-{tag}"  # a secret in an INI source of the inventory
        # A multi-line secret, printed line by line and re-indented.
        self.key_lines = (f"b3BlbnNzaC1rZXk{tag}AAAlineONE", f"QyNTUxOQAAACB{tag}lineTWO")
        self.key = (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            + "\n".join(self.key_lines)
            + "\n-----END OPENSSH PRIVATE KEY-----\n"
        )
        # A secret that YAML output must quote, doubling its quotes.
        self.quoted = f"CANARY-quoted-{tag}"
        self.service_password = f"'{tag}' is {self.quoted}"
        self.mysql = f"CANARY-mysql-{tag}"  # MYSQL_PWD in the controller's environment
        self.cache_pw = f"CANARY-cachepw-{tag}"  # a URL password, under a plain name

    def all(self) -> list[str]:
        return [
            self.password,
            self.note,
            self.whole,
            self.extra,
            self.ini,
            *self.key_lines,
            self.quoted,
            self.mysql,
            self.cache_pw,
        ]

    def environment(self) -> dict[str, str]:
        return {
            "MYSQL_PWD": self.mysql,
            "TECHOPS_CANARY_CACHE_URL": f"redis://:{self.cache_pw}@cache.example.invalid:6379/0",
        }


def plant(inventory: Path, canaries: Canaries) -> None:
    """Every kind of inventory secret, in an inventory directory that already holds its
    hosts file: an INI source, plain secrets, an inline !vault value, a vaulted file."""
    group_vars = inventory / "group_vars" / "all"
    group_vars.mkdir(parents=True, exist_ok=True)
    (inventory / "extra.ini").write_text(f"[app:vars]\nini_db_pw={canaries.ini}\n")
    (group_vars / "secrets.yml").write_text(
        yaml.safe_dump(
            {"deploy_private_key": canaries.key, "service_password": canaries.service_password}
        )
    )
    ciphertext = encrypt(canaries.note, canaries.password)
    inline = "\n".join("  " + line for line in ciphertext.splitlines())
    (group_vars / "notes.yml").write_text(f"canary_note: !vault |\n{inline}\n")
    (group_vars / "vault.yml").write_text(
        encrypt(yaml.safe_dump({"canary_whole_file": canaries.whole}), canaries.password)
    )


@pytest.fixture
def vaulted(lab_inventory, tmp_path):
    """The lab inventory, as a directory, with every kind of secret planted; a password
    file and an extra-vars file (0600)."""
    canaries = Canaries()
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(lab_inventory, inventory / "hosts.yml")
    for source in (REPO / "inventories/lab/group_vars/all").glob("*.yml"):
        shutil.copy(source, inventory / "group_vars" / "all" / source.name)
    plant(inventory, canaries)
    password_file = tmp_path / "vault.pass"
    password_file.write_text(canaries.password + "\n")
    password_file.chmod(0o600)
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump({"extra_api_token": canaries.extra}))
    extra.chmod(0o600)
    return inventory, password_file, extra, canaries


def scan_command_lines(stop: threading.Event, found: list[str], canaries: list[str]) -> None:
    """Read every process's command line until told to stop."""
    me = str(os.getpid())
    while not stop.wait(0.1):
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            if cmdline.parent.name == me:
                continue
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "-m runner.cli " in text:
                # techops itself, as the test typed it: --reason and --ticket quote
                # secrets on purpose; what it starts is what must hold none.
                continue
            found.extend(f"{c} in {text[:200]}" for c in canaries if c in text)
            if "ansible-playbook" in text:
                found.append("seen:ansible-playbook")


def left_behind(run_id: str, ledger: Path, inventory: Path, outputs: list[str]) -> bytes:
    """Every byte the run leaves: artifacts, the ledger, the fact cache, reports in every
    format, and what was printed."""
    files = [p for p in (REPO / ".techops" / "runs" / run_id).rglob("*") if p.is_file()]
    files += [p for p in ledger.parent.iterdir() if p.name.startswith(ledger.name)]
    facts = fact_cache_dir(str(inventory.resolve()))
    assert facts.is_dir(), "the run kept no facts: the fact cache check would be vacuous"
    assert stat.S_IMODE(facts.stat().st_mode) == 0o700
    files += [p for p in facts.rglob("*") if p.is_file()]
    blob = b"".join(p.read_bytes() for p in files) + "".join(outputs).encode()
    for fmt in ("html", "json", "md"):
        report = techops("report", run_id, "--format", fmt, "--ledger", f"sqlite:///{ledger}")
        assert report.returncode == 0, report.stderr
        blob += report.stdout.encode()
    return blob


def run_id_of(stdout: str) -> str:
    return json.loads(stdout[stdout.index("{") :])["run_id"]


@pytest.mark.parametrize("option", ["--vault-password-file", "--vault-id"])
def test_a_vaulted_run_leaves_no_secret_anywhere(vaulted, tmp_path, option):
    inventory, password_file, extra, canaries = vaulted
    ledger = tmp_path / "ledger.sqlite3"
    value = str(password_file) if option == "--vault-password-file" else f"lab@{password_file}"
    stop, seen = threading.Event(), []
    scanner = threading.Thread(target=scan_command_lines, args=(stop, seen, canaries.all()))
    scanner.start()
    try:
        proc = techops(
            "run",
            PLAYBOOK,
            "-i",
            str(inventory),
            option,
            value,
            "-e",
            f"@{extra}",
            # Free text that quotes known secrets, as a hurried user might.
            "--reason",
            f"rotate {canaries.extra} after the incident",
            "--ticket",
            f"SEC-1 {canaries.note}",
            "--ledger",
            f"sqlite:///{ledger}",
            "--json",
            env=canaries.environment(),
        )
    finally:
        stop.set()
        scanner.join()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "seen:ansible-playbook" in seen  # the scan really watched the run
    assert [s for s in seen if not s.startswith("seen:")] == []
    run_id = run_id_of(proc.stdout)
    blob = left_behind(run_id, ledger, inventory, [proc.stdout, proc.stderr])
    for canary in canaries.all():
        assert canary.encode() not in blob, f"{canary} leaked"
    assert b"**redacted**" in blob  # the values were printed, and replaced
    # The reason and ticket were recorded, with the secrets they quoted scrubbed.
    record = json.loads(techops("runs", "--json", "--ledger", f"sqlite:///{ledger}").stdout)[0]
    assert record["start"]["reason"] == "rotate **redacted** after the incident"
    assert record["start"]["ticket"] == "SEC-1 **redacted**"
    # The extra vars file given to ansible-playbook is gone with the run.
    assert not (REPO / ".techops" / "runs" / run_id / "env" / "extravars").exists()


def test_a_typed_vault_password_opens_the_run_and_appears_nowhere(vaulted, tmp_path):
    inventory, _, extra, canaries = vaulted
    ledger = tmp_path / "ledger.sqlite3"
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "runner.cli",
            "run",
            PLAYBOOK,
            "-i",
            str(inventory),
            "--ask-vault-pass",
            "-e",
            f"@{extra}",
            "--ledger",
            f"sqlite:///{ledger}",
            "--json",
        ],
        cwd=str(REPO),
        env={**os.environ, **canaries.environment()},
        encoding="utf-8",
        timeout=240,
    )
    child.expect("Vault password: ")
    child.sendline(canaries.password)
    child.expect(pexpect.EOF)
    child.close()
    output = child.before or ""
    assert child.exitstatus == 0, output[-3000:]
    run_id = run_id_of(output)
    blob = left_behind(run_id, ledger, inventory, [output])
    for canary in canaries.all():
        assert canary.encode() not in blob, f"{canary} leaked"


def test_vault_mistakes_are_one_line_and_run_nothing(vaulted, tmp_path):
    inventory, _, _, canaries = vaulted
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-password\n")
    cases = {
        "wrong password": ["--vault-password-file", str(wrong)],
        "missing file": ["--vault-id", f"lab@{tmp_path / 'missing.pass'}"],
        "no terminal": ["--ask-vault-pass"],
        "no vault secret at all": [],
    }
    for case, options in cases.items():
        proc = techops(
            "run", PLAYBOOK, "-i", str(inventory), *options, "--ledger", ledger, input=""
        )
        assert proc.returncode == 5, (case, proc.stderr[-2000:])
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("techops: error: "), (case, last)
        assert "vault" in last.lower(), (case, last)
        assert canaries.password not in proc.stderr and "not-the-password" not in proc.stderr
    listed = techops("runs", "--json", "--ledger", ledger)
    assert json.loads(listed.stdout or "[]") == []
