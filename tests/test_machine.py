"""common/machine.py: the machine every result records, and the one peak every "of peak" divides by."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common import machine
from tools import report


def test_describe_names_the_cpu_its_isa_and_thread_settings(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    m = machine.describe(gpus=[])
    assert m["cpu"] and m["cpu_count"] >= 1 and m["gpus"] == [] and m["device"] == m["cpu"]
    assert set(m["isa"]) <= set(machine.ISA_FLAGS)
    assert m["threads"]["ONEDNN_MAX_CPU_ISA"] == "AVX2" and m["threads"]["OMP_NUM_THREADS"] is None
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in machine.summary(m)
    json.dumps(m)  # it goes into results.json as it is


def test_isa_flags_are_read_from_proc_cpuinfo_as_whole_words(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: fpu avx avx2 fma avx512fx amx_tile\n")
    real_path = machine.Path
    monkeypatch.setattr(machine, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert machine.isa_flags() == ["avx", "fma", "avx2", "amx_tile"]  # not avx512f: avx512fx is another word
    assert machine.cpu_name() == "Test CPU"


def test_importing_it_imports_no_framework():
    code = "import sys, common.machine; print([m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def _run(isa, threads=None, cpu="AMD EPYC"):
    m = {"cpu": cpu, "cpu_count": 2, "isa": isa, "threads": threads or {"OMP_NUM_THREADS": None}, "gpus": []}
    step = {"backend": "torch", "status": "ok", "step_s_median": 0.3, "setup_s": 1, "first_step_s": 1, "total_s": 9}
    return {"machine": m, "precision": "float32", "backends": [step]}


def test_ratio_table_says_when_two_runs_came_from_different_machines():
    same = report.ratio_table(_run(["avx2"]), _run(["avx2"]), "a", "b")
    assert "Different machines" not in same
    isa = report.ratio_table(_run(["avx2"]), _run(["avx2", "avx512f"]), "a", "b")
    assert "Different machines" in isa and "isa [avx2] vs [avx2 avx512f]" in isa
    threads = report.ratio_table(_run(["avx2"]), _run(["avx2"], {"OMP_NUM_THREADS": "1"}), "a", "b")
    assert "threads {none set} vs {OMP_NUM_THREADS=1}" in threads
    cpu = report.ratio_table(_run(["avx2"]), _run(["avx2"], cpu="Intel Xeon"), "a", "b")
    assert "cpu AMD EPYC vs Intel Xeon" in cpu


def test_a_result_from_before_the_isa_was_recorded_is_not_called_different():
    old = _run(["avx2"])
    del old["machine"]["isa"], old["machine"]["threads"]
    assert machine.differences(old["machine"], _run(["avx2", "avx512f"])["machine"]) == []


def test_the_peak_is_the_best_block_over_the_sizes():
    # A fake clock: a product of size n takes n / 1000 seconds, so every block runs at 2 n^2 * 1000 FLOP/s.
    clock = {"t": 0.0}
    sizes_made = []

    def square_matmul(n):
        sizes_made.append(n)

        def product():
            clock["t"] += n / 1000
        return product

    real = machine.time.perf_counter
    machine.time.perf_counter = lambda: clock["t"]
    try:
        peak = machine.best_matmul_flops(square_matmul, wait=lambda out: None, sizes=(100, 200), blocks=3)
    finally:
        machine.time.perf_counter = real
    assert sizes_made == [100, 200] and peak == pytest.approx(2 * 200**2 * 1000)


def test_numpy_measures_float32_and_has_no_bf16():
    assert machine.numpy_matmul_flops("bf16") is None
