"""Every role declares its whole interface, and only its own names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

ROLES = sorted(p.parent.parent for p in (REPO / "roles").glob("*/defaults/main.yml"))


def _spec(role: Path) -> dict:
    """The options of every entry point (main, and e.g. the backup role's maintain); an
    option two entry points share must be declared alike in both."""
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    options: dict = {}
    for entry, declared in spec["argument_specs"].items():
        for name, option in (declared.get("options") or {}).items():
            assert options.get(name, option) == option, f"{name} differs in entry point {entry}"
            options[name] = option
    return options


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_default_is_declared_and_every_declared_option_has_a_default(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    options = _spec(role)
    assert set(defaults) - set(options) == set(), "defaults missing from argument_specs.yml"
    undeclared_defaults = {
        name for name, opt in options.items() if not opt.get("required") and name not in defaults
    }
    assert undeclared_defaults == set(), "options with neither a default nor required: true"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_variables_are_prefixed_with_the_role_name(role):
    for name in _spec(role):
        assert name.startswith(f"{role.name}_"), f"{name} is not prefixed {role.name}_"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_option_is_typed_and_described(role):
    for name, option in _spec(role).items():
        assert option.get("type"), f"{name} has no type"
        assert option.get("description"), f"{name} has no description"
