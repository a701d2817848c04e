"""`techops audit` as an auditor uses it: keygen, checkpoint, verify, prune, through the CLI."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.cli.audit import keygen
from runner.core.errors import UserError
from runner.ledger.store import Ledger, entries
from tests.helpers import techops


def audit(*args: str, ledger: str) -> subprocess.CompletedProcess[str]:
    return techops("audit", *args, "--ledger", ledger)


def seeded(tmp_path: Path, runs: int = 4) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger.open(url)
    for i in range(runs):
        rows = [
            {"run_id": f"r{i}", "counter": 1, "event": "runner_on_ok", "host": "h", "data": "{}"}
        ]
        ledger.append("run.started", f"r{i}", {"playbook": "site.yml"}, event_rows=rows)
    ledger.close()
    return url


def tamper(url: str, statement) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(statement)
    engine.dispose()


def test_keygen_checkpoint_and_verify_with_checkpoints_kept_elsewhere(tmp_path):
    url = seeded(tmp_path)
    key = tmp_path / "keys" / "checkpoint.key"
    kept = tmp_path / "elsewhere" / "checkpoints.jsonl"
    kept.parent.mkdir()
    made = audit("keygen", "--key", str(key), ledger=url)
    assert made.returncode == 0, made.stderr
    assert key.stat().st_mode & 0o077 == 0  # the private key is the owner's only
    assert audit("keygen", "--key", str(key), ledger=url).returncode == 1  # never overwritten
    signed = audit("checkpoint", "--key", str(key), "--checkpoints", str(kept), ledger=url)
    assert signed.returncode == 0, signed.stderr
    assert "checkpoint: entry 4" in signed.stdout
    pub = key.with_suffix(".pub")
    ok = audit("verify", "--public-key", str(pub), "--checkpoints", str(kept), ledger=url)
    assert ok.returncode == 0, ok.stderr
    assert "4 entries verify" in ok.stdout and "2 checkpoint(s) match" in ok.stdout
    assert "signatures checked with public key" in ok.stdout
    unsigned = audit("verify", ledger=url)
    assert "1 checkpoint(s) match; signatures not checked" in unsigned.stdout

    # Truncated past the checkpoint: the stored checkpoint and the kept copy both say so.
    tamper(url, entries.delete().where(entries.c.seq >= 3))
    bad = audit("verify", "--public-key", str(pub), "--checkpoints", str(kept), ledger=url)
    assert bad.returncode == 3
    assert "truncated" in bad.stderr and "DOES NOT VERIFY" in bad.stderr


def test_verify_names_the_altered_entry(tmp_path):
    url = seeded(tmp_path)
    tamper(url, entries.update().where(entries.c.seq == 2).values(body='{"playbook":"evil.yml"}'))
    bad = audit("verify", ledger=url)
    assert bad.returncode == 3
    assert "entry 2 (run r1, run.started) was altered" in bad.stderr


def test_prune_keeps_the_chain_valid(tmp_path):
    url = seeded(tmp_path, runs=1)
    ledger = Ledger.open(url)
    ledger.append(
        "run.finished",
        "r0",
        {"status": "successful", "events": {"count": 1, "sha256": "0" * 64}},
    )
    ledger.close()
    assert audit("prune", ledger=url).returncode == 1  # needs --before
    pruned = audit("prune", "--before", "2999-01-01", ledger=url)
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned the event detail of 1 run(s)" in pruned.stdout
    assert audit("verify", ledger=url).returncode == 0


def test_bad_audit_input_is_one_clear_line(tmp_path):
    url = seeded(tmp_path)
    junk = tmp_path / "checkpoints.jsonl"
    junk.write_text('{"seq": 1, "hash": "x"}\nnot json\n')
    for args, message in (
        (("verify", "--checkpoints", str(junk)), f"{junk}:2: not a checkpoint"),
        (("verify", "--public-key", str(tmp_path / "none.pub")), "public key"),
        (("checkpoint", "--key", str(tmp_path / "none.key")), "signing key"),
    ):
        proc = audit(*args, ledger=url)
        assert proc.returncode == 1, proc.stderr
        assert message in proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_refuses_a_private_key_named_like_a_public_one(tmp_path):
    pub = tmp_path / "x.pub"
    proc = audit("keygen", "--key", str(pub), ledger=seeded(tmp_path))
    assert proc.returncode == 1
    assert f"{pub} ends in .pub" in proc.stderr and "--key" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not pub.exists()


@pytest.mark.parametrize("existing", ["checkpoint.key", "checkpoint.pub"])
def test_keygen_refuses_when_either_key_file_exists(tmp_path, existing):
    (tmp_path / existing).write_text("kept\n")
    with pytest.raises(UserError, match=f"{tmp_path / existing} exists: refusing to overwrite"):
        keygen(tmp_path / "checkpoint.key")
    assert (tmp_path / existing).read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # nothing else written


def test_keygen_writes_a_private_key_0600_in_new_directories_0700(tmp_path):
    old = os.umask(0o022)
    try:
        tmp_path.chmod(0o755)
        key = tmp_path / "secure" / "place" / "checkpoint.key"
        assert keygen(key) == 0
    finally:
        os.umask(old)
    assert mode(key) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key.with_suffix(".pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert mode(tmp_path / "secure") == mode(tmp_path / "secure" / "place") == 0o700
    assert mode(tmp_path) == 0o755  # there before: left as it was
