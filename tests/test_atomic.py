"""Outputs are written whole or not at all, with a new file's usual permissions."""

from __future__ import annotations

import stat

import pytest

from common import atomic


def test_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "out" / "results.json"
    atomic.write_text(target, "first")
    atomic.write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # no temporary left


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "summary.md"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.md"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_new_files_get_the_umask_mode_not_mkstemps_owner_only(tmp_path, monkeypatch, umask, mode):
    monkeypatch.setattr(atomic, "UMASK", umask)
    atomic.write_text(tmp_path / "a.md", "x")
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == mode
