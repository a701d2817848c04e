"""The execution environment, built offline with podman from the local Debian 12 image, runs
the repository's content: a module and filters of techops.ops and a collection of PyPI's
`ansible` package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

IMAGE = "localhost/techops-ee:citest"
BIN = Path(sys.executable).parent


def succeeds(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; fail the test with its output unless it succeeded."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def controller_ca() -> Path | None:
    """The CA bundle pip trusts on this machine, if its configuration names one: PyPI is
    reached through it, so the build's pip must trust it too."""
    if os.environ.get("PIP_CERT"):
        return Path(os.environ["PIP_CERT"])
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"],
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run scripts/setup as root")
    base = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    base_image = base["images"]["base_image"]["name"]
    if subprocess.run(["podman", "image", "exists", base_image], check=False).returncode:
        pytest.skip(f"{base_image} is not built: run `techops lab build` (scripts/test images)")
    work = tmp_path_factory.mktemp("ee")
    definition = base
    ca = controller_ca()
    if ca is not None:
        # The definition as it is, plus this machine's CA for pip inside the build.
        shutil.copy(ca, work / "controller-ca.crt")
        definition.setdefault("additional_build_files", []).append(
            {"src": "controller-ca.crt", "dest": "certs"}
        )
        definition["additional_build_steps"]["prepend_base"][:0] = [
            "COPY _build/certs/controller-ca.crt /etc/ssl/certs/controller-ca.crt",
            "ENV PIP_CERT=/etc/ssl/certs/controller-ca.crt",
        ]
    (work / "execution-environment.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    succeeds(
        [
            str(BIN / "ansible-builder"),
            "build",
            "-f",
            str(work / "execution-environment.yml"),
            "-c",
            str(work / "context"),
            "-t",
            IMAGE,
            "--container-runtime",
            "podman",
        ],
        timeout=1800,
    )
    return IMAGE


def test_the_image_runs_the_content_with_its_collections(image):
    proc = succeeds(
        [
            "podman",
            "run",
            "--rm",
            "-v",
            f"{REPO}:/runner/project:ro",
            "-w",
            "/runner/project",
            "-e",
            "ANSIBLE_CACHE_PLUGIN=ansible.builtin.memory",
            "-e",
            "ANSIBLE_STDOUT_CALLBACK=ansible.builtin.json",
            "-e",
            "ANSIBLE_SHOW_CUSTOM_STATS=true",
            image,
            "ansible-playbook",
            "-i",
            "localhost,",
            "tests/fixtures/playbooks/ee_probe.yml",
        ],
        timeout=600,
    )
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert result["stats"]["localhost"]["failures"] == 0
    assert result["global_custom_stats"]["ee_probe"] == {
        "missing": ["techops-no-such-package"],
        "gateway": "10.9.0.1",
        "window_open": True,
    }


def test_the_image_has_the_pinned_ansible(image):
    proc = succeeds(["podman", "run", "--rm", image, "ansible", "--version"], timeout=120)
    wanted = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    core = wanted["dependencies"]["ansible_core"]["package_pip"].split("==")[1]
    assert f"core {core}]" in proc.stdout.splitlines()[0]
