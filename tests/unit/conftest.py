"""Ledger back ends: every ledger test runs on SQLite and on PostgreSQL.

scripts/test starts a local PostgreSQL server and sets TECHOPS_TEST_PG_URL; without it the
PostgreSQL cases are skipped and say so.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from runner.ledger import store as ledger_mod

PG_URL = os.environ.get("TECHOPS_TEST_PG_URL")
NO_PG = (
    "TECHOPS_TEST_PG_URL is not set: run through scripts/test, which starts "
    "a local PostgreSQL server (scripts/test-postgres)"
)


def fresh_pg_url() -> str:
    """The test PostgreSQL database, emptied of the ledger's tables (the host leases too);
    the case is skipped, saying why, when there is none."""
    if not PG_URL:
        pytest.skip(NO_PG)
    url = sa.engine.make_url(PG_URL).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    ledger_mod.metadata.drop_all(engine)
    engine.dispose()
    return PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return fresh_pg_url()


@pytest.fixture
def ledger(ledger_url):
    the_ledger = ledger_mod.Ledger.open(ledger_url)
    yield the_ledger
    the_ledger.close()


@pytest.fixture
def pg_ledger_url() -> str:
    """A PostgreSQL ledger only: for what SQLite ledgers do not have (host leases)."""
    return fresh_pg_url()


@pytest.fixture
def pg_ledger(pg_ledger_url):
    the_ledger = ledger_mod.Ledger.open(pg_ledger_url)
    yield the_ledger
    the_ledger.close()
