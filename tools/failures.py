"""What a failed backend run was: out of memory (with the size it asked for) or a crash.

One place reads the frameworks' allocation failures, from an exception in the
worker or from the tail of a worker that died. The patterns are the frameworks'
own words, taken from real failures (``tests/test_failures.py`` keeps them):

- PyTorch (CPU): ``DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes``
- PyTorch (CUDA): ``CUDA out of memory. Tried to allocate 2.00 GiB``
- TensorFlow: ``ResourceExhaustedError``, ``OOM when allocating tensor with shape[N] and type float``;
  before an allocation that may fail it logs ``Allocation of N exceeds 10% of free system memory``,
  and under a memory limit it may then die of SIGSEGV instead of raising
- XLA (JAX): ``RESOURCE_EXHAUSTED: Out of memory allocating N bytes``
"""

from __future__ import annotations

import math
import re
import signal
from dataclasses import dataclass

OUT_OF_MEMORY = "out of memory"
CRASHED = "crashed"

_BYTES = {"float": 4, "double": 8, "half": 2, "bfloat16": 2, "int32": 4, "int64": 8, "uint8": 1, "int8": 1, "bool": 1}
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}

# (pattern, how its match becomes the bytes asked for, or None where the message gives no size)
_ALLOCATION_FAILURES = (
    (re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes"), lambda m: int(m[1])),
    (re.compile(r"out of memory\. Tried to allocate ([\d.]+) ?([KMGT]?i?B)", re.IGNORECASE),
     lambda m: float(m[1]) * _UNITS.get(m[2], 1)),
    (re.compile(r"Out of memory (?:while trying to )?allocating (\d+) bytes", re.IGNORECASE), lambda m: int(m[1])),
    (re.compile(r"OOM when allocating tensor with shape\[([\d,\s]*)\] and type (\w+)"),
     lambda m: math.prod(int(d) for d in m[1].split(",") if d.strip()) * _BYTES.get(m[2], 4)),
    (re.compile(r"RESOURCE_EXHAUSTED|ResourceExhaustedError|std::bad_alloc|\bMemoryError\b|out of memory",
                re.IGNORECASE), None),
)
# TensorFlow's warning before a large allocation; with a signal after it, evidence of running out.
_LARGE_ALLOCATION = re.compile(r"Allocation of (\d+) exceeds \d+% of free system memory")


@dataclass(frozen=True)
class Failure:
    status: str  # OUT_OF_MEMORY or CRASHED
    error: str  # one line


def human_bytes(n: float) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f} {unit}"
    return f"{n:.0f} bytes"


def out_of_memory(text: str) -> str | None:
    """If ``text`` reports an allocation failure: "out of memory" and, where it says, the size asked for."""
    for pattern, size in _ALLOCATION_FAILURES:
        match = pattern.search(text)
        if match:
            return OUT_OF_MEMORY + (f" (asked for {human_bytes(size(match))})" if size else "")
    return None


def from_exception(exc: BaseException) -> Failure:
    """An exception raised in the worker: out of memory if it says so, else a crash (its first line)."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {exc}"
    oom = out_of_memory(text)
    if oom:
        return Failure(OUT_OF_MEMORY, f"{oom}: {type(exc).__name__}: {first_line}"[:300].rstrip(": "))
    return Failure(CRASHED, f"{type(exc).__name__}: {first_line}".rstrip(": ")[:300])


def from_exit(returncode: int, stderr_tail: str) -> Failure:
    """A worker that ended without writing its result: a signal or an exit code, read with its last output."""
    lines = stderr_tail.replace("\r", "\n").strip().splitlines()
    oom = out_of_memory(stderr_tail)
    if returncode < 0:
        number = -returncode
        try:
            killed = f"killed by signal {number} ({signal.Signals(number).name})"
        except ValueError:
            killed = f"killed by signal {number}"
        if number == signal.SIGKILL:  # what the kernel's OOM killer sends
            return Failure(OUT_OF_MEMORY, f"{killed}: likely out of memory (the kernel's OOM killer sends SIGKILL)")
        large = _LARGE_ALLOCATION.findall(stderr_tail)
        if oom or large:
            asked = f" after asking for {human_bytes(int(large[-1]))}" if large else ""
            return Failure(OUT_OF_MEMORY, f"{killed}{asked}: likely out of memory")
        return Failure(CRASHED, killed)
    if oom:
        return Failure(OUT_OF_MEMORY, f"{oom}: exit code {returncode}")
    return Failure(CRASHED, f"exit code {returncode}: {lines[-1] if lines else ''}".rstrip(": ")[:300])
