"""What techops keeps for itself is its owner's only; what it did not create keeps its mode."""

from __future__ import annotations

import os
import stat

import pytest

from runner.core.paths import private_dirs, state_dir


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def common_umask():
    """The usual umask, under which a plain mkdir gives 0755 and a new file 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dirs_makes_each_missing_directory_0700(tmp_path, common_umask):
    tmp_path.chmod(0o755)
    private_dirs(tmp_path / "elsewhere" / "dir")
    assert mode(tmp_path / "elsewhere") == 0o700
    assert mode(tmp_path / "elsewhere" / "dir") == 0o700
    assert mode(tmp_path) == 0o755  # not created here: left as it was
    private_dirs(tmp_path / "elsewhere" / "dir")  # already there: nothing to do


def test_private_dirs_leaves_existing_directories_alone(tmp_path, common_umask):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)  # a /tmp of its own
    private_dirs(shared / "mine")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert mode(shared / "mine") == 0o700


def test_private_dirs_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        private_dirs(tmp_path / "file" / "dir")


def test_the_state_directory_is_created_0700(tmp_path, monkeypatch, common_umask):
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    assert state_dir() == tmp_path / ".techops"
    assert mode(tmp_path / ".techops") == 0o700
