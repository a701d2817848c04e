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


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    if not PG_URL:
        pytest.skip(
            "TECHOPS_TEST_PG_URL is not set: run through scripts/test, which starts "
            "a local PostgreSQL server (scripts/test-postgres)"
        )
    url = sa.engine.make_url(PG_URL).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    ledger_mod.metadata.drop_all(engine)
    engine.dispose()
    return PG_URL


@pytest.fixture
def ledger(ledger_url):
    the_ledger = ledger_mod.Ledger.open(ledger_url)
    yield the_ledger
    the_ledger.close()
