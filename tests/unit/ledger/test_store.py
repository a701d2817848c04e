"""The ledger's chain: each kind of tampering is caught and named."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import stat
import subprocess

import pytest
import sqlalchemy as sa

from runner.core.errors import UserError
from runner.ledger import store as ledger_mod
from runner.ledger.store import AlreadyRecorded, Ledger, entries, generate_keypair


def fill(ledger: Ledger, n: int = 6) -> None:
    for i in range(n):
        ledger.append("run.started", f"run-{i}", {"i": i, "text": f"entry {i} é"})


def sql(ledger: Ledger, statement, **params) -> None:
    with ledger.engine.connect().execution_options(techops_write=True) as conn, conn.begin():
        conn.execute(statement, params)


def test_a_fresh_chain_verifies(ledger):
    fill(ledger)
    result = ledger.verify()
    assert result.ok
    assert result.entries == 6
    assert result.head_seq == 6
    chain = list(ledger.entries())
    assert chain[0].prev_hash == ledger_mod.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))


def test_one_byte_change_is_named(ledger):
    fill(ledger)
    body = next(e for e in ledger.entries() if e.seq == 3)
    text = ledger_mod.canonical(body.body).replace("entry 2", "entry 9")
    sql(ledger, entries.update().where(entries.c.seq == 3).values(body=text))
    result = ledger.verify()
    assert not result.ok
    assert result.problem.seq == 3
    assert "altered" in result.problem.reason


def test_deleted_entry_is_named(ledger):
    fill(ledger)
    sql(ledger, entries.delete().where(entries.c.seq == 4))
    result = ledger.verify()
    assert result.problem.seq == 4
    assert "missing" in result.problem.reason


def test_reordered_entries_are_caught(ledger):
    fill(ledger)
    sql(ledger, entries.update().where(entries.c.seq == 2).values(seq=1000))
    sql(ledger, entries.update().where(entries.c.seq == 3).values(seq=2))
    sql(ledger, entries.update().where(entries.c.seq == 1000).values(seq=3))
    result = ledger.verify()
    assert result.problem.seq == 2
    assert "does not follow" in result.problem.reason


def test_truncation_is_caught_by_a_checkpoint(ledger):
    private, public = generate_keypair()
    fill(ledger)
    cp = ledger.checkpoint(private)
    assert cp["seq"] == 6
    sql(ledger, entries.delete().where(entries.c.seq >= 5))
    result = ledger.verify(public_key=public)
    assert result.problem.seq == 6
    assert "truncated" in result.problem.reason


def test_a_chain_rewritten_from_the_start_is_caught_by_a_kept_checkpoint(ledger):
    private, public = generate_keypair()
    fill(ledger)
    kept = ledger.checkpoint(private)  # an auditor keeps this copy elsewhere
    # The attacker rewrites every entry consistently and removes the stored checkpoints.
    sql(ledger, sa.delete(ledger_mod.checkpoints))
    sql(ledger, entries.delete())
    forged = ledger_mod.Ledger(ledger.engine, ledger.url)
    for i in range(6):
        forged.append("run.started", f"run-{i}", {"i": i, "text": "forged"})
    assert forged.verify().ok  # the chain alone cannot tell
    result = forged.verify(trusted_checkpoints=[kept], public_key=public)
    assert not result.ok
    assert "rewritten" in result.problem.reason


def test_a_forged_checkpoint_signature_is_refused(ledger):
    private, public = generate_keypair()
    _, other_public = generate_keypair()
    fill(ledger)
    ledger.checkpoint(private)
    assert ledger.verify(public_key=public).ok
    assert "bad signature" in ledger.verify(public_key=other_public).problem.reason


def _append_many(url: str, worker: int, count: int) -> None:
    the_ledger = Ledger.open(url)
    for i in range(count):
        the_ledger.append("run.started", f"w{worker}-{i}", {"worker": worker, "i": i})
    the_ledger.close()


def test_concurrent_writers_keep_one_valid_chain(ledger_url):
    Ledger.open(ledger_url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(ledger_url, w, 40)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    result = Ledger.open(ledger_url).verify()
    assert result.ok, result.problem
    assert result.entries == 160
    assert result.head_seq == 160


def _append_once_each(url: str, worker: int, ids: int) -> None:
    the_ledger = Ledger.open(url)
    for i in range(ids):
        with contextlib.suppress(AlreadyRecorded):
            the_ledger.append(
                "incident.acked", f"inc-{i}", {"worker": worker}, unless=["incident.acked"]
            )
    the_ledger.close()


def test_a_conditional_append_is_written_once_whoever_races_for_it(ledger_url):
    """Two receivers (or two people) recording the same fact at once: one entry."""
    Ledger.open(ledger_url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_once_each, args=(ledger_url, w, 20)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    the_ledger = Ledger.open(ledger_url)
    written = [e.run_id for e in the_ledger.entries()]
    assert sorted(written) == sorted(f"inc-{i}" for i in range(20))
    with pytest.raises(AlreadyRecorded, match=r"inc-3 already has a 'incident.acked' entry"):
        the_ledger.append("incident.acked", "inc-3", {}, unless=["incident.acked", "x"])
    # Other kinds of the same id are not the condition.
    the_ledger.append("incident.noted", "inc-3", {}, unless=["incident.closed"])
    assert the_ledger.verify().ok
    the_ledger.close()


def test_events_are_stored_with_their_run(ledger):
    rows = [
        {"run_id": "r1", "counter": i, "event": "runner_on_ok", "host": "h", "data": "{}"}
        for i in range(1, 4)
    ]
    ledger.append("run.started", "r1", {}, event_rows=rows[:1])
    ledger.add_events(rows[1:])
    assert [e["counter"] for e in ledger.run_events("r1")] == [1, 2, 3]


# ------------------------------------------------------------------ bad ledgers (SQLite)


def test_a_locked_ledger_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "LOCK_TIMEOUT_S", 1)
    path = tmp_path / "ledger.sqlite3"
    the_ledger = Ledger.open(f"sqlite:///{path}")
    fill(the_ledger, 1)
    holder = subprocess.Popen(
        [
            "python3",
            "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(10)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        the_ledger = Ledger.open(f"sqlite:///{path}", create=False)
        with pytest.raises(UserError) as info:
            the_ledger.append("run.started", "x", {})
        assert "locked" in str(info.value)
        assert "try again" in str(info.value)
    finally:
        holder.kill()
    assert Ledger.open(f"sqlite:///{path}").verify().entries == 1  # nothing partial


def test_a_corrupt_ledger_is_one_clear_error(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError) as info:
        Ledger.open(f"sqlite:///{path}")
    message = str(info.value)
    assert "damaged" in message
    assert "\n" not in message


@pytest.fixture
def readonly_dir(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
            check=False,
            capture_output=True,
        ).returncode
        != 0
    ):
        pytest.skip("needs root and mount(8) to make a read-only file system")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_ledger_on_a_read_only_disk_can_be_read_but_refuses_writes(readonly_dir):
    url = f"sqlite:///{readonly_dir / 'ledger.sqlite3'}"
    the_ledger = Ledger.open(url)
    fill(the_ledger, 2)
    the_ledger.close()
    subprocess.run(["mount", "-o", "remount,ro", str(readonly_dir)], check=True)
    the_ledger = Ledger.open(url, create=False)
    assert the_ledger.verify().ok
    with pytest.raises(UserError) as info:
        the_ledger.append("run.started", "x", {})
    assert "read-only" in str(info.value)


# ------------------------------------------------------------------ file modes (SQLite)


def test_a_new_sqlite_ledger_and_its_directories_are_private(tmp_path):
    """Created elsewhere, under the usual umask: directories 0700, the database and the
    -wal and -shm files SQLite makes beside it 0600. A directory that was there stays."""
    old = os.umask(0o022)
    try:
        tmp_path.chmod(0o755)
        path = tmp_path / "elsewhere" / "dir" / "ledger.sqlite3"
        the_ledger = Ledger.open(f"sqlite:///{path}")
        fill(the_ledger, 2)
        with the_ledger.engine.connect():  # an open connection keeps -wal and -shm
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in (
                    path,
                    path.with_name(path.name + "-wal"),
                    path.with_name(path.name + "-shm"),
                )
            }
        the_ledger.close()
    finally:
        os.umask(old)
    assert modes == {
        "ledger.sqlite3": 0o600,
        "ledger.sqlite3-wal": 0o600,
        "ledger.sqlite3-shm": 0o600,
    }
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755  # not created by techops


def test_an_existing_sqlite_ledger_keeps_its_mode(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    fill(Ledger.open(f"sqlite:///{path}"), 1)
    path.chmod(0o640)  # an operator's choice, e.g. for an auditors' group
    assert Ledger.open(f"sqlite:///{path}").verify().ok
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
