"""The package graph of runner/ is the architecture: each package imports only the ones
below it, the lab is a tool beside the product, and imports sit at the top of modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

RUNNER = REPO / "runner"

# What each package may import, besides itself.
ALLOWED = {
    "core": set(),
    "ledger": {"core"},
    "execution": {"core", "ledger"},
    "reports": {"core", "ledger"},
    "scheduling": {"core", "ledger", "execution"},
    "lab": {"core"},
    "monitoring": {"core", "ledger", "reports"},
    "cli": {"core", "ledger", "execution", "reports", "scheduling", "monitoring", "lab"},
}
# Names used only in type annotations (under `if TYPE_CHECKING:`).
TYPE_ONLY = {("ledger", "execution")}
# The only module of the product that may import the lab: its own command.
LAB_COMMAND = "runner/cli/lab.py"
# Imports inside functions, each for a measured or stated reason (said at the import).
LATE_IMPORTS = {
    ("runner/core/inventory.py", "ansible.inventory.manager"),
    ("runner/core/inventory.py", "ansible.parsing.dataloader"),
    ("runner/core/inventory.py", "ansible.utils.display"),
    ("runner/execution/request.py", "ansible_mitogen"),
    ("runner/ledger/recorder.py", "ansible_collections"),
}


def modules() -> list[Path]:
    return sorted(RUNNER.rglob("*.py"))


def package_of(path: Path) -> str | None:
    parts = path.relative_to(RUNNER).parts
    return parts[0] if len(parts) > 1 else None


def imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""]


def type_checking_blocks(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for inner in ast.walk(node):
                found.add(id(inner))
    return found


def runner_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported runner package, type-only?) for every import of runner.* in the file."""
    tree = ast.parse(path.read_text())
    typing_only = type_checking_blocks(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for name in imported(node):
            parts = name.split(".")
            if parts[0] == "runner" and len(parts) > 1:
                found.append((parts[1], id(node) in typing_only))
    return found


def test_every_module_belongs_to_a_known_package():
    loose = [
        str(p.relative_to(REPO))
        for p in modules()
        if package_of(p) is None and p.name != "__init__.py"
    ]
    assert loose == []
    assert {package_of(p) for p in modules()} - {None} == set(ALLOWED)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(RUNNER)))
def test_a_package_imports_only_those_below_it(path):
    package = package_of(path)
    if package is None:
        assert runner_imports(path) == [], "runner/__init__.py imports nothing"
        return
    for target, type_only in runner_imports(path):
        if target == package:
            continue
        if target == "lab":
            assert str(path.relative_to(REPO)) == LAB_COMMAND, (
                f"{path.relative_to(REPO)} imports the lab: only `techops lab` may"
            )
        allowed = ALLOWED[package] | (
            {t for p, t in TYPE_ONLY if p == package} if type_only else set()
        )
        assert target in allowed, (
            f"{path.relative_to(REPO)}: package {package} imports runner.{target} "
            f"(it may import {sorted(ALLOWED[package]) or 'nothing of runner'})"
        )


def test_imports_are_at_the_top_of_modules_unless_listed_with_a_reason():
    late = set()
    for path in modules():
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    for name in imported(node):
                        late.add((str(path.relative_to(REPO)), name))
    assert late == LATE_IMPORTS


def test_the_rule_catches_an_upward_import(tmp_path):
    """The check above would fail on a ledger module that imports a report."""
    bad = tmp_path / "bad.py"
    bad.write_text("from runner.reports.model import load_runs\n")
    assert runner_imports(bad) == [("reports", False)]
    assert "reports" not in ALLOWED["ledger"]
