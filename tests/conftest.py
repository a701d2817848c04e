"""Shared fixtures for the techops test suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def recorded_events() -> list[dict]:
    """The event stream of a real run of tests/fixtures/playbooks/mixed_outcomes.yml."""
    path = FIXTURES / "events" / "mixed_outcomes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def repo_root() -> Path:
    return REPO


def load_plugin(relative: str):
    """Import a plugin file (plugins/...) the way Ansible finds it: by path."""
    import importlib.util
    import sys

    path = REPO / relative
    spec = importlib.util.spec_from_file_location(f"techops_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module
