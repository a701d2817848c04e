"""The repository as AWX, AAP and ansible-navigator take it: an execution environment
whose build context ansible-builder makes, pins equal to the project's own, and navigator
settings that navigator itself accepts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.helpers import REPO

BIN = Path(sys.executable).parent
EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())


def project_pins() -> dict[str, str]:
    """name -> requirement, from pyproject.toml's dependencies."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {}
    for requirement in data["project"]["dependencies"]:
        name = re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0]
        pins[name.lower()] = requirement.replace(" ", "")
    return pins


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


def test_the_execution_environment_pins_what_the_project_pins():
    pins = project_pins()
    deps = EE["dependencies"]
    listed = [
        deps["ansible_core"]["package_pip"],
        deps["ansible_runner"]["package_pip"],
        *deps["python"],
    ]
    assert {requirement_name(r) for r in listed} >= {"ansible-core", "ansible-runner", "ansible"}
    for requirement in listed:
        name = requirement_name(requirement)
        assert name in pins, f"{name} is in the execution environment but not in pyproject.toml"
        assert requirement.replace(" ", "") == pins[name], (
            f"execution-environment.yml has {requirement}, pyproject.toml {pins[name]}"
        )


def test_the_plugins_third_party_imports_are_in_the_execution_environment():
    """What the filter plugins import on the controller must be installed in the EE."""
    wanted = {"croniter": "croniter", "dateutil": "python-dateutil", "yaml": "pyyaml"}
    names = {requirement_name(r) for r in EE["dependencies"]["python"]}
    for path in (REPO / "plugins" / "filter").glob("*.py"):
        for module in re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.M):
            if module in wanted:
                assert wanted[module] in names, f"{path.name} imports {module}"


def test_ansible_builder_makes_the_build_context(tmp_path):
    context = tmp_path / "context"
    proc = subprocess.run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "-f",
            str(REPO / "execution-environment.yml"),
            "-c",
            str(context),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    assert f'ARG EE_BASE_IMAGE="{EE["images"]["base_image"]["name"]}"' in containerfile
    assert 'ARG PKGMGR="/usr/bin/apt-get"' in containerfile
    refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile)
    assert refs is not None
    pins = project_pins()
    assert sorted(refs.group(1).split()) == sorted([pins["ansible-core"], pins["ansible-runner"]])
    python = (context / "_build" / "requirements.txt").read_text().split()
    assert python == [r.replace(" ", "") for r in EE["dependencies"]["python"]]
    assert "openssh-client [platform:dpkg]" in (context / "_build" / "bindep.txt").read_text()
    # Nothing from Galaxy: it is unreachable from our machines.
    assert not (context / "_build" / "requirements.yml").exists()
    assert "ansible-galaxy collection install" not in containerfile


def test_ansible_navigator_accepts_the_settings_and_keeps_no_unredacted_artifacts(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["XDG_CACHE_HOME"] = str(tmp_path)  # navigator's collection cache
    proc = subprocess.run(
        [str(BIN / "ansible-navigator"), "settings", "--effective", "--mode", "stdout"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    settings = yaml.safe_load(proc.stdout)["ansible-navigator"]
    assert settings["execution-environment"]["enabled"] is False
    assert settings["execution-environment"]["pull"]["policy"] == "never"
    assert settings["playbook-artifact"]["enable"] is False
    assert settings["mode"] == "stdout"
    assert settings["ansible"]["config"]["path"] == str(REPO / "ansible.cfg")
    assert settings["logging"]["file"] == str(REPO / ".techops" / "ansible-navigator.log")


def test_awx_finds_the_collections_the_content_uses():
    """AWX installs collections/requirements.yml when it syncs a project: every collection
    a role or playbook names by its fully qualified name must be there."""
    requirements = REPO / "collections" / "requirements.yml"
    listed = {c["name"] for c in yaml.safe_load(requirements.read_text())["collections"]}
    used = set()
    for path in [*REPO.glob("roles/*/**/*.yml"), *REPO.glob("playbooks/*.yml")]:
        for namespace, name in re.findall(
            r"\b(ansible|community|containers)\.(\w+)\.\w+", path.read_text()
        ):
            used.add(f"{namespace}.{name}")
    used.discard("ansible.builtin")
    assert used, "no collection found: the pattern above no longer matches the roles"
    assert used <= listed, f"used but not in {requirements}: {sorted(used - listed)}"
