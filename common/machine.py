"""The machine a result came from: CPU model, ISA flags, cores, thread settings, GPUs.

Every result (compare.py's results.json, the step benchmark's JSON, RESULTS.md)
records ``describe()``, so that figures from two machines are never confused:
the same commit ran 1.6x slower in TensorFlow on an AVX2-only EPYC than on one
with AVX-512, and rounded differently. Imports no framework.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

# The instruction-set flags (as /proc/cpuinfo spells them) that change which kernels
# oneDNN, XLA and Eigen pick, and so both speed and float32 rounding.
ISA_FLAGS = ("avx", "fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16")

# Settings that change threads, kernels or summation order; recorded as set (None: unset).
THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                   "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "XLA_FLAGS")

# What must be equal for two results to come from the same machine in the same setting.
IDENTITY = ("cpu", "isa", "cpu_count", "threads", "gpus")


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def isa_flags() -> list[str]:
    """Which of ISA_FLAGS this CPU has (empty where /proc/cpuinfo is missing, as on macOS)."""
    present = set((_cpuinfo_field("flags") or "").split())
    return [flag for flag in ISA_FLAGS if flag in present]


def thread_settings() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in THREAD_SETTINGS}


def gpu_names() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def describe(gpus: list[str] | None = None) -> dict:
    """This machine as a JSON-ready dict; ``gpus`` defaults to what nvidia-smi lists."""
    gpus = gpu_names() if gpus is None else gpus
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "isa": isa_flags(),
        "threads": thread_settings(),
        "gpus": gpus,
        "device": gpus[0] if gpus else cpu_name(),
    }


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two ``describe()`` results, one phrase each; empty if the same machine and settings.

    A result from before machines were recorded in full lacks some keys: unknown is not different.
    """
    found = []
    for key in IDENTITY:
        if key in a and key in b and a[key] != b[key]:
            found.append(f"{key} {_short(a[key])} vs {_short(b[key])}")
    return found


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + (", ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "none set") + "}"
    if isinstance(value, list):
        return "[" + " ".join(map(str, value)) + "]" if value else "[]"
    return str(value)


def summary(m: dict) -> str:
    """One line for a report's header."""
    threads = ", ".join(f"{k}={v}" for k, v in (m.get("threads") or {}).items() if v is not None) or "no thread settings"
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    return (f"{m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores, ISA {' '.join(m.get('isa') or []) or '?'}; "
            f"{threads}; {gpus}")


# --- the peak: how fast this machine multiplies matrices ---------------------------------

# Square sizes timed for the peak. Several, because the best size differs between
# libraries and caches; large enough that one product's dispatch costs nothing.
CPU_PEAK_SIZES = (1024, 2048)
GPU_PEAK_SIZES = (4096, 8192)


def best_matmul_flops(square_matmul: Callable[[int], Callable[[], object]], wait: Callable[[object], None],
                      sizes=CPU_PEAK_SIZES, blocks: int = 5, block_s: float = 0.25) -> float:
    """The best FLOP/s of n x n matrix products over ``sizes``, each timed in ``blocks`` blocks.

    ``square_matmul(n)`` returns a function that queues one product and returns its result;
    ``wait(result)`` waits until it (and everything queued before it) is done. The best block, not
    the median: a peak is what the hardware can do, and noise from other processes only slows it.
    """
    best = 0.0
    for n in sizes:
        product = square_matmul(n)
        start = time.perf_counter()
        wait(product())  # warm-up: allocation, compilation, thread start
        wait(product())
        per_product = max(time.perf_counter() - start, 1e-9) / 2
        count = max(1, round(block_s / per_product))
        for _ in range(blocks):
            start = time.perf_counter()
            for _ in range(count):
                out = product()
            wait(out)
            best = max(best, 2.0 * n**3 * count / (time.perf_counter() - start))
    return best


def numpy_matmul_flops(precision: str = "float32") -> float | None:
    """NumPy's (its BLAS's) float32 sgemm rate; None for bf16, which NumPy has not."""
    if precision == "bf16":
        return None
    import numpy as np

    def square_matmul(n):
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        return lambda: a @ a

    return best_matmul_flops(square_matmul, wait=lambda out: None)
