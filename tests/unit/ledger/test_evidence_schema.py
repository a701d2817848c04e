"""The roles and their evidence declarations cannot drift apart.

Every task file that publishes `techops_evidence` is read statically: the keys it publishes
must be the ones declared in runner/ledger/evidence.py, and each value's type, as far as a
static read can tell, must be one its declaration allows. A literal says its type; a
template says it when its last step does (`| int`, `| length`, `is defined`, a comparison,
`default(None)`, a constant in a conditional) or when it names a role variable typed in
meta/argument_specs.yml, a role variable, or a fact the role sets. What the read cannot
tell (a module's result) is not held against the declaration.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jinja2 import nodes

from runner.core.inventory import InventoryYamlLoader
from runner.ledger import evidence
from tests.helpers import REPO

SET_STATS = {"set_stats", "ansible.builtin.set_stats", "ansible.legacy.set_stats"}
SET_FACT = {"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"}
FILTER_DOCS = REPO / "collections/ansible_collections/techops/ops/plugins/filter"
PUBLISHERS = sorted(
    path
    for path in [*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml")]
    if "techops_evidence" in path.read_text()
)

# What a static read can say of a value: the JSON kinds it may have ("text", "integer",
# "number", "boolean", "null", "list", "mapping"), the constants it may be, and, for a
# literal mapping, the shape of each key.
ARG_TYPES = {
    "str": "text",
    "path": "text",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "list",
    "dict": "mapping",
}
FILTER_KINDS = {
    "bool": "boolean",
    "int": "integer",
    "length": "integer",
    "count": "integer",
    "float": "number",
    "round": "number",
    "abs": "number",
    "string": "text",
    "join": "text",
    "trim": "text",
    "quote": "text",
    "lower": "text",
    "upper": "text",
    "basename": "text",
    "to_json": "text",
    "regex_replace": "text",
    "list": "list",
    "unique": "list",
    "sort": "list",
    "flatten": "list",
    "select": "list",
    "reject": "list",
    "selectattr": "list",
    "rejectattr": "list",
    "map": "list",
    "zip": "list",
    "dict2items": "list",
    "items2dict": "mapping",
    "combine": "mapping",
}
CALL_KINDS = {"dict": "mapping", "strftime": "text", "isoformat": "text", "timestamp": "number"}
SPECIAL_NAMES = {
    "ansible_check_mode": "boolean",
    "inventory_hostname": "text",
    "group_names": "list",
    "groups": "mapping",
    "hostvars": "mapping",
}
DOC_TYPES = {"list": "list", "dict": "mapping", "str": "text", "bool": "boolean", "int": "integer"}


@dataclass(frozen=True)
class Shape:
    kinds: frozenset[str] = frozenset()
    constants: frozenset[Any] | None = None  # every constant it can be, when all are known
    keys: dict[str, Shape] | None = None  # a literal mapping's keys

    def __or__(self, other: Shape) -> Shape:
        constants = (
            self.constants | other.constants
            if self.constants is not None and other.constants is not None
            else None
        )
        return Shape(self.kinds | other.kinds, constants)


UNKNOWN = Shape()


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "list" if isinstance(value, list | tuple) else "mapping"


def constant(value: Any) -> Shape:
    scalar = value is None or isinstance(value, str | int | float | bool)
    return Shape(frozenset({kind_of(value)}), frozenset({value}) if scalar else None)


# ---------------------------------------------------------------------- what a role defines


def load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=InventoryYamlLoader)  # noqa: S506 (SafeLoader)


def tasks_of(data: Any, play_vars: dict | None = None) -> Iterator[tuple[dict, dict]]:
    """Every task of a task file or playbook, blocks included, with the vars it sees."""
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        seen = {**(play_vars or {}), **(item.get("vars") or {})}
        if "hosts" in item:  # a play
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                yield from tasks_of(item.get(section), seen)
        elif "block" in item:
            for section in ("block", "rescue", "always"):
                yield from tasks_of(item.get(section), seen)
        else:
            yield item, seen


def module_args(task: dict, names: set[str]) -> dict | None:
    for name in names:
        if isinstance(task.get(name), dict):
            return task[name]
    return None


@dataclass
class Scope:
    """What a name in a role's templates can mean."""

    facts: dict[str, list[tuple[Any, dict]]] = field(default_factory=dict)  # value, task vars
    role_vars: dict[str, Any] = field(default_factory=dict)
    arg_types: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


def scope_of(path: Path) -> Scope:
    scope = Scope()
    parts = path.relative_to(REPO).parts
    files = [path]
    if parts[0] == "roles":
        role = REPO / "roles" / parts[1]
        files = sorted((role / "tasks").glob("*.yml"))
        if (role / "vars" / "main.yml").is_file():
            scope.role_vars = load(role / "vars" / "main.yml") or {}
        if (role / "defaults" / "main.yml").is_file():
            scope.defaults = load(role / "defaults" / "main.yml") or {}
        specs = role / "meta" / "argument_specs.yml"
        if specs.is_file():
            options = load(specs)["argument_specs"]["main"]["options"]
            scope.arg_types = {
                name: ARG_TYPES[o["type"]]
                for name, o in options.items()
                if o.get("type") in ARG_TYPES
            }
    for file in files:
        for task, seen in tasks_of(load(file)):
            facts = module_args(task, SET_FACT)
            for name, value in (facts or {}).items():
                if name != "cacheable":
                    scope.facts.setdefault(name, []).append((value, seen))
    return scope


# ---------------------------------------------------------------------- reading templates


class Reader:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.env = jinja2.Environment()  # noqa: S701 (templates are parsed, never rendered)
        self.resolving: set[str] = set()

    def value(self, value: Any, local: dict[str, Any]) -> Shape:
        if isinstance(value, dict):
            return Shape(
                frozenset({"mapping"}), None, {k: self.value(v, local) for k, v in value.items()}
            )
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return constant(value)
        return self.template(value, local)

    def template(self, text: str, local: dict[str, Any]) -> Shape:
        body = self.env.parse(text).body
        sets: dict[str, Shape] = {}
        parts: list[nodes.Node] = []
        for node in body:
            if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
                sets[node.target.name] = self.expr(node.node, local, sets)
            elif isinstance(node, nodes.Output):
                parts += [
                    n
                    for n in node.nodes
                    if not (isinstance(n, nodes.TemplateData) and not n.data.strip())
                ]
            elif any(isinstance(n, nodes.Output) for n in node.find_all(nodes.Output)):
                return Shape(frozenset({"text"}))
        if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
            return self.expr(parts[0], local, sets)
        return Shape(frozenset({"text"}))

    def name(self, name: str, local: dict[str, Any], sets: dict[str, Shape]) -> Shape:
        if name in sets:
            return sets[name]
        if name in local:
            return self.value(local[name], {})
        if name in SPECIAL_NAMES:
            return Shape(frozenset({SPECIAL_NAMES[name]}))
        if name in self.resolving:
            return UNKNOWN
        self.resolving.add(name)
        try:
            if name in self.scope.facts:
                shapes = [self.value(v, seen) for v, seen in self.scope.facts[name]]
                found = shapes[0]
                for shape in shapes[1:]:
                    found = found | shape
                return found
            if name in self.scope.role_vars:
                return self.value(self.scope.role_vars[name], {})
            if name in self.scope.arg_types:
                return Shape(frozenset({self.scope.arg_types[name]}))
            if name in self.scope.defaults:
                return self.value(self.scope.defaults[name], {})
            return UNKNOWN
        finally:
            self.resolving.discard(name)

    def expr(self, node: nodes.Node, local: dict[str, Any], sets: dict[str, Shape]) -> Shape:
        if isinstance(node, nodes.Const):
            return constant(node.value)
        if isinstance(node, nodes.List | nodes.Tuple):
            return Shape(frozenset({"list"}))
        if isinstance(node, nodes.Dict):
            return Shape(frozenset({"mapping"}))
        if isinstance(node, nodes.Name):
            return self.name(node.name, local, sets)
        if isinstance(node, nodes.Test | nodes.Compare | nodes.Not):
            return Shape(frozenset({"boolean"}))
        if isinstance(node, nodes.Concat):
            return Shape(frozenset({"text"}))
        if isinstance(node, nodes.CondExpr):
            other = self.expr(node.expr2, local, sets) if node.expr2 else UNKNOWN
            return self.expr(node.expr1, local, sets) | other
        if isinstance(node, nodes.And | nodes.Or):  # Jinja returns one of the operands
            return self.expr(node.left, local, sets) | self.expr(node.right, local, sets)
        if isinstance(node, nodes.Filter):
            return self.filter(node, local, sets)
        if isinstance(node, nodes.Call):
            called = node.node
            name = called.attr if isinstance(called, nodes.Getattr) else getattr(called, "name", "")
            return Shape(frozenset({CALL_KINDS[name]})) if name in CALL_KINDS else UNKNOWN
        return UNKNOWN

    def filter(self, node: nodes.Filter, local: dict[str, Any], sets: dict[str, Shape]) -> Shape:
        if node.name in ("default", "d"):
            inner = self.expr(node.node, local, sets) if node.node is not None else UNKNOWN
            fallback = self.expr(node.args[0], local, sets) if node.args else constant("")
            return inner | fallback
        if node.name in FILTER_KINDS:
            return Shape(frozenset({FILTER_KINDS[node.name]}))
        if node.name.startswith("techops.ops."):
            doc = yaml.safe_load((FILTER_DOCS / f"{node.name.rsplit('.', 1)[1]}.yml").read_text())
            returned = doc["RETURN"]["_value"]["type"]
            return Shape(frozenset({DOC_TYPES[returned]}))
        return UNKNOWN


# ---------------------------------------------------------------------- fitting a declaration


def allowed(spec: evidence.Spec) -> set[str]:
    if isinstance(spec, evidence.Value):
        kinds = set()
        for kind in spec.kinds:
            kinds |= {
                "timestamp": {"text"},
                "utc_timestamp": {"text"},
                "number": {"integer", "number"},
            }.get(kind, {kind})
    else:
        kinds = {"list"} if isinstance(spec, evidence.Items) else {"mapping"}
    return kinds | ({"null"} if spec.nullable else set())


def misfits(spec: evidence.Spec, shape: Shape, path: str) -> list[str]:
    if shape.keys is not None:
        if isinstance(spec, evidence.Variants):
            chosen = shape.keys.get(spec.key, UNKNOWN).constants
            if not chosen or not chosen <= set(spec.variants):
                return [
                    f"{path}.{spec.key}: no constant that chooses one of {sorted(spec.variants)}"
                ]
            return [
                p for value in sorted(chosen) for p in misfits(spec.variants[value], shape, path)
            ]
        if isinstance(spec, evidence.Names):
            return [p for k, s in shape.keys.items() for p in misfits(spec.value, s, f"{path}.{k}")]
        if not isinstance(spec, evidence.Record):
            return [f"{path}: publishes a mapping, declared {type(spec).__name__}"]
        found = [f"{path}.{k}: published, not declared" for k in shape.keys if k not in spec.fields]
        found += [
            f"{path}.{k}: declared, not published"
            for k in spec.fields
            if k not in shape.keys and k not in spec.optional
        ]
        for key, inner in shape.keys.items():
            if key in spec.fields:
                found += misfits(spec.fields[key], inner, f"{path}.{key}")
        return found
    found = [
        f"{path}: may be {k}, declared {sorted(allowed(spec))}"
        for k in sorted(shape.kinds - allowed(spec))
    ]
    if isinstance(spec, evidence.Value) and spec.choices and shape.constants:
        found += [
            f"{path}: may be {c!r}, declared one of {list(spec.choices)}"
            for c in sorted(shape.constants - set(spec.choices) - {None}, key=str)
        ]
    return found


def published(path: Path) -> list[tuple[str, Shape]]:
    """(area, shape) for every area every set_stats task of the file publishes."""
    reader = Reader(scope_of(path))
    found = []
    for task, seen in tasks_of(load(path)):
        args = module_args(task, SET_STATS)
        data = (args or {}).get("data") or {}
        areas = data.get("techops_evidence") if isinstance(data, dict) else None
        for area, value in (areas or {}).items():
            found.append((area, reader.value(value, seen)))
    return found


def drift(path: Path) -> list[str]:
    problems = []
    for area, shape in published(path):
        spec = evidence.AREAS.get(area)
        if spec is None:
            problems.append(f"{area}: published, but no declaration in runner/ledger/evidence.py")
            continue
        problems += misfits(spec, shape, area)
    return problems


# ---------------------------------------------------------------------- the tests


def test_every_file_that_publishes_evidence_is_read():
    names = {str(p.relative_to(REPO)) for p in PUBLISHERS}
    assert {
        "roles/patch/tasks/evidence.yml",
        "roles/patch/tasks/gate.yml",
        "roles/backup/tasks/evidence.yml",
        "roles/dr_drill/tasks/result.yml",
        "roles/vpn/tasks/evidence.yml",
        "roles/mfa/tasks/evidence.yml",
        "roles/base/tasks/evidence.yml",
        "playbooks/backup_rollback.yml",
    } <= names
    for path in PUBLISHERS:
        assert published(path), f"{path}: no set_stats with techops_evidence found"


@pytest.mark.parametrize("path", PUBLISHERS, ids=lambda p: str(p.relative_to(REPO)))
def test_what_a_role_publishes_fits_its_declaration(path):
    assert drift(path) == []


def test_every_declared_area_is_published_somewhere():
    areas = {area for path in PUBLISHERS for area, _ in published(path)}
    assert set(evidence.AREAS) == areas


def test_every_published_key_is_read_as_a_literal_mapping():
    """The static read reaches every key: a publisher whose area were one opaque
    template would make the drift check above vacuous."""
    for path in PUBLISHERS:
        for area, shape in published(path):
            assert shape.keys, f"{path}: {area} cannot be read key by key"


def test_the_drift_check_catches_a_role_that_changes():
    tasks = load(REPO / "roles/backup/tasks/evidence.yml")
    backup = tasks[1]["ansible.builtin.set_stats"]["data"]["techops_evidence"]["backup"]
    backup["compressed"] = "{{ 3 }}"  # a key the declaration does not have
    backup["archives"] = "many"  # text where an integer is declared
    backup["ran_now"] = "{{ x | default(None) }}"  # null where a boolean is declared
    del backup["client"]
    shape = Reader(scope_of(REPO / "roles/backup/tasks/evidence.yml")).value(backup, {})
    problems = misfits(evidence.AREAS["backup"], shape, "backup")
    assert "backup.compressed: published, not declared" in problems
    assert "backup.client: declared, not published" in problems
    assert "backup.archives: may be text, declared ['integer']" in problems
    assert "backup.ran_now: may be null, declared ['boolean']" in problems


def test_a_refused_patch_and_a_patch_that_ran_are_told_apart():
    """The gate publishes the refused shape; the role's evidence the other two."""
    gate = dict(published(REPO / "roles/patch/tasks/gate.yml"))["patch"]
    ran = dict(published(REPO / "roles/patch/tasks/evidence.yml"))["patch"]
    assert gate.keys["status"].constants == {"refused"}
    assert ran.keys["status"].constants == {"ok", "failed"}


def _declared_keys(spec, path: str = "") -> list[str]:
    """Every key a declaration names, with its path, but those of booleans (the redactor
    leaves a boolean alone: `password_authentication: false` is a setting)."""
    if isinstance(spec, evidence.Record):
        return [
            found
            for key, field in spec.fields.items()
            for found in [
                *([] if getattr(field, "kinds", ()) == ("boolean",) else [f"{path}{key}"]),
                *_declared_keys(field, f"{path}{key}."),
            ]
        ]
    if isinstance(spec, evidence.Variants):
        return [k for variant in spec.variants.values() for k in _declared_keys(variant, path)]
    if isinstance(spec, evidence.Items | evidence.Names):
        return _declared_keys(spec.item if isinstance(spec, evidence.Items) else spec.value, path)
    return []


def test_no_evidence_key_looks_like_a_secrets_name():
    """The recorder redacts the value of every key named like a secret (pass, password,
    token, ...), wherever it appears: evidence under such a name would reach the record as
    **redacted** and fail its declaration (as `login_defs.pass_max_days` once did)."""
    from runner.ledger.redact import is_secret_name

    named = [
        f"{area}: {key}"
        for area, spec in evidence.AREAS.items()
        for key in _declared_keys(spec)
        if is_secret_name(key.rsplit(".", 1)[-1])
    ]
    assert named == []
