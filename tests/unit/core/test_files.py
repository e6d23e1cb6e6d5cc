"""cxbackup.core.files: the one way files are written whole, and private ones 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cxbackup.core.files import NewFile, write_file


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_a_private_file_is_exactly_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert write_file(tmp_path / "tenant.key", b"key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "tenant.key") == 0o600
    assert _names(tmp_path) == ["tenant.key"]


def test_an_existing_file_is_kept_unless_replacing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"the user's")
    assert not write_file(target, b"new")
    assert target.read_bytes() == b"the user's" and _names(tmp_path) == ["out"]
    assert write_file(target, b"new", replace=True)
    assert target.read_bytes() == b"new" and _mode(target) == 0o600


def test_nothing_appears_until_placed_and_an_error_leaves_nothing(tmp_path: Path) -> None:
    with NewFile(tmp_path / "a") as new:
        new.write(b"half")
        assert not (tmp_path / "a").exists() and new.temp.name.startswith(".a.")
    assert _names(tmp_path) == []  # left without place(): removed
    with pytest.raises(RuntimeError), NewFile(tmp_path / "b") as new:
        new.write(b"x")
        raise RuntimeError("failed half way")
    assert _names(tmp_path) == []
