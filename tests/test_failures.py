"""Out of memory is told apart from a crash, with the size asked for (issue 18 item 7; tools/failures.py).

The messages below are the frameworks' own, copied from real failures on this machine (torch 2.x, TensorFlow
2.21, jax 0.10: a tensor of 2**45 bytes, and the same under ``ulimit -v``); the live tests trigger them again.
"""

from __future__ import annotations

import signal
import sys
import textwrap

import pytest

import backends
from common.config import D2L
from tools import failures
from tools.jobs import Job

TORCH_CPU = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
             "allocate 35184372088832 bytes. Error code 12 (Cannot allocate memory)")
TENSORFLOW = ("{{function_node __wrapped__Fill_device_/job:localhost/replica:0/task:0/device:CPU:0}} OOM when "
              "allocating tensor with shape[1073741824] and type float on /job:localhost/replica:0/task:0/device:CPU:0 "
              "by allocator cpu [Op:Fill] name: ")
TENSORFLOW_WARNING = ("W0000 00:00:1796396999.017818    6628 cpu_allocator_impl.cc:82] Allocation of 4294967296 "
                      "exceeds 10% of free system memory.")
XLA = "RESOURCE_EXHAUSTED: Out of memory allocating 4294967296 bytes."
TORCH_CUDA = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which "
              "1.5 GiB is free.")


class ResourceExhaustedError(Exception):  # TensorFlow's class name, as the worker sees it
    pass


class JaxRuntimeError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError(TORCH_CPU), "out of memory (asked for 32.0 TiB): RuntimeError: [enforce fail"),
        (ResourceExhaustedError(TENSORFLOW), "out of memory (asked for 4.0 GiB): ResourceExhaustedError: "),
        (JaxRuntimeError(XLA), "out of memory (asked for 4.0 GiB): JaxRuntimeError: RESOURCE_EXHAUSTED"),
        (RuntimeError(TORCH_CUDA), "out of memory (asked for 2.0 GiB): RuntimeError: CUDA out of memory"),
        (MemoryError(), "out of memory: MemoryError"),
    ],
    ids=["torch-cpu", "tensorflow", "xla", "torch-cuda", "python"],
)
def test_allocation_failures_read_as_out_of_memory_with_the_size(exc, expected):
    failure = failures.from_exception(exc)
    assert failure.status == "out of memory" and failure.error.startswith(expected), failure.error
    assert "\n" not in failure.error and len(failure.error) <= 300


def test_other_errors_are_crashes():
    failure = failures.from_exception(RuntimeError("CUDA error: an illegal memory access was encountered\nmore"))
    assert failure == failures.Failure("crashed", "RuntimeError: CUDA error: an illegal memory access was encountered")


@pytest.mark.parametrize(
    ("returncode", "tail", "status", "error"),
    [
        (-signal.SIGKILL, "", "out of memory", "killed by signal 9 (SIGKILL): likely out of memory"),
        (-signal.SIGSEGV, f"step 3\n{TENSORFLOW_WARNING}\n", "out of memory",
         "killed by signal 11 (SIGSEGV) after asking for 4.0 GiB: likely out of memory"),
        (-signal.SIGSEGV, "step 3\n", "crashed", "killed by signal 11 (SIGSEGV)"),
        (1, f"Traceback (most recent call last):\nRuntimeError: {TORCH_CPU}\n", "out of memory",
         "out of memory (asked for 32.0 TiB): exit code 1"),
        (1, "Traceback...\nRuntimeError: CUDA error: an illegal memory access\n", "crashed",
         "exit code 1: RuntimeError: CUDA error: an illegal memory access"),
    ],
    ids=["sigkill", "segfault-after-large-allocation", "segfault", "uncaught-allocator-error", "other-exit"],
)
def test_a_worker_that_died_is_read_from_its_signal_and_last_words(returncode, tail, status, error):
    failure = failures.from_exit(returncode, tail)
    assert failure.status == status and failure.error.startswith(error), failure.error


# --- live: each framework's own allocation failure, in the runner's own handler ------------------------

HUGE = {  # far beyond any machine's address space, so it fails at once whatever the overcommit setting
    "torch": "import torch; torch.empty(2**62, dtype=torch.uint8)",
    "tensorflow": "import tensorflow as tf; tf.zeros([2**60], tf.uint8)",
    "jax": "import jax.numpy as jnp; jnp.zeros(2**60, jnp.uint8).block_until_ready()",
}


def test_each_frameworks_real_allocation_failure_becomes_an_out_of_memory_row(backend, tmp_path, monkeypatch):
    """The runner's handler, given the exception the framework really raises (backend fixture: safe import order)."""
    from tools import stylize_worker

    def allocate_too_much(job, started):
        exec(HUGE[backend.name], {})

    monkeypatch.setattr(stylize_worker, "run", allocate_too_much)
    job = tmp_path / "job.json"
    job.write_text(Job(backend=backend.name, out_dir=str(tmp_path), config=D2L, content="c", style="s").to_json())
    result = stylize_worker.main(job)
    assert result["status"] == "out of memory", result
    assert "asked for" in result["error"] or backend.name == "tensorflow" and "OOM" in result["error"], result


FAKE_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    sys.stderr.write({tail!r})
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV) if {segv} else sys.exit(1)
    """
)


@pytest.mark.parametrize(("tail", "segv", "status"), [
    (TENSORFLOW_WARNING + "\n", True, "out of memory"),
    (f"Traceback (most recent call last):\nRuntimeError: {TORCH_CPU}\n", False, "out of memory"),
    ("Fatal Python error: Segmentation fault\n", True, "crashed"),
], ids=["tensorflow-segfault", "torch-uncaught", "plain-segfault"])
def test_compare_reads_a_dead_worker_through_the_same_function(tmp_path, monkeypatch, tail, segv, status):
    import compare

    worker = tmp_path / "worker.py"
    worker.write_text(FAKE_WORKER.format(tail=tail, segv=segv))
    monkeypatch.setattr(compare, "RUNNER", [sys.executable, str(worker)])
    monkeypatch.setattr(backends, "why_unavailable", lambda name: None)
    job = Job(backend="tensorflow", out_dir=str(tmp_path / "job"), config=D2L, content="c", style="s")
    row = compare.run_backend(job, timeout=60, quiet=True)
    assert row.status == status, row
