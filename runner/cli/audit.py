"""Tamper evidence of the ledger."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from runner.cli.common import Command, open_ledger
from runner.core.dates import parse_date
from runner.core.errors import UserError
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
    private, public = generate_keypair()
    if key.exists():
        raise UserError(f"{key} exists: refusing to overwrite a signing key")
    key.parent.mkdir(parents=True, exist_ok=True)
    key.touch(mode=0o600)
    key.write_bytes(private)
    key.with_suffix(".pub").write_bytes(public)
    print(f"wrote {key} (keep it private) and {key.with_suffix('.pub')} (give it to auditors)")
    return 0


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
        print(
            f"ledger {ledger.where}: {result.entries} entries verify; head entry "
            f"{result.head_seq} {result.head_hash}; {result.checkpoints_checked} "
            "checkpoint(s) match"
        )
        return 0
    reason = result.problem.reason if result.problem else "unknown"
    print(f"ledger {ledger.where}: DOES NOT VERIFY: {reason}", file=sys.stderr)
    return 3
