"""The output folder of a compare run: checked writable, locked for one run, cleared of the last run's files.

Every file in it is written whole (common/atomic.py); this module knows which files a run
writes, so that a rerun with fewer backends leaves nothing stale and the closing line is true.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import backends  # imports no framework
from common.errors import UserError
from tools.cli import printable
from tools.jobs import Result

JOBS = ".jobs"  # the workers' folders, removed at the end of a run


def prepare_out(path: Path) -> Path:
    """Create the output folder and prove it writable, or raise a one-line ``UserError``; returns it absolute."""
    out = path.absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--out {printable(str(path))!r} is a file (or lies under one), not a folder") from None
    except OSError as exc:
        raise UserError(f"--out {printable(str(path))!r}: cannot write there ({exc.strerror})") from None
    return out


@contextlib.contextmanager
def lock_out(out: Path, shown: Path):
    """Hold the output folder for this run; another run into it is refused with one line."""
    with open(out / ".compare.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another compare.py run is writing to --out {printable(str(shown))!r}; "
                            "wait for it to finish or choose another --out") from None
        except OSError:
            pass  # a file system without locks (some network mounts): run unlocked
        yield  # the kernel releases the lock when the file closes, or when this process dies


def run_files(names) -> list[str]:
    """What a compare run writes into its folder, per run and per backend (stale ones are removed at its start)."""
    per_backend = [f"{name}{suffix}" for name in names for suffix in (".png", ".npy", "-traceback.txt")]
    return ["results.json", "summary.md", "side_by_side.png", "losses.png", *per_backend]


def remove_previous_run(out: Path) -> None:
    """A rerun with fewer backends must not leave the last run's images and tracebacks looking current."""
    for name in run_files(backends.NAMES):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / JOBS, ignore_errors=True)


def what_was_written(shown: Path, results: list[Result], out: Path) -> str:
    """The closing line: the files this run wrote, and each backend that left no image, with why."""
    finished = [r.backend for r in results if r.ok]
    written = [name for name in run_files([r.backend for r in results]) if (out / name).exists()]
    missing = [f"{r.backend}.png ({r.status})" for r in results if not r.ok]
    line = f"wrote {printable(str(shown))}/: {', '.join(written)}"
    if not finished:
        line = "no backend finished; " + line + " (content and style only in side_by_side.png)"
    return line + (f"; not written: {', '.join(missing)}" if missing else "")


def collect(job_dir: Path, out: Path, name: str) -> None:
    """Move a finished backend's image (and any traceback) into the output folder."""
    for src, dst in ((job_dir / f"{name}.png", out / f"{name}.png"), (job_dir / f"{name}.npy", out / f"{name}.npy"),
                     (job_dir / "traceback.txt", out / f"{name}-traceback.txt")):
        if src.exists():
            os.replace(src, dst)
