"""Shared fixtures for the techops test suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def recorded_events() -> list[dict]:
    """The event stream of a real run of tests/fixtures/playbooks/mixed_outcomes.yml."""
    path = FIXTURES / "events" / "mixed_outcomes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def repo_root() -> Path:
    return REPO
