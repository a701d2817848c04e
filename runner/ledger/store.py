"""The ledger: an append-only, hash-chained record of runs.

It stores, chains and verifies; it knows nothing of reports, terminals or schedules.

Every entry carries the hash of the entry before it and its own hash over a canonical
form of (sequence number, previous hash, kind, run id, time, body). Changing one byte of
an entry, deleting one, or reordering them breaks the chain at that point, and `verify`
names the first entry that does not match. A run's stored events are sealed by its first
terminal entry, and by no other entry. A chain rewritten from its start is caught by
checkpoints: the head's hash signed with an ed25519 key whose public half, and copies of
the checkpoints, can be kept elsewhere.

The same code serves SQLite (the default: one file, WAL, every write one transaction; a
file techops creates is its owner's only, as are the directories it creates for it) and
PostgreSQL (given a postgresql:// URL), through SQLAlchemy Core. Appends are
serialised by the database itself (SQLite's BEGIN IMMEDIATE, PostgreSQL's transaction
advisory lock), so runs on several controllers or processes can write at once. A
PostgreSQL ledger also holds the host leases that keep those controllers' runs off each
other's hosts (runner/ledger/leases.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from runner.core.errors import UserError
from runner.core.paths import PRIVATE_FILE, private_dirs, state_dir

T = TypeVar("T")

GENESIS = "0" * 64
LOCK_TIMEOUT_S = 30
_ADVISORY_KEY = 0x7EC0_0001  # PostgreSQL advisory lock that serialises appends

metadata = sa.MetaData()

entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(48), nullable=False, index=True),
    sa.Column("created", sa.String(40), nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
)

# Per-event detail of each run, redacted. Not chained entry by entry: the run's terminal
# entry carries a digest of it (see TERMINAL_KINDS). Retention may prune it, leaving a
# tombstone entry in the chain.
events = sa.Table(
    "run_events",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("counter", sa.Integer, nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255)),
    sa.Column("data", sa.Text, nullable=False),
)

# Host leases: the run locks of controllers that share a PostgreSQL ledger, one row per
# host held (runner/ledger/leases.py). Only PostgreSQL ledgers have the table: a SQLite
# ledger is one controller's, and its runs lock hosts with files (runner/execution/locks.py).
# Times are the database's (now()), never a controller's, so clock skew between
# controllers cannot make a lease look expired early or alive late.
host_leases = sa.Table(
    "host_leases",
    metadata,
    sa.Column("host", sa.Text, primary_key=True),
    # Which acquisition holds the row: renewals and the release touch their own rows only,
    # never those of a run that took a lapsed lease over.
    sa.Column("token", sa.String(64), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("holder", sa.Text, nullable=False),  # JSON: run, who, playbook, controller, pid
    sa.Column("acquired", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires", sa.DateTime(timezone=True), nullable=False, index=True),
)
POSTGRESQL_ONLY = (host_leases,)

checkpoints = sa.Table(
    "ledger_checkpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(200), nullable=False),
)


def canonical(value: Any) -> str:
    """The one serialisation that is hashed: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def event_row_hash(counter: int, kind: str, host: str | None, data: str) -> str:
    """The hash of one stored event row (its data as stored: canonical JSON text)."""
    return hashlib.sha256(canonical([counter, kind, host, data]).encode()).hexdigest()


def events_digest(row_hashes: Iterable[tuple[int, str]]) -> str:
    """The digest that seals a run's stored events: its (counter, row hash) pairs in order.
    The run's terminal entry carries {"events": {"count": N, "sha256": D}}, and `verify`
    recomputes D from the rows stored."""
    digest = hashlib.sha256()
    for _, row_hash in sorted(row_hashes):
        digest.update(row_hash.encode())
    return digest.hexdigest()


# The entry kind that drops the stored events of the runs it names (a retention tombstone):
# from then on those runs' events are no longer expected to match their seal.
PRUNED = "ledger.pruned"
# The kinds of entry that end a run: `run.finished`, written by the run itself, and
# `run.interrupted`, written for it when its process died. A run has at most one, and that
# entry alone may seal the run's stored events: were a later entry allowed to, whoever can
# append could delete a run's event rows and then append a fresh digest of what remains.
TERMINAL_KINDS = ("run.finished", "run.interrupted")


class RunAlreadyEnded(UserError):
    """A second terminal entry for a run was refused: the first one stands."""

    def __init__(self, run_id: str, seq: int, kind: str) -> None:
        super().__init__(
            f"run {run_id} already ended at ledger entry {seq} ({kind}): "
            "a run has one terminal entry, nothing was written"
        )
        self.run_id = run_id
        self.seq = seq


class AlreadyRecorded(UserError):
    """An append made on condition that its run id had no entry of some kinds found one:
    nothing was written. What a repeated notification or a second acknowledgement meets."""

    def __init__(self, run_id: str, seq: int, kind: str) -> None:
        super().__init__(
            f"{run_id} already has a {kind!r} entry (ledger entry {seq}): nothing was written"
        )
        self.run_id = run_id
        self.seq = seq
        self.kind = kind


class _Seals:
    """What the chain says of stored events, gathered while `verify` walks it: the entry
    that ended each run and the seal it carries, and the runs a tombstone pruned.

    Only a run's first terminal entry seals its events. An entry of another kind that
    carries a seal, or a second terminal entry for a run, is the problem `take` returns:
    either could otherwise bless event rows altered after the run ended."""

    def __init__(self) -> None:
        # run id -> (seq of its terminal entry, its seal; None when it carries none)
        self.ended: dict[str, tuple[int, Any]] = {}
        self.pruned: set[str] = set()

    def take(self, row: Any) -> Problem | None:
        terminal = row.kind in TERMINAL_KINDS
        if not terminal and row.kind != PRUNED and '"events"' not in row.body:
            return None  # the cheap test first: most entries carry no seal
        try:
            body = json.loads(row.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if row.kind == PRUNED:
            runs = body.get("runs")
            self.pruned |= set(runs) if isinstance(runs, dict | list) else set()
        seal = body.get("events")
        if not terminal:
            if "events" not in body:
                return None
            return Problem(
                row.seq,
                f"entry {row.seq} ({row.kind}) tries to re-seal the events of run "
                f"{row.run_id}: only the run's own terminal entry "
                f"({' or '.join(TERMINAL_KINDS)}) seals them",
            )
        if row.run_id in self.ended:
            first = self.ended[row.run_id][0]
            if "events" in body:
                reason = (
                    f"entry {row.seq} ({row.kind}) tries to re-seal the events of run "
                    f"{row.run_id}, which entry {first} already ended and sealed"
                )
            else:
                reason = (
                    f"entry {row.seq} ({row.kind}) ends run {row.run_id} a second time: "
                    f"entry {first} already ended it"
                )
            return Problem(row.seq, f"{reason} (a run has one terminal entry)")
        self.ended[row.run_id] = (row.seq, seal if "events" in body else None)
        return None


def entry_hash(seq: int, prev_hash: str, kind: str, run_id: str, created: str, body: str) -> str:
    material = canonical([seq, prev_hash, kind, run_id, created, body])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Entry:
    seq: int
    run_id: str
    kind: str
    created: str
    body: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Problem:
    """The first place where the chain does not hold."""

    seq: int | None
    reason: str


@dataclass(frozen=True)
class CheckedCheckpoint:
    """A checkpoint the chain was found to match: which entry it covers, who signed it,
    when, where it came from, and whether its signature was checked."""

    seq: int
    hash: str
    created: str | None
    # The id of the key that signed it: the public key's own id when the signature was
    # checked with it, else the id the checkpoint claims (anyone can write that).
    key_id: str | None
    source: str  # "ledger": stored in the ledger; "given": a copy kept elsewhere
    signature_checked: bool


@dataclass(frozen=True)
class Verification:
    entries: int
    head_hash: str
    head_seq: int
    problem: Problem | None
    # The checkpoints the chain matched, stored and given, in the order they were checked.
    checkpoints: tuple[CheckedCheckpoint, ...] = ()
    # The id of the public key the checkpoints' signatures were checked with, if one was given.
    public_key_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def checkpoints_checked(self) -> int:
        return len(self.checkpoints)

    @property
    def signatures_checked(self) -> bool:
        return self.public_key_id is not None


def default_url(state: Path) -> str:
    return f"sqlite:///{state / 'ledger.sqlite3'}"


def ledger_url(explicit: str | None = None) -> str:
    """The ledger to use: the one named, else TECHOPS_LEDGER, else the controller's own."""
    return explicit or os.environ.get("TECHOPS_LEDGER") or default_url(state_dir())


def _describe(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


class Ledger:
    """One ledger database. Open it with `Ledger.open(url)`."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.where = _describe(url)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Ledger:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            hint = f"sqlite:///{Path(url).resolve()}" if "://" not in url else "sqlite:///PATH"
            raise UserError(
                f"ledger {url!r} is not a database URL: use {hint} or postgresql://USER@HOST/DB"
            ) from None
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed)
        elif parsed.get_backend_name() == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = sa.create_engine(
                parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10}
            )
        else:
            raise UserError(
                f"unsupported ledger URL {_describe(url)}: use sqlite:///PATH "
                "or postgresql://USER@HOST/DB"
            )
        ledger = cls(engine, url)
        if create:
            tables = [
                t
                for t in metadata.sorted_tables
                if ledger.dialect == "postgresql" or t not in POSTGRESQL_ONLY
            ]
            ledger._guard("open", lambda: metadata.create_all(engine, tables=tables))
        return ledger

    @property
    def dialect(self) -> str:
        """The database behind the ledger: "sqlite" or "postgresql"."""
        return str(self.engine.dialect.name)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writing
    def append(
        self,
        kind: str,
        run_id: str,
        body: dict[str, Any],
        event_rows: Iterable[dict[str, Any]] = (),
        *,
        drop_events_of: Iterable[str] = (),
        seal_stored_events: bool = False,
        unless: Iterable[str] = (),
    ) -> Entry:
        """Append one entry in one transaction, with its run's event rows if given, and
        removing the stored events of the runs in `drop_events_of` (a prune's tombstone and
        the removal it records commit together or not at all).

        A terminal entry (TERMINAL_KINDS) for a run that already has one is refused with
        RunAlreadyEnded, checked under the append's lock so two writers cannot both end a
        run. With `seal_stored_events`, a terminal entry seals the run's events as stored
        at this moment, digested in the same transaction so no row can slip in between.

        With `unless`, the entry is written only if its run id has no entry of those kinds
        yet, else AlreadyRecorded names the one found: checked under the append's lock, so
        that two writers (two threads, two receivers sharing a PostgreSQL ledger) cannot
        both record the same fact."""
        if kind not in TERMINAL_KINDS and ("events" in body or seal_stored_events):
            raise ValueError(f"a {kind} entry cannot seal events: only a run's terminal entry does")
        drop = sorted(drop_events_of)
        refused_if = sorted(set(unless))

        def work() -> Entry:
            with self._writing() as conn:
                self._lock(conn)
                found = _first_of(conn, run_id, refused_if)
                if found:
                    raise AlreadyRecorded(run_id, found.seq, found.kind)
                sealed = body
                if kind in TERMINAL_KINDS:
                    ended = _first_of(conn, run_id, TERMINAL_KINDS)
                    if ended:
                        raise RunAlreadyEnded(run_id, ended.seq, ended.kind)
                    if seal_stored_events:
                        sealed = {**body, "events": _stored_seal(conn, run_id)}
                if drop:
                    conn.execute(events.delete().where(events.c.run_id.in_(drop)))
                seq, created, prev, digest = chain(conn, kind, run_id, canonical(sealed))
                rows = list(event_rows)
                if rows:
                    conn.execute(events.insert(), rows)
                return Entry(seq, run_id, kind, created, sealed, prev, digest)

        return self._guard("write to", work)

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        """Store a batch of a run's redacted event rows, in one transaction."""
        if rows:
            self._guard("write to", lambda: self._insert_events(rows))

    def _insert_events(self, rows: list[dict[str, Any]]) -> None:
        with self._writing() as conn:
            conn.execute(events.insert(), rows)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success, rolled back on error."""
        with self.engine.connect().execution_options(techops_write=True) as conn, conn.begin():
            yield conn

    def _lock(self, conn: Connection) -> None:
        if self.engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'"))
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_KEY)))

    # ------------------------------------------------------------------ reading
    def entries(
        self, *, run_id: str | None = None, kinds: Iterable[str] | None = None, since_seq: int = 0
    ) -> Iterator[Entry]:
        query = sa.select(entries).where(entries.c.seq > since_seq).order_by(entries.c.seq)
        if run_id:
            query = query.where(entries.c.run_id == run_id)
        if kinds:
            query = query.where(entries.c.kind.in_(list(kinds)))
        rows = self._guard("read", lambda: self._fetch(query))
        for row in rows:
            yield _entry(row)

    def _fetch(self, query: sa.Select) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def unclosed(self, kind: str, closing: Iterable[str]) -> Iterator[Entry]:
        """Entries of `kind` whose run has no entry of the `closing` kinds (in SQL)."""
        closed = sa.select(entries.c.run_id).where(entries.c.kind.in_(list(closing)))
        query = (
            sa.select(entries)
            .where(entries.c.kind == kind)
            .where(entries.c.run_id.not_in(closed))
            .order_by(entries.c.seq)
        )
        for row in self._guard("read", lambda: self._fetch(query)):
            yield _entry(row)

    def head(self) -> Entry | None:
        query = sa.select(entries).order_by(entries.c.seq.desc()).limit(1)
        rows = self._guard("read", lambda: self._fetch(query))
        return _entry(rows[0]) if rows else None

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(events.c.counter, events.c.event, events.c.host, events.c.data)
            .where(events.c.run_id == run_id)
            .order_by(events.c.counter)
        )
        rows = self._guard("read", lambda: self._fetch(query))
        return [
            {"counter": r.counter, "event": r.event, "host": r.host, **json.loads(r.data)}
            for r in rows
        ]

    # ------------------------------------------------------------------ verifying
    def verify(
        self, trusted_checkpoints: Iterable[dict[str, Any]] = (), public_key: bytes | None = None
    ) -> Verification:
        """Recompute the chain and the seals of stored events; check checkpoints (stored
        and given) against the chain, and their signatures when a public key is given."""
        public = _public_key(public_key) if public_key is not None else None
        count = 0
        prev = GENESIS
        expected_seq = 1
        problem: Problem | None = None
        hashes: dict[int, str] = {}
        seals = _Seals()
        query = sa.select(entries).order_by(entries.c.seq)
        for row in self._guard("read", lambda: self._fetch(query)):
            count += 1
            if problem:
                continue
            if row.seq != expected_seq:
                problem = Problem(
                    expected_seq, f"entry {expected_seq} is missing (the chain jumps to {row.seq})"
                )
                continue
            if row.prev_hash != prev:
                problem = Problem(
                    row.seq,
                    f"entry {row.seq} does not follow entry "
                    f"{row.seq - 1}: its previous-hash link is broken "
                    "(an entry was removed, inserted or reordered)",
                )
                continue
            digest = entry_hash(row.seq, row.prev_hash, row.kind, row.run_id, row.created, row.body)
            if digest != row.hash:
                problem = Problem(
                    row.seq,
                    f"entry {row.seq} (run {row.run_id}, {row.kind}) "
                    "was altered: its content no longer matches its hash",
                )
                continue
            problem = seals.take(row)
            hashes[row.seq] = row.hash
            prev = row.hash
            expected_seq += 1
        head_seq = expected_seq - 1
        if problem is None:
            problem = self._verify_events(seals)
        matched: list[CheckedCheckpoint] = []
        stored = [("ledger", cp) for cp in self.checkpoints()]
        for source, cp in [*stored, *(("given", cp) for cp in trusted_checkpoints)]:
            if public is not None and not _signed_by(public, cp):
                problem = problem or Problem(
                    cp["seq"],
                    f"checkpoint at entry {cp['seq']} has a bad signature for this public key",
                )
                continue
            if problem:
                continue
            if cp["seq"] > head_seq:
                problem = Problem(
                    cp["seq"],
                    f"the chain ends at entry {head_seq} but a "
                    f"checkpoint covers entry {cp['seq']}: entries were "
                    "removed from the end (truncated)",
                )
            elif hashes.get(cp["seq"]) != cp["hash"]:
                problem = Problem(
                    cp["seq"],
                    f"entry {cp['seq']} differs from the signed "
                    "checkpoint: the chain was rewritten",
                )
            else:
                matched.append(
                    CheckedCheckpoint(
                        seq=cp["seq"],
                        hash=cp["hash"],
                        created=cp.get("created"),
                        key_id=_raw_key_id(public) if public is not None else cp.get("key_id"),
                        source=source,
                        signature_checked=public is not None,
                    )
                )
        public_id = _raw_key_id(public) if public is not None else None
        return Verification(count, prev, head_seq, problem, tuple(matched), public_id)

    def _verify_events(self, seals: _Seals) -> Problem | None:
        """Each sealed run's stored events still hash to the digest its terminal entry
        carries, unless a tombstone says they were pruned."""
        stored: dict[str, list[tuple[int, str]]] = {}
        rows = sa.select(
            events.c.run_id, events.c.counter, events.c.event, events.c.host, events.c.data
        )
        for row in self._guard("read", lambda: self._fetch(rows)):
            stored.setdefault(row.run_id, []).append(
                (row.counter, event_row_hash(row.counter, row.event, row.host, row.data))
            )
        for run_id, (seq, seal) in seals.ended.items():
            if seal is None or run_id in seals.pruned:
                continue
            if not isinstance(seal, dict):
                return Problem(seq, f"entry {seq} seals the events of run {run_id} with no digest")
            found = stored.get(run_id, [])
            if len(found) != seal.get("count") or events_digest(found) != seal.get("sha256"):
                return Problem(
                    seq,
                    f"the stored events of run {run_id} were altered: they no longer match "
                    f"the digest sealed in entry {seq} ({seal.get('count')} events sealed, "
                    f"{len(found)} stored)",
                )
        return None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, private_key_pem: bytes) -> dict[str, Any]:
        head = self.head()
        if head is None:
            raise UserError(f"ledger {self.where} is empty: nothing to checkpoint")
        cp = sign_checkpoint(private_key_pem, head.seq, head.hash)

        def work() -> None:
            with self._writing() as conn:
                conn.execute(checkpoints.insert().values(**cp))

        self._guard("write to", work)
        return cp

    def checkpoints(self) -> list[dict[str, Any]]:
        query = sa.select(checkpoints).order_by(checkpoints.c.id)
        return [dict(r._mapping) for r in self._guard("read", lambda: self._fetch(query))]

    # ------------------------------------------------------------------ errors
    def _guard(self, action: str, work: Callable[[], T]) -> T:
        """Turn database failures into one clear line; the transaction is rolled back."""
        try:
            return work()
        except OperationalError as exc:
            raise UserError(self._explain(action, exc)) from None
        except DBAPIError as exc:
            raise UserError(self._explain(action, exc)) from None
        except sqlite3.DatabaseError as exc:  # raised outside SQLAlchemy's wrapping
            raise UserError(self._explain(action, exc)) from None

    def _explain(self, action: str, exc: BaseException) -> str:
        text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        low = text.lower()
        if "locked" in low or "lock timeout" in low or "could not obtain lock" in low:
            hint = f"another process held it for more than {LOCK_TIMEOUT_S} s; try again"
        elif "not a database" in low or "malformed" in low or "corrupt" in low:
            hint = "the file is damaged; restore it from a backup, then run `techops audit verify`"
        elif "readonly" in low or "read-only" in low:
            hint = "its disk or file is read-only; nothing was written"
        elif "unable to open" in low:
            hint = "check that the directory exists and is writable"
        elif "connection" in low or "could not connect" in low:
            hint = "check the database URL and that the server is running"
        else:
            hint = "nothing was written"
        return f"cannot {action} the ledger {self.where}: {text} ({hint})"


def _first_of(conn: Connection, run_id: str, kinds: Iterable[str]) -> Any:
    """The run's first entry of one of these kinds (its seq and kind), or None."""
    wanted = list(kinds)
    if not wanted:
        return None
    return conn.execute(
        sa.select(entries.c.seq, entries.c.kind)
        .where(entries.c.run_id == run_id)
        .where(entries.c.kind.in_(wanted))
        .order_by(entries.c.seq)
        .limit(1)
    ).first()


def chain(conn: Connection, kind: str, run_id: str, body_text: str) -> tuple[int, str, str, str]:
    """Insert one entry after the chain's head, hashed over it: (seq, created, prev_hash,
    hash). The caller holds the append's lock and has made its own checks; tests that
    forge entries (as someone with write access to the database could) chain through here
    too, so a forgery is chained exactly as a real entry."""
    head = conn.execute(
        sa.select(entries.c.seq, entries.c.hash).order_by(entries.c.seq.desc()).limit(1)
    ).first()
    seq = (head.seq + 1) if head else 1
    prev = head.hash if head else GENESIS
    created = utcnow()
    digest = entry_hash(seq, prev, kind, run_id, created, body_text)
    conn.execute(
        entries.insert().values(
            seq=seq,
            run_id=run_id,
            kind=kind,
            created=created,
            body=body_text,
            prev_hash=prev,
            hash=digest,
        )
    )
    return seq, created, prev, digest


def _stored_seal(conn: Connection, run_id: str) -> dict[str, Any]:
    """The seal of a run's events as they are stored now."""
    rows = conn.execute(
        sa.select(events.c.counter, events.c.event, events.c.host, events.c.data).where(
            events.c.run_id == run_id
        )
    )
    hashes = [(r.counter, event_row_hash(r.counter, r.event, r.host, r.data)) for r in rows]
    return {"count": len(hashes), "sha256": events_digest(hashes)}


def _entry(row: Any) -> Entry:
    return Entry(
        row.seq, row.run_id, row.kind, row.created, json.loads(row.body), row.prev_hash, row.hash
    )


def _create_private(path: Path) -> None:
    """Create a new ledger file readable by its owner only, before SQLite opens it: SQLite
    would create it with the umask's mode (often 0644), and gives its -wal and -shm files
    the mode of the database file. An existing file is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite cannot create it either, and says so with a hint (see _explain)
    os.close(fd)


def _sqlite_engine(url: sa.engine.URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:":
        path = Path(database)
        try:
            private_dirs(path.parent)
        except OSError as exc:
            raise UserError(
                f"cannot create the ledger's directory {path.parent}: {exc.strerror}"
            ) from None
        _create_private(path)
        if path.exists() and not (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)):
            # A ledger on a read-only disk can still be read, listed and verified; SQLite
            # must be told, or it fails creating its WAL index beside the file.
            url = url.set(
                database=f"file:{path}", query={"mode": "ro", "immutable": "1", "uri": "true"}
            )
    engine = sa.create_engine(url, connect_args={"timeout": LOCK_TIMEOUT_S})

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {LOCK_TIMEOUT_S * 1000}")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            # A read-only ledger can still be read and verified.
            with contextlib.suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # pysqlite's own transaction handling is off (isolation_level None): say BEGIN
        # here. Writers take the write lock at once (IMMEDIATE), so that reading the head
        # and appending after it can never interleave with another writer.
        immediate = conn.get_execution_options().get("techops_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# ---------------------------------------------------------------------- signatures


def key_id(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def generate_keypair() -> tuple[bytes, bytes]:
    """A new ed25519 key pair as (private PEM, public PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, public_pem


def _checkpoint_message(seq: int, digest: str, created: str) -> bytes:
    return canonical({"seq": seq, "hash": digest, "created": created}).encode()


def sign_checkpoint(private_key_pem: bytes, seq: int, digest: str) -> dict[str, Any]:
    try:
        private = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot read the checkpoint signing key: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise UserError("the checkpoint signing key is not an ed25519 key")
    raw_public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    created = utcnow()
    signature = private.sign(_checkpoint_message(seq, digest, created)).hex()
    return {
        "seq": seq,
        "hash": digest,
        "created": created,
        "key_id": key_id(raw_public),
        "signature": signature,
    }


def _public_key(public_key_pem: bytes) -> Ed25519PublicKey:
    try:
        public = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot read the checkpoint public key (PEM expected): {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise UserError("the checkpoint public key is not an ed25519 key")
    return public


def _raw_key_id(public: Ed25519PublicKey) -> str:
    return key_id(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _signed_by(public: Ed25519PublicKey, cp: dict[str, Any]) -> bool:
    """Whether `public` signed this checkpoint; one missing a field is not signed."""
    try:
        public.verify(
            bytes.fromhex(cp["signature"]),
            _checkpoint_message(int(cp["seq"]), cp["hash"], cp["created"]),
        )
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return False
    return True
