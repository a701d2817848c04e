"""Host leases: the run locks of controllers that share a PostgreSQL ledger.

Each case runs against a real PostgreSQL server (TECHOPS_TEST_PG_URL; skipped with the
reason without one). Contenders open ledgers of their own, as separate controllers do.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import sqlalchemy as sa

from runner.core.errors import UserError
from runner.execution import locks
from runner.execution.locks import HostBusy, LeaseLock, RunLock
from runner.ledger import leases
from runner.ledger.store import Ledger, host_leases


def lease(ledger: Ledger, run_id: str, hosts: list[str], seconds: int = 30) -> LeaseLock:
    return LeaseLock(ledger, "/repo/playbooks/site.yml", hosts, {"run_id": run_id}, seconds)


def wait_until(condition, what: str, timeout: float = 15.0) -> None:
    """Poll `condition` (the database's view, not a guessed sleep) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_the_second_run_is_refused_naming_the_first_and_its_controller(pg_ledger):
    first = LeaseLock(
        pg_ledger, "/repo/playbooks/site.yml", ["app1", "app2"], {"run_id": "run-A", "who": "alice"}
    ).acquire()
    try:
        with pytest.raises(HostBusy) as refused:
            lease(pg_ledger, "run-B", ["app2", "app3"]).acquire()
        message = str(refused.value)
        assert message.startswith("run run-A by alice is already running site.yml on app2")
        assert f"from controller {socket.gethostname()}" in message
        assert refused.value.exit_code == locks.RC_LOCKED
        assert refused.value.holder["pid"] > 0
        # Other hosts are free, whatever the playbook.
        lease(pg_ledger, "run-C", ["app3"]).acquire().release()
    finally:
        first.release()


def test_all_or_none_a_refused_run_takes_no_host(pg_ledger):
    holding = lease(pg_ledger, "run-A", ["h2"]).acquire()
    try:
        with pytest.raises(HostBusy, match="run run-A"):
            lease(pg_ledger, "run-B", ["h1", "h2", "h3"]).acquire()
        assert set(leases.holders(pg_ledger)) == {"h2"}
        lease(pg_ledger, "run-C", ["h1", "h3"]).acquire().release()
    finally:
        holding.release()


@pytest.fixture
def pg_url_ledgers(pg_ledger_url):
    """Four ledgers on the same database: four controllers."""
    opened = [Ledger.open(pg_ledger_url) for _ in range(4)]
    yield opened
    for ledger in opened:
        ledger.close()


def contend(ledgers: list[Ledger], sets: list[list[str]], tag: str) -> list[LeaseLock | str]:
    """Every contender acquires at the same moment, each through its own ledger: what each
    got, its lock or the run its refusal named."""
    barrier = threading.Barrier(len(sets))
    outcomes: list[LeaseLock | str | BaseException | None] = [None] * len(sets)

    def one(i: int) -> None:
        lock = lease(ledgers[i], f"run-{tag}-{i}", sets[i])
        barrier.wait()
        try:
            outcomes[i] = lock.acquire()
        except HostBusy as busy:
            outcomes[i] = busy.holder["run_id"]
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(sets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    finished = [o for o in outcomes if isinstance(o, LeaseLock | str)]
    assert len(finished) == len(sets), f"a contender failed: {outcomes}"
    return finished


def test_concurrent_acquirers_on_overlapping_hosts_exactly_one_wins(pg_url_ledgers):
    """Four controllers start together, round after round, each wanting hosts every other
    one wants too: exactly one wins each round, the others name it, and no loser holds
    anything."""
    sets = [["h1", "h2"], ["h2", "h3"], ["h3", "h1"], ["h3", "h2", "h1"]]
    for round_ in range(15):
        outcomes = contend(pg_url_ledgers, sets, str(round_))
        won = [o for o in outcomes if isinstance(o, LeaseLock)]
        assert len(won) == 1, f"round {round_}: {outcomes}"
        winner = won[0]
        assert sorted(o for o in outcomes if isinstance(o, str)) == [winner.run] * (len(sets) - 1)
        held = leases.holders(pg_url_ledgers[0])
        assert set(held) == set(winner.hosts)
        assert {h["run_id"] for h in held.values()} == {winner.run}
        winner.release()


def test_the_heartbeat_keeps_a_lease_alive_past_its_duration(pg_ledger):
    holding = lease(pg_ledger, "run-A", ["app1"], seconds=2).acquire()
    try:
        time.sleep(3.5)  # well past the 2 s lease: only renewals keep it
        with pytest.raises(HostBusy, match="run run-A"):
            lease(pg_ledger, "run-B", ["app1"]).acquire()
        assert leases.holders(pg_ledger)["app1"]["lease_seconds_left"] > 0
    finally:
        holding.release()


def test_a_lapsed_lease_is_taken_over_and_its_holder_learns_it_lost_it(pg_ledger, capsys):
    # A controller that died: its leases are never renewed.
    assert leases.take(pg_ledger, "dead-token", ["app1"], {"run_id": "run-dead"}, 2).ok
    with pytest.raises(HostBusy, match="run run-dead") as refused:
        lease(pg_ledger, "run-B", ["app1"]).acquire()
    assert "its lease lapses within 2 s" in str(refused.value)
    wait_until(lambda: "app1" not in leases.holders(pg_ledger), "the lease to lapse")
    taking = lease(pg_ledger, "run-B", ["app1"]).acquire()
    try:
        assert "app1: took over the lapsed lease of run run-dead" in capsys.readouterr().err
        assert leases.holders(pg_ledger)["app1"]["run_id"] == "run-B"
        # The dead run's token no longer renews anything.
        assert leases.renew(pg_ledger, "dead-token", 2, timeout_s=5) == set()
    finally:
        taking.release()


def test_a_lapsed_lease_nobody_took_is_renewed(pg_ledger):
    """Its holder could not reach the database for a while, but nobody else held the host
    meanwhile: the host is still the run's when the database answers again."""
    assert leases.take(pg_ledger, "slow-token", ["app1"], {"run_id": "run-slow"}, 2).ok
    wait_until(lambda: "app1" not in leases.holders(pg_ledger), "the lease to lapse")
    assert leases.renew(pg_ledger, "slow-token", 2, timeout_s=5) == {"app1"}
    assert leases.holders(pg_ledger)["app1"]["run_id"] == "run-slow"
    leases.give_up(pg_ledger, "slow-token", timeout_s=5)


def test_release_frees_the_hosts_at_once(pg_ledger):
    holding = lease(pg_ledger, "run-A", ["app1", "app2"]).acquire()
    holding.release()
    holding.release()  # a second release is harmless
    assert leases.holders(pg_ledger) == {}
    lease(pg_ledger, "run-B", ["app1", "app2"]).acquire().release()


def test_a_heartbeat_that_cannot_reach_the_database_warns_once_and_goes_on(
    pg_ledger, monkeypatch, capsys
):
    real = leases.renew
    calls = []
    recovered = threading.Event()

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 3:
            raise UserError("cannot renew host leases in the ledger db: connection refused")
        result = real(*args, **kwargs)
        recovered.set()
        return result

    monkeypatch.setattr(leases, "renew", flaky)
    holding = lease(pg_ledger, "run-A", ["app1"], seconds=2).acquire()
    try:
        assert recovered.wait(15)
        err = capsys.readouterr().err
        assert err.count("cannot renew its host leases") == 1, err
        assert "connection refused" in err
        assert "run run-A renews its host leases again" in err
        assert holding._beat is not None and holding._beat.is_alive()
        assert leases.holders(pg_ledger)["app1"]["run_id"] == "run-A"
    finally:
        holding.release()


def test_a_run_whose_lapsed_lease_was_taken_over_is_warned(pg_ledger, capsys):
    holding = lease(pg_ledger, "run-A", ["app1"], seconds=3).acquire()
    try:
        # The controller stalled past its lease (the database's clock says so).
        with pg_ledger.engine.begin() as conn:
            conn.execute(
                sa.update(host_leases).values(expires=sa.func.now() - sa.text("interval '1 s'"))
            )
        lease(pg_ledger, "run-B", ["app1"]).acquire()
        wait_until(lambda: holding.lost, "the heartbeat to notice")
        assert "run run-A lost its lease on app1" in capsys.readouterr().err
        assert leases.holders(pg_ledger)["app1"]["run_id"] == "run-B"
    finally:
        holding.release()


@pytest.mark.parametrize("raw", ["abc", "0", "1", "-5", "2.5", "86401", "1e3"])
def test_a_bad_lease_duration_is_refused_in_one_line(raw, monkeypatch):
    monkeypatch.setenv("TECHOPS_LEASE_SECONDS", raw)
    with pytest.raises(UserError) as bad:
        locks.lease_seconds()
    assert str(bad.value).startswith(f"TECHOPS_LEASE_SECONDS={raw!r}: give a whole number")
    assert "\n" not in str(bad.value)


def test_a_bad_lease_duration_stops_a_run_before_it_locks(pg_ledger, monkeypatch):
    monkeypatch.setenv("TECHOPS_LEASE_SECONDS", "soon")
    with pytest.raises(UserError, match="TECHOPS_LEASE_SECONDS='soon'"):
        locks.host_lock(pg_ledger, "site.yml", ["app1"], {"run_id": "run-A"})
    assert leases.holders(pg_ledger) == {}


@pytest.mark.parametrize(("raw", "seconds"), [(None, 120), ("", 120), (" 30 ", 30), ("2", 2)])
def test_the_lease_duration(raw, seconds, monkeypatch):
    if raw is None:
        monkeypatch.delenv("TECHOPS_LEASE_SECONDS", raising=False)
    else:
        monkeypatch.setenv("TECHOPS_LEASE_SECONDS", raw)
    assert locks.lease_seconds() == seconds


def test_the_lock_follows_the_ledger(pg_ledger, tmp_path, monkeypatch):
    """PostgreSQL: leases. SQLite: the files of before, and no lease table in the file."""
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    assert isinstance(locks.host_lock(pg_ledger, "site.yml", ["a"], {}), LeaseLock)
    sqlite = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        assert isinstance(locks.host_lock(sqlite, "site.yml", ["a"], {}), RunLock)
        assert "host_leases" not in sa.inspect(sqlite.engine).get_table_names()
    finally:
        sqlite.close()
    assert "host_leases" in sa.inspect(pg_ledger.engine).get_table_names()
