"""Host leases in a PostgreSQL ledger: the host locks of every controller that records
into it.

A file lock only keeps runs apart on one controller; controllers that share a PostgreSQL
ledger share this table instead (`host_leases`, created with the ledger's other tables).
A row says which run holds a host, and until when. The holder renews its rows while it
runs and deletes them when it ends; a controller that dies stops renewing, and its rows
lapse after the lease duration, so a dead controller never holds a host for ever.

Every time is the database's (now()): controllers' clocks may disagree by minutes, and a
lease judged by each one's own clock could look lapsed to one while alive to another.

This module stores and reads leases; the policy (how long, the heartbeat, the refusal) is
the run lock's (runner/execution/locks.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from runner.ledger.store import LOCK_TIMEOUT_S, Ledger, canonical, host_leases

# The transaction advisory lock that serialises acquisitions (the ledger's appends use
# 0x7EC0_0001).
_ACQUIRE_KEY = 0x7EC0_0002


@dataclass(frozen=True)
class Taken:
    """What an acquisition found: the first host another run holds (and that run's
    details), or, when every host was taken, the lapsed leases it took over."""

    busy_host: str | None = None
    busy_holder: dict[str, Any] = field(default_factory=dict)
    taken_over: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.busy_host is None


def take(
    ledger: Ledger, token: str, hosts: Iterable[str], holder: dict[str, Any], seconds: int
) -> Taken:
    """Lease every host in `hosts` to `token`, or none of them.

    One transaction does it. Acquisitions are serialised by a transaction advisory lock:
    a run takes its hosts once, in a few milliseconds, so one queue costs nothing, and
    with it two runs whose host sets overlap can never each take part of what the other
    needs (no half-taken sets, no deadlock between acquirers, which row locks alone would
    allow when two runs insert the same new hosts in different orders). The rows already
    there for these hosts are read FOR UPDATE, so a holder's renewal or release waits for
    this decision instead of changing the row under it. Any live row refuses the whole
    run and nothing is written; rows that lapsed are taken over by the upsert. The lock
    is the transaction's, so a controller that dies mid-acquisition releases it with its
    connection."""
    wanted = sorted(set(hosts))
    if not wanted:
        return Taken()
    details = canonical(holder)
    run_id = str(holder.get("run_id") or "")
    lease = _interval(seconds)

    def work() -> Taken:
        with ledger.engine.begin() as conn:
            _timeouts(conn, LOCK_TIMEOUT_S)
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ACQUIRE_KEY)))
            found = conn.execute(
                sa.select(
                    host_leases.c.host,
                    host_leases.c.holder,
                    (host_leases.c.expires > sa.func.now()).label("live"),
                    sa.func.extract("epoch", host_leases.c.expires - sa.func.now()).label("left"),
                )
                .where(host_leases.c.host.in_(wanted))
                .order_by(host_leases.c.host)
                .with_for_update()
            ).all()
            for row in found:
                if row.live:
                    busy = {**_details(row.holder), "lease_seconds_left": math.ceil(row.left)}
                    return Taken(busy_host=row.host, busy_holder=busy)
            statement = pg_insert(host_leases).values(
                [
                    {
                        "host": host,
                        "token": token,
                        "run_id": run_id,
                        "holder": details,
                        "acquired": sa.func.now(),
                        "expires": sa.func.now() + lease,
                    }
                    for host in wanted
                ]
            )
            new = statement.excluded
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[host_leases.c.host],
                    set_={
                        "token": new.token,
                        "run_id": new.run_id,
                        "holder": new.holder,
                        "acquired": new.acquired,
                        "expires": new.expires,
                    },
                )
            )
            return Taken(taken_over={row.host: _details(row.holder) for row in found})

    return ledger._guard("lock hosts in", work)


def renew(ledger: Ledger, token: str, seconds: int, *, timeout_s: float) -> set[str]:
    """Extend the leases `token` holds to `seconds` from now (the database's now);
    returns the hosts it still holds. A lease that lapsed but that no run took over is
    renewed too: nobody else held the host meanwhile, so the run never lost it. A host
    missing from the answer was taken over by another run. `timeout_s` bounds the
    statement, so a database that hangs cannot stall the caller for long."""

    def work() -> set[str]:
        with ledger.engine.begin() as conn:
            _timeouts(conn, timeout_s)
            rows = conn.execute(
                sa.update(host_leases)
                .where(host_leases.c.token == token)
                .values(expires=sa.func.now() + _interval(seconds))
                .returning(host_leases.c.host)
            )
            return {str(host) for host in rows.scalars()}

    return ledger._guard("renew host leases in", work)


def give_up(ledger: Ledger, token: str, *, timeout_s: float) -> None:
    """Delete the leases `token` holds: their hosts are free at once."""

    def work() -> None:
        with ledger.engine.begin() as conn:
            _timeouts(conn, timeout_s)
            conn.execute(sa.delete(host_leases).where(host_leases.c.token == token))

    ledger._guard("release host leases in", work)


def holders(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """The live leases: host -> its holder's details, with the seconds its lease has left."""
    query = sa.select(
        host_leases.c.host,
        host_leases.c.holder,
        sa.func.extract("epoch", host_leases.c.expires - sa.func.now()).label("left"),
    ).where(host_leases.c.expires > sa.func.now())

    def work() -> dict[str, dict[str, Any]]:
        with ledger.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {r.host: {**_details(r.holder), "lease_seconds_left": float(r.left)} for r in rows}

    return ledger._guard("read host leases in", work)


def _interval(seconds: float) -> sa.BindParameter[timedelta]:
    return sa.bindparam(None, timedelta(seconds=seconds), type_=sa.Interval())


def _timeouts(conn: Connection, seconds: float) -> None:
    """Bound this transaction's waits: for a row or advisory lock, and for any statement."""
    ms = max(1, int(seconds * 1000))
    conn.execute(sa.text(f"SET LOCAL lock_timeout = {ms}"))
    conn.execute(sa.text(f"SET LOCAL statement_timeout = {ms}"))


def _details(text: str) -> dict[str, Any]:
    """A lease's holder as stored ({} when unreadable: the refusal still names the host)."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
