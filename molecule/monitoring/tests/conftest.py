"""Fixtures for the monitoring scenario: each instance's Prometheus and Alertmanager, asked
from outside over the scenario's podman network, as a person's browser or amtool would."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

import pytest

from tests.helpers import container_address


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (lab addresses)
        return json.loads(answer.read())


@pytest.fixture
def address(host) -> str:
    return container_address(host.backend.name)


@pytest.fixture
def prometheus(address) -> Callable[[str], dict]:
    return lambda path: get_json(f"http://{address}:9090{path}")


@pytest.fixture
def alertmanager(address) -> Callable[[str], dict]:
    return lambda path: get_json(f"http://{address}:9093{path}")
