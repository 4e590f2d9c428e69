"""One isolated worker: a job run in a fresh process, stopped cleanly, talking in JSON lines.

The parent (``compare.py``, ``benchmarks/step_benchmark.py``) calls ``run``: it writes the job
to ``job.json`` in the job's folder and starts ``python -m MODULE job.json`` in its own process
group, so that stopping it stops whatever it started too. The child (a module whose main
calls ``serve``) writes one JSON object per line on its stdout, each with an ``event``:

    {"event": "started", "pid": 1234}
    {"event": "progress", "step": 3, "num_epochs": 200, "losses": {...}, "lr": 0.3, "run": [0, 1]}
    {"event": "finished", "result": {...}}

Its stderr (framework log lines, tracebacks) goes to ``stderr.txt`` in the job folder, whose
end explains a worker that died without a "finished". The parent draws any progress bars.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common import atomic
from tools import strict_json

REPO = Path(__file__).resolve().parent.parent
# The parent's pid, for stop_with_parent: read from here, a kill during the child's start-up is not missed.
PARENT_PID = "WORKER_PARENT_PID"
STDERR_FILE = "stderr.txt"
STOP_GRACE_S = 10  # between SIGTERM and SIGKILL


def command(module: str) -> list[str]:
    """The command that runs ``module`` as a worker; the job file is appended."""
    return [sys.executable, "-m", module]


@dataclass(frozen=True)
class Outcome:
    """How a worker ended: its exit code (None: stopped at the timeout), its result, its last words."""

    returncode: int | None
    result: dict | None  # the "finished" message's result; None if none came
    stderr_tail: str


# --- the parent's side -------------------------------------------------------------------


def run(cmd: list[str], job, folder: Path, timeout: float,
        on_message: Callable[[dict], None] | None = None) -> Outcome:
    """Run ``cmd job.json`` (``job`` a tools.jobs record) in ``folder``; KeyboardInterrupt stops it and propagates."""
    folder = folder.absolute()  # the worker runs in the checkout, not in the caller's folder
    folder.mkdir(parents=True, exist_ok=True)
    job_path = folder / "job.json"
    atomic.write_text(job_path, job.to_json())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), **{PARENT_PID: str(os.getpid())})
    messages: list[dict] = []
    with open(folder / STDERR_FILE, "wb") as stderr:
        process = subprocess.Popen([*cmd, str(job_path)], cwd=REPO, env=env, start_new_session=True,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    reader = threading.Thread(target=_read_messages, args=(process.stdout, messages, on_message), daemon=True)
    reader.start()
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        returncode = None
    except KeyboardInterrupt:
        stop(process)
        raise
    finally:
        reader.join(timeout=5)
    finished = [m for m in messages if m.get("event") == "finished"]
    return Outcome(returncode, finished[-1].get("result") if finished else None, _tail(folder / STDERR_FILE))


def _read_messages(stream, messages: list[dict], on_message) -> None:
    for line in stream:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # not ours: serve() points stray prints at stderr, but a C library may still write here
        if isinstance(message, dict) and "event" in message:
            messages.append(message)
            try:
                if on_message is not None:
                    on_message(message)
            except Exception:  # a broken bar must not stop the reading: a full pipe would stall the worker
                on_message = None


def _tail(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the worker's process group, SIGKILL it after STOP_GRACE_S."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            pass


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a cancelled CI job, a closed terminal, ``timeout``): handled like Ctrl-C."""

    def __init__(self, signum: int):
        self.signum, self.name = signum, signal.Signals(signum).name
        super().__init__(self.name)


@contextlib.contextmanager
def stop_signals_as_interrupts():
    """Turn SIGTERM and SIGHUP into ``Stopped`` while the body runs, so workers are stopped and results kept."""

    def handler(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    return 128 + getattr(exc, "signum", signal.SIGINT)


# --- the child's side --------------------------------------------------------------------

_channel = sys.stdout  # serve() gives the messages their own copy of stdout


def send(event: str, **fields) -> None:
    """One message to the parent, as one JSON line (NaN and infinity as null: see strict_json)."""
    _channel.write(strict_json.dumps({"event": event, **fields}) + "\n")
    _channel.flush()


def serve(main: Callable[[Path], dict], argv: list[str]) -> int:
    """A worker module's entry point: ``main(job_path)`` returns the result the parent receives."""
    global _channel
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stop_with_parent()
    # Messages keep the real stdout; anything else printed there goes to stderr.txt with the logs.
    _channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    send("started", pid=os.getpid())
    result = main(Path(argv[0]))
    send("finished", result=result)
    return 0


def stop_with_parent() -> None:
    """End this worker when its parent ends, even by SIGKILL (Linux; elsewhere nothing).

    The parent starts each worker in its own process group and stops it on Ctrl-C, SIGTERM and
    SIGHUP; a signal it cannot catch would otherwise leave the worker running outside any timeout.
    """
    import ctypes

    parent = int(os.environ.get(PARENT_PID, os.getppid()))  # read before start-up, which a kill may outrun
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
