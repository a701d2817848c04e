"""bench/patch_window.py reads batch and reboot times from Ansible's JSON events: checked on
a record shaped as the JSON callback writes it for a canary play and two serial batches."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import patch_window


def _span(start: int, end: int) -> dict:
    return {
        "start": f"2026-12-02T00:{start // 60:02d}:{start % 60:02d}.000000Z",
        "end": f"2026-12-02T00:{end // 60:02d}:{end % 60:02d}.000000Z",
    }


def _play(name: str, start: int, end: int, hosts: list[str], reboot: tuple[int, int] | None):
    tasks = [
        {
            "task": {"name": "patch : Refresh the cache", "duration": _span(start, start + 1)},
            "hosts": {h: {} for h in hosts},
        }
    ]
    if reboot:
        tasks.append(
            {
                "task": {
                    "name": "patch : Reboot and wait for the host to come back",
                    "duration": _span(*reboot),
                },
                "hosts": {h: {"changed": True} for h in hosts},
            }
        )
    return {"play": {"name": name, "duration": _span(start, end)}, "tasks": tasks}


RECORD = {
    "plays": [
        _play("Check the window, choose the canaries", 0, 1, ["a", "b", "c"], None),
        _play("Patch the canaries first", 1, 11, ["a"], (4, 8)),
        _play("Patch the other hosts in batches", 11, 20, ["b"], (13, 16)),
        _play("Patch the other hosts in batches", 20, 31, ["c"], (22, 27)),
    ],
    "custom_stats": {
        "a": {"techops_evidence": {"patch": {"reboot_s": 4, "rebooted": True}}},
        "b": {"techops_evidence": {"patch": {"reboot_s": 3, "rebooted": True}}},
        "c": {"techops_evidence": {"patch": {"reboot_s": 5, "rebooted": True}}},
    },
}


def test_each_batch_has_its_time_and_its_reboot_wait(monkeypatch):
    seen = {}

    def fake_playbook(common, name, extra):
        seen.update(name=name, extra=extra)
        return RECORD

    monkeypatch.setattr(patch_window, "playbook", fake_playbook)
    run = patch_window.patch_run(["-i", "inv"], "always", 1, 1)
    assert seen["name"] == "playbooks/patch.yml"
    assert seen["extra"]["patch_reboot"] == "always"
    assert seen["extra"]["patch_serial"] == 1 and seen["extra"]["patch_canary_count"] == 1
    assert seen["extra"]["patch_force_reason"]  # a run outside the window needs a reason
    assert [(b["hosts"], b["took"], b["reboot_wait"]) for b in run["batches"]] == [
        (["a", "b", "c"], 1.0, 0.0),
        (["a"], 10.0, 4.0),
        (["b"], 9.0, 3.0),
        (["c"], 11.0, 5.0),
    ]
    assert run["reboot_wait"] == pytest.approx(12.0)
    assert sorted(run["reboots"]) == [3.0, 4.0, 5.0]
    assert run["rebooted"] == 3


def test_a_run_without_reboots_waits_on_none(monkeypatch):
    quiet = {
        "plays": [_play("Patch the canaries first", 0, 5, ["a"], None)],
        "custom_stats": {"a": {"techops_evidence": {"patch": {"reboot_s": None}}}},
    }
    monkeypatch.setattr(patch_window, "playbook", lambda *args: quiet)
    run = patch_window.patch_run([], "never", 2, 1)
    assert run["reboot_wait"] == 0.0 and run["reboots"] == [] and run["rebooted"] == 0
