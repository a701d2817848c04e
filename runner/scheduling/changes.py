"""Signed changes: the two-person rule for protected environments that require approvals.

An engineer requests a change: a document naming exactly what will run (playbook,
inventory and its digest, limit, tags, the digest of the extra vars, the git commit), why
(reason, ticket) and when (not before, not after), signed with their own SSH key. Someone
else approves it by signing a statement that names the document's digest and the
requester's key. `techops run --change ID` then runs only that: every field is compared
with the run about to start, every signature is checked again against today's
allowed-signers file (a key removed since no longer counts), and the approvals must come
from people other than the requester.

The ledger keeps each document and signature as signed, with the signer's public key, so
an auditor can check every signature from the ledger alone (`verify_offline`).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.core.errors import UserError
from runner.core.identity import real_user
from runner.core.inventory import inventory_digest
from runner.core.paths import repo_relative, repo_root
from runner.execution.request import RunRequest
from runner.ledger.store import Ledger, canonical
from runner.scheduling import signing
from runner.scheduling.environments import Environment
from runner.scheduling.signing import Signature, SigningError

REQUESTED = "change.requested"
APPROVED = "change.approved"
REFUSED = "change.refused"
RAN = "change.ran"
KINDS = (REQUESTED, APPROVED, REFUSED, RAN)
DOCUMENT_TYPE = "techops-change/v1"
STATEMENT_TYPE = "techops-approval/v1"
DEFAULT_VALIDITY = timedelta(hours=24)
# An approval is for a planned change, not a standing permission.
MAX_VALIDITY = timedelta(days=14)
# What a change pins, in the order a mismatch is reported.
SCOPE_FIELDS = (
    "environment",
    "playbook",
    "playbook_sha256",
    "inventory",
    "inventory_sha256",
    "limit",
    "tags",
    "skip_tags",
    "extravars_sha256",
    "commit",
)
# The content whose uncommitted edits would make "the approved commit" mean nothing, and
# the files that say who may approve what (edited locally, they would approve anything).
CONTENT = (
    "ansible.cfg",
    "playbooks",
    "roles",
    "collections",
    "plugins",
    "allowed_signers",
    "environments.yml",
    "schedules.yml",
)


class ChangeRefused(UserError):
    """A change that may not be requested, approved or run: one line saying why."""


def request_namespace(environment: str) -> str:
    return f"techops-request@{environment}"


def approve_namespace(environment: str) -> str:
    return f"techops-approve@{environment}"


# ---------------------------------------------------------------------- what a run is
def scope_of(request: RunRequest, environment: Environment, commit: str) -> dict[str, Any]:
    """The fields of a run that a change pins."""
    root = repo_root()
    return {
        "environment": environment.name,
        "playbook": _pinned(request.playbook, root),
        # The commit pins the repository's content; this pins a playbook kept elsewhere.
        "playbook_sha256": hashlib.sha256(request.playbook.read_bytes()).hexdigest(),
        "inventory": _pinned(Path(request.inventory), root),
        "inventory_sha256": inventory_digest(request.inventory),
        "limit": request.limit,
        "tags": request.tags,
        "skip_tags": request.skip_tags,
        "extravars_sha256": extravars_digest(request.extravars),
        "commit": commit,
    }


def extravars_digest(extravars: dict[str, Any]) -> str:
    """sha256 of the extra vars, canonical: the document pins them without holding them
    (secrets belong in the vault, not in extra vars)."""
    return hashlib.sha256(canonical(extravars).encode()).hexdigest()


def git_commit(root: Path | None = None) -> str:
    """The commit the content will run from; ChangeRefused while the Ansible content has
    uncommitted edits, since the approval could not say what runs."""
    root = root or repo_root()

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )

    try:
        head = git("rev-parse", "--verify", "HEAD")
    except FileNotFoundError:
        raise ChangeRefused("git is not installed: a change pins the commit it runs") from None
    if head.returncode != 0:
        raise ChangeRefused(f"{root} is not a git checkout with a commit: a change pins one")
    dirty = git("status", "--porcelain", "--", *CONTENT)
    if dirty.stdout.strip():
        first = dirty.stdout.strip().splitlines()[0][3:]
        raise ChangeRefused(
            f"uncommitted changes in the Ansible content (e.g. {first}): commit them, so "
            "that the change names what runs"
        )
    return head.stdout.strip()


# Settings that make Ansible take roles, collections, modules, plugins or its whole
# configuration from elsewhere than the repository (techops sets ANSIBLE_CONFIG itself):
# on a protected environment, what runs must be the committed content a reason, a ticket
# or a signed change speaks for.
CONTENT_VARIABLES = re.compile(
    r"^(ANSIBLE_(ROLES_PATH|COLLECTIONS_PATHS?|LIBRARY|MODULE_UTILS|PLAYBOOK_VARS_ROOT"
    r"|[A-Z]+_PLUGINS|VARS_ENABLED|INVENTORY_ENABLED)|TECHOPS_ANSIBLE_CONFIG)$"
)


def content_overrides(env: Mapping[str, str]) -> list[str]:
    """The variables of `env` that would change what a protected run runs."""
    return sorted(name for name, value in env.items() if value and CONTENT_VARIABLES.match(name))


def check_refused(playbook: Path, root: Path | None = None) -> str | None:
    """Why a check-mode run of this playbook may not look at a protected environment, or
    None. Check mode changes nothing only as far as the content says so (a task with
    `check_mode: false` runs for real), so a check run there runs committed content only:
    a playbook of the repository, tracked and unmodified, with clean Ansible content."""
    root = root or repo_root()
    try:
        relative = playbook.resolve().relative_to(root)
    except ValueError:
        return (
            f"{playbook} is not in the repository: a check run on a protected environment "
            "runs committed playbooks only (a task with check_mode: false runs for real)"
        )
    try:
        git_commit(root)
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--error-unmatch", "--", str(relative)],
            capture_output=True,
            text=True,
            check=False,
        )
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", str(relative)],
            capture_output=True,
            text=True,
            check=False,
        )
    except ChangeRefused as exc:
        return f"{exc} (a check run on a protected environment runs committed content only)"
    if listed.returncode != 0 or changed.stdout.strip():
        return (
            f"{relative} is not committed as it is: a check run on a protected environment "
            "runs committed playbooks only (a task with check_mode: false runs for real)"
        )
    return None


# ---------------------------------------------------------------------- the ledger's view
@dataclass
class Approval:
    principal: str
    fingerprint: str
    statement: str
    signature: Signature
    seq: int
    created: str


@dataclass
class Change:
    """A change as the ledger records it."""

    id: str
    text: str  # the document exactly as signed
    document: dict[str, Any]
    signature: Signature
    requester: dict[str, str]  # principal, fingerprint, key
    seq: int
    approvals: list[Approval] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def environment(self) -> str:
        return str(self.document["environment"])

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def succeeded(self) -> dict[str, Any] | None:
        return next((r for r in self.runs if r.get("status") == "successful"), None)

    def statement(self) -> str:
        """What an approver signs: this document, requested by this key (the key the
        request's signature carries, not what the ledger says of it)."""
        return canonical(
            {
                "type": STATEMENT_TYPE,
                "change": self.id,
                "document_sha256": self.digest,
                "requested_by": self.signature.fingerprint,
            }
        )

    def status(self, required: int, now: datetime) -> str:
        if self.succeeded:
            return "done"
        if now > _instant(self.document["not_after"]):
            return "expired"
        approvers = {a.principal for a in self.approvals}
        return "approved" if len(approvers) >= required else "awaiting approval"

    def command(self) -> str:
        """The `techops run` that this change allows."""
        doc = self.document
        parts = ["techops run", doc["playbook"], "-i", doc["inventory"]]
        for option, key in (("-l", "limit"), ("-t", "tags"), ("--skip-tags", "skip_tags")):
            if doc.get(key):
                parts += [option, _quote(doc[key])]
        if doc["extravars_sha256"] != extravars_digest({}):
            parts.append("-e … (the same extra vars)")
        return " ".join([*parts, "--change", self.id])


def load(ledger: Ledger, change_id: str) -> Change | None:
    found: Change | None = None
    for entry in ledger.entries(run_id=change_id, kinds=[REQUESTED, APPROVED, RAN]):
        body = entry.body
        if entry.kind == REQUESTED and found is None:
            found = Change(
                id=change_id,
                text=body["document"],
                document=json.loads(body["document"]),
                signature=signing.parse_signature(body["signature"]),
                requester=body["requested_by"],
                seq=entry.seq,
            )
        elif entry.kind == APPROVED and found is not None:
            found.approvals.append(
                Approval(
                    principal=body["approved_by"]["principal"],
                    fingerprint=body["approved_by"]["fingerprint"],
                    statement=body["statement"],
                    signature=signing.parse_signature(body["signature"]),
                    seq=entry.seq,
                    created=entry.created,
                )
            )
        elif entry.kind == RAN and found is not None:
            found.runs.append(body)
    return found


def load_all(ledger: Ledger) -> list[Change]:
    ids = []
    for entry in ledger.entries(kinds=[REQUESTED]):
        if entry.run_id not in ids:
            ids.append(entry.run_id)
    return [c for c in (load(ledger, i) for i in ids) if c is not None]


def refuse(ledger: Ledger, change_id: str, step: str, reason: str, **details: Any) -> ChangeRefused:
    """Record a refusal and return the error to raise: nothing is refused off the record."""
    ledger.append(
        REFUSED,
        change_id,
        {
            "change": change_id,
            "step": step,
            "reason": reason,
            "who": real_user(),
            "controller": socket.gethostname(),
            **details,
        },
    )
    return ChangeRefused(f"change {change_id}: {reason}; the refusal is recorded")


# ---------------------------------------------------------------------- request
def request_change(
    ledger: Ledger,
    request: RunRequest,
    environment: Environment,
    *,
    reason: str,
    ticket: str,
    not_before: datetime,
    not_after: datetime,
    key: Path,
    scrub: Callable[[str], str],
    commit: str | None = None,
    now: datetime | None = None,
) -> Change:
    """Sign and record a change request; ChangeRefused (recorded) when it cannot be."""
    now = now or datetime.now(UTC)
    change_id = f"chg-{now:%Y%m%d}-{secrets.token_hex(4)}"
    if environment.allowed_signers is None or not environment.approvals:
        raise ChangeRefused(
            f"environment {environment.name} requires no approval (environments.yml): "
            "run it with --reason and --ticket"
        )
    if not_after <= not_before:
        raise ChangeRefused("--not-after must be later than --not-before")
    if not_after <= now:
        raise ChangeRefused(f"--not-after {not_after.isoformat()} is already past")
    if not_after - max(not_before, now) > MAX_VALIDITY:
        raise ChangeRefused(
            f"a change may be valid for at most {MAX_VALIDITY.days} days: shorten --not-after"
        )
    try:
        signers = signing.read_allowed_signers(environment.allowed_signers)
    except SigningError as exc:
        raise refuse(ledger, change_id, "request", str(exc)) from None
    document = {
        "type": DOCUMENT_TYPE,
        "id": change_id,
        **scope_of(request, environment, commit or git_commit()),
        "reason": scrub(reason),
        "ticket": scrub(ticket),
        "not_before": not_before.astimezone(UTC).isoformat(),
        "not_after": not_after.astimezone(UTC).isoformat(),
        "requested_at": now.isoformat(),
    }
    text = canonical(document)
    namespace = request_namespace(environment.name)
    signature = signing.sign(text.encode(), key, namespace)
    try:
        signer = signing.verify(
            text.encode(), signature, environment.allowed_signers, signers, namespace
        )
    except SigningError as exc:
        raise refuse(
            ledger, change_id, "request", f"the requester's signature is refused: {exc}"
        ) from None
    requester = {
        "principal": signer.principals[0],
        "fingerprint": signature.fingerprint,
        "key": signature.public_key,
    }
    entry = ledger.append(
        REQUESTED,
        change_id,
        {
            "change": change_id,
            "document": text,
            "signature": signature.armored,
            "requested_by": requester,
            "who": real_user(),
            "controller": socket.gethostname(),
        },
    )
    return Change(change_id, text, document, signature, requester, entry.seq)


# ---------------------------------------------------------------------- approve
def approve(
    ledger: Ledger,
    change: Change,
    environment: Environment,
    *,
    key: Path | None = None,
    signature: Signature | None = None,
    now: datetime | None = None,
) -> Approval:
    """Check and record an approval: a signature made here with `key`, or one made
    elsewhere (`ssh-keygen -Y sign` over `techops change show ID --statement`)."""
    now = now or datetime.now(UTC)
    assert environment.allowed_signers is not None
    namespace = approve_namespace(change.environment)
    statement = change.statement()
    try:
        signers = signing.read_allowed_signers(environment.allowed_signers)
        requester = _check_request(change, environment, signers)
    except SigningError as exc:
        raise refuse(ledger, change.id, "approve", str(exc)) from None
    if change.succeeded:
        raise refuse(
            ledger,
            change.id,
            "approve",
            f"it already ran successfully as run {change.succeeded['run_id']}",
        )
    if now > _instant(change.document["not_after"]):
        raise refuse(
            ledger,
            change.id,
            "approve",
            f"it expired at {change.document['not_after']}: request a new change",
        )
    if signature is None:
        assert key is not None
        signature = signing.sign(statement.encode(), key, namespace)
    details = {"fingerprint": signature.fingerprint}
    try:
        signer = signing.verify(
            statement.encode(), signature, environment.allowed_signers, signers, namespace
        )
    except SigningError as exc:
        raise refuse(ledger, change.id, "approve", f"approval refused: {exc}", **details) from None
    principal = signer.principals[0]
    if (
        signature.fingerprint == change.signature.fingerprint
        or principal == requester.principals[0]
    ):
        raise refuse(
            ledger,
            change.id,
            "approve",
            f"{principal} requested this change and cannot approve it: a second person "
            "must (two-person rule)",
            principal=principal,
            **details,
        )
    if any(a.principal == principal for a in change.approvals):
        raise refuse(
            ledger,
            change.id,
            "approve",
            f"{principal} has already approved it: each approver counts once",
            principal=principal,
            **details,
        )
    approved_by = {
        "principal": principal,
        "fingerprint": signature.fingerprint,
        "key": signature.public_key,
    }
    entry = ledger.append(
        APPROVED,
        change.id,
        {
            "change": change.id,
            "statement": statement,
            "signature": signature.armored,
            "approved_by": approved_by,
            "who": real_user(),
            "controller": socket.gethostname(),
        },
    )
    approval = Approval(
        principal, signature.fingerprint, statement, signature, entry.seq, entry.created
    )
    change.approvals.append(approval)
    return approval


def _check_request(change: Change, environment: Environment, signers: list) -> signing.Signer:
    """The request's signature, against today's allowed signers."""
    assert environment.allowed_signers is not None
    try:
        signer = signing.verify(
            change.text.encode(),
            change.signature,
            environment.allowed_signers,
            signers,
            request_namespace(change.environment),
        )
    except SigningError as exc:
        raise SigningError(f"the request's signature no longer holds: {exc}") from None
    return signer


# ---------------------------------------------------------------------- run
def admit(
    change: Change,
    environment: Environment,
    scope: dict[str, Any],
    now: datetime,
) -> list[dict[str, str]]:
    """The approvers that let this run go ahead, or ChangeRefused naming the first
    reason it may not (the caller records it)."""
    assert environment.allowed_signers is not None
    if change.environment != environment.name:
        raise ChangeRefused(
            f"change {change.id} is for environment {change.environment}, not {environment.name}"
        )
    mismatched = [
        f"{name}: approved {change.document.get(name)!r}, this run {scope.get(name)!r}"
        for name in SCOPE_FIELDS
        if change.document.get(name) != scope.get(name)
    ]
    if mismatched:
        raise ChangeRefused(
            f"this run is not what change {change.id} approved ({'; '.join(mismatched)}): "
            f"run exactly `{change.command()}`, or request a new change"
        )
    if now < _instant(change.document["not_before"]):
        raise ChangeRefused(
            f"change {change.id} may not run before {change.document['not_before']}"
        )
    if now > _instant(change.document["not_after"]):
        raise ChangeRefused(
            f"change {change.id} expired at {change.document['not_after']}: request a new one"
        )
    if change.succeeded:
        raise ChangeRefused(
            f"change {change.id} already ran successfully as run "
            f"{change.succeeded['run_id']}: request a new change"
        )
    try:
        signers = signing.read_allowed_signers(environment.allowed_signers)
        requester = _check_request(change, environment, signers)
    except SigningError as exc:
        raise ChangeRefused(f"change {change.id}: {exc}") from None
    # Who asked and who approved are what the signatures prove against today's allowed
    # signers, never the principals or fingerprints the ledger's entries state: whoever
    # can append to the ledger could write those.
    requested_by = (requester.principals[0], change.signature.fingerprint)
    valid: dict[str, dict[str, str]] = {}
    problems = []
    namespace = approve_namespace(change.environment)
    for approval in change.approvals:
        try:
            if approval.statement != change.statement():
                raise SigningError("it approves another document")
            signer = signing.verify(
                approval.statement.encode(),
                approval.signature,
                environment.allowed_signers,
                signers,
                namespace,
            )
        except SigningError as exc:
            problems.append(f"{approval.principal}'s approval does not count ({exc})")
            continue
        principal, fingerprint = signer.principals[0], approval.signature.fingerprint
        if principal == requested_by[0] or fingerprint == requested_by[1]:
            problems.append(f"{principal} is the requester")
            continue
        valid.setdefault(
            principal,
            {"principal": principal, "fingerprint": fingerprint, "seq": str(approval.seq)},
        )
    if len(valid) < environment.approvals:
        said = f": {'; '.join(problems)}" if problems else ""
        raise ChangeRefused(
            f"change {change.id} has {len(valid)} of the {environment.approvals} approval(s) "
            f"environment {environment.name} requires{said}; ask another approver to run "
            f"`techops change approve {change.id}`"
        )
    return list(valid.values())


# ---------------------------------------------------------------------- audit
@dataclass(frozen=True)
class Finding:
    change: str
    what: str
    ok: bool
    detail: str


def verify_offline(change: Change) -> list[Finding]:
    """Every signature of a change, checked with the keys the ledger recorded and
    nothing else: what an auditor does on a machine with the ledger alone."""
    findings = []
    sound = signing.check(
        change.text.encode(), change.signature, request_namespace(change.environment)
    )
    key_matches = change.signature.fingerprint == change.requester["fingerprint"]
    findings.append(
        Finding(
            change.id,
            f"request by {change.requester['principal']}",
            sound and key_matches,
            f"{change.requester['fingerprint']}"
            + ("" if sound else ": the signature does not match the document")
            + ("" if key_matches else ": signed by another key than recorded"),
        )
    )
    for approval in change.approvals:
        sound = signing.check(
            approval.statement.encode(),
            approval.signature,
            approve_namespace(change.environment),
        )
        names = approval.statement == change.statement()
        distinct = approval.signature.fingerprint != change.signature.fingerprint and (
            approval.principal != change.requester["principal"]
        )
        key_matches = approval.signature.fingerprint == approval.fingerprint
        problems = [
            text
            for ok, text in (
                (sound, "the signature does not match the statement"),
                (names, "the statement names another document or requester"),
                (distinct, "the approver is the requester"),
                (key_matches, "signed by another key than recorded"),
            )
            if not ok
        ]
        findings.append(
            Finding(
                change.id,
                f"approval by {approval.principal}",
                not problems,
                approval.fingerprint + "".join(f": {p}" for p in problems),
            )
        )
    return findings


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _pinned(path: Path, root: Path) -> str:
    """A path as a change pins it: relative to the repository, else absolute when it
    exists, so that the same file is named the same from any working directory."""
    return repo_relative(path.resolve() if path.exists() else path, root)


def _quote(value: str) -> str:
    return value if value.replace(",", "").replace(":", "").isalnum() else json.dumps(value)
