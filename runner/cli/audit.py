"""Tamper evidence of the ledger."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from runner.cli.common import Command, open_ledger
from runner.core.dates import parse_date
from runner.core.errors import UserError
from runner.core.paths import PRIVATE_FILE, private_dirs
from runner.ledger.retention import prune_detail
from runner.ledger.store import Ledger, generate_keypair

COMMAND = Command("audit", "verify the ledger, sign checkpoints", ledger=True)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["verify", "checkpoint", "keygen", "prune"])
    parser.add_argument(
        "--before",
        help="prune: remove stored event detail of runs ended before this date (run records stay)",
    )
    parser.add_argument(
        "--key",
        default=".techops/audit/checkpoint.key",
        help="checkpoint/keygen: the ed25519 signing key (PEM)",
    )
    parser.add_argument("--public-key", help="verify: check checkpoint signatures with this key")
    parser.add_argument(
        "--checkpoints",
        help="checkpoint: also append to this file; verify: "
        "checkpoints kept elsewhere (JSON lines) to check against",
    )


def handle(args: argparse.Namespace) -> int:
    if args.action == "keygen":
        return keygen(Path(args.key))
    ledger = open_ledger(args)
    if args.action == "checkpoint":
        return checkpoint(ledger, Path(args.key), args.checkpoints)
    if args.action == "prune":
        return prune(ledger, args.before)
    return verify(ledger, args.checkpoints, args.public_key)


def keygen(key: Path) -> int:
    """Write a new signing key (owner-only, created atomically) and its public half beside
    it, as KEY's name with .pub. Refuses to touch an existing file of either: a key that
    signed checkpoints is never lost, and a public key given to auditors never changes."""
    if not key.name or key.name in (".", ".."):
        raise UserError(
            f"--key {key} names no file: give the private key's path, e.g. keys/checkpoint.key"
        )
    if key.suffix == ".pub":
        raise UserError(
            f"{key} ends in .pub, the public key's name: give the private key another name, "
            f"e.g. --key {key.with_suffix('.key')}"
        )
    public_path = key.with_suffix(".pub")
    for path in (key, public_path):
        if path.exists() or path.is_symlink():
            raise UserError(f"{path} exists: refusing to overwrite a key; move it away first")
    try:
        private_dirs(key.parent)
    except OSError as exc:
        raise UserError(f"cannot create the key's directory {key.parent}: {exc.strerror}") from None
    private, public = generate_keypair()
    _write_new(key, private, PRIVATE_FILE)
    try:
        _write_new(public_path, public, 0o644)
    except UserError:
        key.unlink()  # no private key without the public half that checks its signatures
        raise
    print(f"wrote {key} (keep it private) and {public_path} (give it to auditors)")
    return 0


def _write_new(path: Path, content: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start and write `content`; never replace a file
    (O_EXCL: one that appeared since the check is refused, a symlink is not followed)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UserError(f"{path} exists: refusing to overwrite a key; move it away first") from None
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())


def checkpoint(ledger: Ledger, key: Path, also_to: str | None) -> int:
    if not key.is_file():
        raise UserError(f"signing key {key} not found: create one with techops audit keygen")
    cp = ledger.checkpoint(key.read_bytes())
    if also_to:
        with open(also_to, "a") as out:
            out.write(json.dumps(cp, sort_keys=True) + "\n")
    print(f"checkpoint: entry {cp['seq']} {cp['hash']} signed by key {cp['key_id']}")
    return 0


def prune(ledger: Ledger, before: str | None) -> int:
    if not before:
        raise UserError("prune needs --before DATE: detail of runs ended before it is removed")
    body = prune_detail(ledger, parse_date(before))
    if body is None:
        print("nothing to prune")
    else:
        print(
            f"pruned the event detail of {len(body['runs'])} run(s) "
            f"({body['rows_deleted']} rows); tombstone appended to the ledger"
        )
    return 0


def read_checkpoints(name: str) -> list[dict[str, Any]]:
    """Checkpoints kept elsewhere: one JSON object a line."""
    path = Path(name)
    if not path.is_file():
        raise UserError(f"checkpoints file {path} not found")
    trusted: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found = json.loads(line)
        except ValueError:
            raise UserError(f"{path}:{number}: not a checkpoint (one JSON object a line)") from None
        if not isinstance(found, dict) or not {"seq", "hash"} <= found.keys():
            raise UserError(f"{path}:{number}: a checkpoint needs seq, hash and a signature")
        trusted.append(found)
    return trusted


def verify(ledger: Ledger, checkpoints: str | None, public_key: str | None) -> int:
    trusted = read_checkpoints(checkpoints) if checkpoints else []
    public = None
    if public_key:
        if not Path(public_key).is_file():
            raise UserError(f"public key {public_key} not found")
        public = Path(public_key).read_bytes()
    result = ledger.verify(trusted, public)
    if result.ok:
        if result.signatures_checked:
            signatures = f"signatures checked with public key {result.public_key_id}"
        elif result.checkpoints_checked:
            signatures = "signatures not checked (give --public-key)"
        else:
            signatures = "the chain is checked against itself only (see techops audit checkpoint)"
        print(
            f"ledger {ledger.where}: {result.entries} entries verify; head entry "
            f"{result.head_seq} {result.head_hash}; {result.checkpoints_checked} "
            f"checkpoint(s) match; {signatures}"
        )
        return 0
    reason = result.problem.reason if result.problem else "unknown"
    print(f"ledger {ledger.where}: DOES NOT VERIFY: {reason}", file=sys.stderr)
    return 3
