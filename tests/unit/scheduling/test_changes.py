"""Signed changes: a second person's SSH signature lets exactly the requested run go
ahead, once, before it expires; every other attempt is refused and on the record."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.core.errors import BadOptions, UserError
from runner.execution.launch import Why
from runner.execution.request import RunRequest, RunResult
from runner.ledger.store import Ledger
from runner.reports.run import run_report
from runner.scheduling import changes, protect, signing
from runner.scheduling.changes import ChangeRefused
from runner.scheduling.environments import environment_of, load
from runner.scheduling.signing import SigningError
from tests.helpers import techops
from tests.ledgers import add_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SCHEDULES = """\
timezone: UTC
windows:
  - {name: always, groups: [all], cron: "0 * * * *", duration: 1h}
notify:
  on: [failure, refuse, override]
  webhook: https://hooks.example.invalid/techops
jobs: []
"""


def keypair(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def public(key: Path) -> str:
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """alice requests, bob and erin approve, carol is nobody's, dave approves staging only."""
    directory = tmp_path_factory.mktemp("keys")
    return {name: keypair(directory, name) for name in ("alice", "bob", "carol", "dave", "erin")}


@pytest.fixture
def prod(tmp_path, monkeypatch, keys):
    """A production-like inventory of the test's own (documentation addresses, never
    contacted: every run here is faked), protected, one approval required."""
    inventory = tmp_path / "prod"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        "all:\n  children:\n    app:\n      hosts:\n        app1: {ansible_host: 192.0.2.10}\n"
        "        app2: {ansible_host: 192.0.2.11}\n"
    )
    signers = tmp_path / "allowed_signers"
    signers.write_text(
        "# the team\n"
        f'alice@example.com namespaces="techops-*@prod" {public(keys["alice"])}\n'
        f'bob@example.com namespaces="techops-approve@prod" {public(keys["bob"])}\n'
        f"erin@example.com {public(keys['erin'])}\n"
        f'dave@example.com namespaces="techops-approve@staging" {public(keys["dave"])}\n'
    )
    environments = tmp_path / "environments.yml"
    environments.write_text(
        "environments:\n"
        f"  - {{name: prod, inventories: [{inventory}], protected: true, approvals: 1,\n"
        f"      allowed_signers: {signers}}}\n"
    )
    schedules = tmp_path / "schedules.yml"
    schedules.write_text(SCHEDULES)
    monkeypatch.setenv("TECHOPS_ENVIRONMENTS", str(environments))
    monkeypatch.setenv("TECHOPS_SCHEDULES", str(schedules))
    monkeypatch.setattr(changes, "git_commit", lambda root=None: COMMIT)
    return inventory / "hosts.yml"


@pytest.fixture
def ran(monkeypatch):
    """The runs that went ahead (faked: nothing reaches a host), and what was notified."""
    started: list[RunRequest] = []

    def fake_run(request, _ledger, why):
        started.append(request)
        now = datetime.now(UTC)
        return RunResult(request.run_id, "successful", 0, {}, None, now, now)

    monkeypatch.setattr(protect, "run_recorded", fake_run)
    monkeypatch.setattr(protect.notify, "send", lambda config, event, payload: [])
    return started


def run_request(inventory: Path, **fields) -> RunRequest:
    return RunRequest(
        playbook=Path("playbooks/site.yml").resolve(), inventory=str(inventory), **fields
    )


def environment(inventory: Path):
    found = environment_of(str(inventory), load())
    assert found is not None
    return found


def request(ledger, inventory, key, *, now=None, **fields) -> changes.Change:
    now = now or datetime.now(UTC)
    return changes.request_change(
        ledger,
        run_request(inventory, **fields),
        environment(inventory),
        reason="rotate TLS certificates",
        ticket="CHG-2041",
        not_before=now,
        not_after=now + timedelta(hours=4),
        key=key,
        scrub=str,
        now=now,
    )


def run(ledger, inventory, change_id, **fields):
    return protect.run_protected(
        run_request(inventory, **fields), ledger, environment(inventory), Why(), change_id=change_id
    )


def refusals(ledger: Ledger, kind: str = protect.CHANGE_DECISION) -> list[str]:
    return [
        e.body.get("decision") or e.body["reason"]
        for e in ledger.entries(kinds=[kind])
        if e.body.get("action", "refuse") == "refuse"
    ]


def test_an_approved_change_runs_once_and_the_record_names_both_people(prod, keys, ledger, ran):
    change = request(ledger, prod, keys["alice"], limit="app1", extravars={"serial": 1})
    assert change.requester["principal"] == "alice@example.com"
    approval = changes.approve(ledger, change, environment(prod), key=keys["bob"])
    assert approval.principal == "bob@example.com"
    result = run(ledger, prod, change.id, limit="app1", extravars={"serial": 1})
    assert result is not None and result.rc == 0 and len(ran) == 1
    [decision] = [e.body for e in ledger.entries(kinds=[protect.CHANGE_DECISION])]
    assert decision["action"] == "fire" and decision["change"] == change.id
    assert decision["reason"] == "rotate TLS certificates" and decision["ticket"] == "CHG-2041"
    assert decision["requested_by"]["fingerprint"] == change.requester["fingerprint"]
    [approver] = decision["approved_by"]
    assert approver["principal"] == "bob@example.com"
    assert approver["fingerprint"] == approval.fingerprint
    # A change is one run: once it succeeded, it is used up.
    assert run(ledger, prod, change.id, limit="app1", extravars={"serial": 1}) is None
    assert "already ran successfully as run" in refusals(ledger)[-1]
    assert len(ran) == 1
    assert changes.load(ledger, change.id).status(1, datetime.now(UTC)) == "done"
    assert ledger.verify().ok


def test_the_fingerprint_recorded_is_the_approvers_key(prod, keys, ledger):
    change = request(ledger, prod, keys["alice"])
    approval = changes.approve(ledger, change, environment(prod), key=keys["bob"])
    shown = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(keys["bob"].with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert approval.fingerprint == shown


@pytest.mark.parametrize(
    ("signer", "message"),
    [
        ("alice", "alice@example.com requested this change and cannot approve it"),
        ("carol", "is not in the allowed signers"),
        ("dave", "may not sign for techops-approve@prod"),
    ],
)
def test_an_approval_by_the_requester_or_an_unlisted_key_is_refused_and_recorded(
    prod, keys, ledger, ran, signer, message
):
    change = request(ledger, prod, keys["alice"])
    with pytest.raises(ChangeRefused, match=message):
        changes.approve(ledger, change, environment(prod), key=keys[signer])
    [refused] = [e.body for e in ledger.entries(kinds=[changes.REFUSED])]
    assert refused["step"] == "approve" and message in refused["reason"]
    assert changes.load(ledger, change.id).approvals == []
    # Without an approval, the run is refused too, and recorded.
    assert run(ledger, prod, change.id) is None
    assert "has 0 of the 1 approval(s) environment prod requires" in refusals(ledger)[-1]
    assert ran == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"limit": "app"}, "limit: approved 'app1', this run 'app'"),
        ({"limit": "app1", "tags": "sshd"}, "tags: approved None, this run 'sshd'"),
        ({"limit": "app1", "extravars": {"serial": 2}}, "extravars_sha256"),
    ],
)
def test_a_run_other_than_the_approved_one_is_refused(prod, keys, ledger, ran, fields, named):
    change = request(ledger, prod, keys["alice"], limit="app1")
    changes.approve(ledger, change, environment(prod), key=keys["bob"])
    assert run(ledger, prod, change.id, **fields) is None
    assert named in refusals(ledger)[-1]
    assert f"run exactly `techops run playbooks/site.yml -i {prod}" in refusals(ledger)[-1]
    assert ran == []


def test_another_commit_or_an_edited_inventory_is_refused(prod, keys, ledger, ran, monkeypatch):
    change = request(ledger, prod, keys["alice"])
    changes.approve(ledger, change, environment(prod), key=keys["bob"])
    monkeypatch.setattr(changes, "git_commit", lambda root=None: "f" * 40)
    assert run(ledger, prod, change.id) is None
    assert f"commit: approved '{COMMIT}', this run '{'f' * 40}'" in refusals(ledger)[-1]
    monkeypatch.setattr(changes, "git_commit", lambda root=None: COMMIT)
    with prod.open("a") as hosts:
        hosts.write("        app3: {ansible_host: 192.0.2.12}\n")
    assert run(ledger, prod, change.id) is None
    assert "inventory_sha256: approved" in refusals(ledger)[-1]
    assert ran == []


def test_an_expired_or_early_change_is_refused(prod, keys, ledger, ran):
    now = datetime.now(UTC)
    early = request(ledger, prod, keys["alice"], now=now)
    changes.approve(ledger, early, environment(prod), key=keys["bob"])
    later = now + timedelta(hours=5)
    with pytest.raises(ChangeRefused, match="it expired at"):
        changes.approve(ledger, early, environment(prod), key=keys["erin"], now=later)
    scope = changes.scope_of(run_request(prod), environment(prod), COMMIT)
    with pytest.raises(ChangeRefused, match=f"change {early.id} expired at"):
        changes.admit(early, environment(prod), scope, later)
    with pytest.raises(ChangeRefused, match="may not run before"):
        changes.admit(early, environment(prod), scope, now - timedelta(minutes=1))
    # A validity beyond the limit is refused when requested.
    with pytest.raises(ChangeRefused, match="at most 14 days"):
        changes.request_change(
            ledger,
            run_request(prod),
            environment(prod),
            reason="r",
            ticket="t",
            not_before=now,
            not_after=now + timedelta(days=15),
            key=keys["alice"],
            scrub=str,
        )


def test_an_approver_removed_from_the_allowed_signers_no_longer_counts(prod, keys, ledger, ran):
    change = request(ledger, prod, keys["alice"])
    changes.approve(ledger, change, environment(prod), key=keys["bob"])
    signers = environment(prod).allowed_signers
    signers.write_text(
        "".join(line + "\n" for line in signers.read_text().splitlines() if "bob@" not in line)
    )
    assert run(ledger, prod, change.id) is None
    assert "bob@example.com's approval does not count" in refusals(ledger)[-1]
    # Another approver's signature makes it whole again.
    changes.approve(ledger, change, environment(prod), key=keys["erin"])
    assert run(ledger, prod, change.id) is not None
    assert len(ran) == 1


def test_an_approval_signed_elsewhere_counts(prod, keys, ledger, ran, tmp_path):
    change = request(ledger, prod, keys["alice"])
    statement = tmp_path / "statement"
    statement.write_text(change.statement())
    sign = ["ssh-keygen", "-q", "-Y", "sign", "-n", "techops-approve@prod"]
    subprocess.run([*sign, "-f", str(keys["erin"]), str(statement)], check=True)
    signature = signing.parse_signature(statement.with_suffix(".sig").read_text())
    changes.approve(ledger, change, environment(prod), signature=signature)
    # The same signature over another change's statement proves nothing.
    other = request(ledger, prod, keys["alice"])
    with pytest.raises(ChangeRefused, match="does not verify"):
        changes.approve(ledger, other, environment(prod), signature=signature)
    assert run(ledger, prod, change.id) is not None


def test_each_approver_counts_once(prod, keys, ledger):
    change = request(ledger, prod, keys["alice"])
    changes.approve(ledger, change, environment(prod), key=keys["bob"])
    with pytest.raises(ChangeRefused, match=r"bob@example\.com has already approved it"):
        changes.approve(ledger, change, environment(prod), key=keys["bob"])


def test_an_auditor_checks_every_signature_from_the_ledger_alone(prod, keys, ledger, tmp_path):
    change = request(ledger, prod, keys["alice"])
    changes.approve(ledger, change, environment(prod), key=keys["bob"])
    # Without any allowed-signers file: only the keys the ledger recorded.
    environment(prod).allowed_signers.unlink()
    loaded = changes.load(ledger, change.id)
    assert [f.ok for f in changes.verify_offline(loaded)] == [True, True]
    # A document edited after signing (a wider limit), or an approval moved onto
    # another document, is found.
    loaded.text = loaded.text.replace('"limit":null', '"limit":"all"')
    findings = changes.verify_offline(loaded)
    assert not findings[0].ok and "does not match the document" in findings[0].detail
    assert not findings[1].ok and "names another document" in findings[1].detail


def test_a_request_by_someone_not_allowed_to_sign_is_refused_and_recorded(prod, keys, ledger):
    with pytest.raises(ChangeRefused, match="the requester's signature is refused"):
        request(ledger, prod, keys["carol"])
    [refused] = [e.body for e in ledger.entries(kinds=[changes.REFUSED])]
    assert refused["step"] == "request"
    assert changes.load_all(ledger) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("alice@example.com", "line 1: too few fields"),
        ("alice@example.com ssh-ed25519 not-base64!", "not valid base64"),
        ('alice@example.com colour="red" ssh-ed25519 AAAA', "unknown option 'colour'"),
        ("alice@example.com ssh-dss AAAAB3NzaC1kc3MAAACBAP", "unknown option 'ssh-dss'"),
        ('alice@example.com namespaces="x ssh-ed25519 AAAA', "unbalanced quotes"),
    ],
)
def test_a_malformed_allowed_signers_file_names_its_line(tmp_path, line, message):
    path = tmp_path / "allowed_signers"
    path.write_text(line + "\n")
    with pytest.raises(SigningError, match=message) as caught:
        signing.read_allowed_signers(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_key_that_lies_about_its_type_is_refused(tmp_path, keys):
    _, blob = public(keys["bob"]).split()
    path = tmp_path / "allowed_signers"
    path.write_text(f"bob@example.com ssh-rsa {blob}\n")
    with pytest.raises(SigningError, match="the key says it is ssh-ed25519, not ssh-rsa"):
        signing.read_allowed_signers(path)


def test_the_command_refuses_a_protected_run_without_a_change(prod, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    why = ("--reason", "r", "--ticket", "t")
    proc = techops("run", "site", "-i", str(prod), *why, "--ledger", url)
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "runs approved changes only" in last and "techops change request" in last
    missing = techops("run", "site", "-i", str(prod), "--change", "chg-nope", "--ledger", url)
    assert missing.returncode == 3, missing.stderr
    assert "there is no change chg-nope in the ledger" in missing.stdout
    decisions = [e.body for e in Ledger.open(url).entries(kinds=[protect.CHANGE_DECISION])]
    assert [d["action"] for d in decisions] == ["refuse", "refuse"]
    assert decisions[1]["change"] == "chg-nope"
    # Check mode changes nothing and needs no change (not run here: it would start Ansible).


def test_the_command_refuses_a_malformed_allowed_signers_file(prod, keys, tmp_path):
    environment(prod).allowed_signers.write_text("bob@example.com ssh-ed25519\n")
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    proc = techops(
        "change", "request", "site", "-i", str(prod), "--reason", "r", "--ticket", "t",
        "--key", str(keys["alice"]), "--ledger", url,
    )  # fmt: skip
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert "allowed_signers line 1: too few fields" in line
    [refused] = [e.body for e in Ledger.open(url).entries(kinds=[changes.REFUSED])]
    assert refused["step"] == "request"


def test_the_command_refuses_a_missing_key_and_a_change_for_an_unprotected_inventory(
    prod, tmp_path
):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    nokey = techops(
        "change", "request", "site", "-i", str(prod), "--reason", "r", "--ticket", "t",
        "--key", str(tmp_path / "nothing"), "--ledger", url,
    )  # fmt: skip
    assert nokey.returncode == 5
    assert "signing key" in nokey.stderr and "does not exist" in nokey.stderr
    lab = techops(
        "change", "request", "site", "-i", "web9,", "--reason", "r", "--ticket", "t",
        "--ledger", url,
    )  # fmt: skip
    assert lab.returncode == 5 and "is in no protected environment" in lab.stderr


def test_uncommitted_ansible_content_cannot_be_approved(tmp_path, monkeypatch):
    monkeypatch.undo()
    repo = tmp_path / "repo"
    (repo / "roles").mkdir(parents=True)
    (repo / "roles" / "main.yml").write_text("---\n")
    (repo / "notes.txt").write_text("scratch\n")

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "roles")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    assert len(changes.git_commit(repo)) == 40  # an untracked note is not Ansible content
    (repo / "roles" / "main.yml").write_text("---\n- debug: {}\n")
    with pytest.raises(ChangeRefused, match=r"uncommitted changes in the Ansible content"):
        changes.git_commit(repo)
    with pytest.raises(ChangeRefused, match="not a git checkout"):
        changes.git_commit(tmp_path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("protected: false, approvals: 1", "approvals apply to protected environments only"),
        ("protected: true, approvals: -1", "approvals must be a whole number"),
        ("protected: true, approvals: yes", "approvals must be a whole number"),
    ],
)
def test_malformed_approval_settings_are_one_line(tmp_path, extra, message):
    path = tmp_path / "environments.yml"
    path.write_text(f"environments:\n  - {{name: p, inventories: [x], {extra}}}\n")
    with pytest.raises(UserError, match=message):
        load(path)


def test_a_check_run_needs_no_change(prod, ledger, ran):
    result = protect.run_protected(run_request(prod, check=True), ledger, environment(prod), Why())
    assert result is not None and len(ran) == 1


def test_reason_and_ticket_come_from_the_change(prod, keys, ledger, ran):
    change = request(ledger, prod, keys["alice"])
    changes.approve(ledger, change, environment(prod), key=keys["bob"])
    result = protect.run_protected(
        run_request(prod), ledger, environment(prod), Why(ticket="CHG-9"), change_id=change.id
    )
    assert result is None
    assert "--ticket 'CHG-9' is not the change's ('CHG-2041')" in refusals(ledger)[-1]
    with pytest.raises(BadOptions):
        protect.run_protected(run_request(prod), ledger, environment(prod), Why())


def test_the_run_report_names_the_requester_and_the_approver(prod, keys, ledger, ran):
    change = request(ledger, prod, keys["alice"])
    approval = changes.approve(ledger, change, environment(prod), key=keys["bob"])
    admitted = run_request(prod)
    protect.run_protected(admitted, ledger, environment(prod), Why(), change_id=change.id)
    # The faked run wrote nothing: record it as a real one would, under the same id.
    add_run(ledger, admitted.run_id, {"app1": "ok"})
    for fmt in ("html", "md"):
        text = run_report(ledger, admitted.run_id, fmt)
        assert "Change control" in text and change.id in text
        assert "alice@example.com" in text and change.requester["fingerprint"] in text
        assert "bob@example.com" in text and approval.fingerprint in text
    data = json.loads(run_report(ledger, admitted.run_id, "json"))
    assert data["decision"]["approved_by"][0]["fingerprint"] == approval.fingerprint


def test_what_the_ledger_says_of_a_signer_is_not_believed(prod, keys, ledger, ran):
    """Whoever can append to the ledger can write any principal or fingerprint into an
    entry: the requester's own key, recorded as someone else's approval, does not count."""
    change = request(ledger, prod, keys["alice"])
    signature = signing.sign(
        change.statement().encode(), keys["alice"], changes.approve_namespace("prod")
    )
    ledger.append(
        changes.APPROVED,
        change.id,
        {
            "change": change.id,
            "statement": change.statement(),
            "signature": signature.armored,
            "approved_by": {"principal": "bob@example.com", "fingerprint": "SHA256:forged"},
        },
    )
    assert run(ledger, prod, change.id) is None
    assert "alice@example.com is the requester" in refusals(ledger)[-1]
    assert ran == []


def test_namespaces_with_several_patterns_are_one_option(tmp_path, keys):
    path = tmp_path / "allowed_signers"
    path.write_text(
        'bob@example.com namespaces="techops-*@production,techops-*@staging" '
        + public(keys["bob"])
        + "\n"
    )
    [signer] = signing.read_allowed_signers(path)
    assert signer.namespaces == ("techops-*@production", "techops-*@staging")
    assert signer.allows("techops-approve@staging") and not signer.allows("techops-approve@lab")


def test_a_check_run_looks_with_committed_content_only(prod, ledger, ran, tmp_path, monkeypatch):
    """A task with check_mode: false runs for real in check mode: a playbook from elsewhere
    does not look at a protected environment, nor do roles or modules from elsewhere."""
    elsewhere = tmp_path / "look.yml"
    elsewhere.write_text("- hosts: all\n  tasks: []\n")
    request_ = RunRequest(playbook=elsewhere, inventory=str(prod), check=True)
    assert protect.run_protected(request_, ledger, environment(prod), Why()) is None
    assert "runs committed playbooks only" in refusals(ledger)[-1]
    monkeypatch.setenv("ANSIBLE_ROLES_PATH", str(tmp_path))
    with pytest.raises(BadOptions, match="ANSIBLE_ROLES_PATH would change what runs"):
        protect.run_protected(run_request(prod, check=True), ledger, environment(prod), Why())
    assert ran == []


def test_a_copy_of_a_protected_inventory_is_protected(prod, tmp_path):
    copy = tmp_path / "elsewhere" / "hosts.yml"
    copy.parent.mkdir()
    copy.write_text(prod.read_text())
    found = environment_of(str(copy), load())
    assert found is not None and found.name == "prod"
    unrelated = tmp_path / "other.yml"
    unrelated.write_text("all:\n  hosts:\n    web9: {ansible_host: 198.51.100.9}\n")
    assert environment_of(str(unrelated), load()) is None


def test_an_override_reason_is_plain_text(tmp_path):
    proc = techops(
        "run", "site", "-i", "web9,", "--override-reason", "now {{ lookup('pipe', 'id') }}",
        "--ledger", f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
    )  # fmt: skip
    assert proc.returncode == 5 and "must be plain text" in proc.stderr
