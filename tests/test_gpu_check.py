"""benchmarks/gpu_check.sh: a dry run that says what it skipped on a CPU, and the GPU table's arithmetic."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dry_run_says_what_and_why(out, reason: str):
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DRY RUN" in out.stdout and reason in out.stdout and "Traceback" not in out.stderr
    assert "skipped: the 300x450 table (float32, tf32, bf16" in out.stdout and "PSNR of tf32 and bf16" in out.stdout
    assert "budget 285 s" in out.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine may have a GPU: the check would run")
def test_without_a_gpu_the_script_is_a_dry_run_that_says_why_and_exits_0():
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=280,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    _dry_run_says_what_and_why(out, "no NVIDIA GPU here")


def test_dry_run_on_request():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run"],
                         capture_output=True, text=True, timeout=280)
    _dry_run_says_what_and_why(out, "asked for with --dry-run")


def test_documented_peaks_match_the_names_nvidia_smi_reports():
    gpu_check = load_gpu_check()
    assert gpu_check.documented_peak("NVIDIA H200")["bf16"] == 989.4
    assert gpu_check.documented_peak("NVIDIA H200 NVL")["bf16"] == 835.5  # the specific name wins
    assert gpu_check.documented_peak("NVIDIA H100 80GB HBM3")["tf32"] == 494.7
    assert gpu_check.documented_peak("NVIDIA H100 PCIe")["float32"] == 51.2
    assert gpu_check.documented_peak("NVIDIA A100-SXM4-80GB") is None


def test_the_table_gives_each_precision_its_own_peak_and_the_psnr_against_float32(tmp_path):
    import numpy as np

    gpu_check = load_gpu_check()
    reference = np.zeros((4, 4, 3), np.uint8)
    np.save(tmp_path / "torch-float32.npy", reference)
    np.save(tmp_path / "torch-bf16.npy", reference + 1)  # every pixel off by 1: PSNR 20 log10(255) = 48.1 dB
    rows = [{"backend": "torch", "precision": p, "ms_per_step": 10.0, "ms_min": 9.0, "ms_max": 11.0, "tflops": t,
             "matmul_peak_tflops": 2 * t, "peak_memory_mib": 100.0} for p, t in (("float32", 33.45), ("bf16", 98.94))]
    rows.append({"backend": "jax", "precision": "tf32", "error": "stopped: the 5-minute budget ran out"})
    psnr_db = gpu_check.psnr_against_float32(rows, tmp_path)
    assert psnr_db == {("torch", "bf16"): pytest.approx(48.13, abs=0.01)}
    table = gpu_check.markdown(rows, psnr_db, "NVIDIA H200", gpu_check.documented_peak("NVIDIA H200"))
    assert "| torch | float32 | 10.00 (9.00-11.00) | 33.5 | 50% | 50% | 100 | reference |" in table
    assert "| torch | bf16 | 10.00 (9.00-11.00) | 98.9 | 10% | 50% | 100 | 48.1 |" in table
    assert "| jax | tf32 | stopped: the 5-minute budget ran out |" in table


def test_a_tiny_rehearsal_runs_the_whole_check_on_the_cpu(tmp_path):
    """--smoke: every step of the real check (timing, peak, memory, images, PSNR, files) at 32x32 with torch."""
    from conftest import require

    require("torch")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--backends", "torch",
                          "--out", str(tmp_path / "gpu")], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    assert [(r["backend"], r["precision"]) for r in rows] == [("torch", p) for p in ("float32", "tf32", "bf16")]
    assert all("error" not in r and r["ms_per_step"] > 0 and r["matmul_peak_tflops"] > 0 for r in rows), rows
    table = (tmp_path / "gpu.md").read_text()
    assert "| torch | float32 |" in table and "| reference |" in table
    tf32_psnr = re.search(r"\| torch \| tf32 \|.*\| ([0-9.]+|inf) \|$", table, re.M)
    assert tf32_psnr, table  # on a CPU tf32 changes nothing: the same image, an infinite or very high PSNR
    assert re.search(r"\| torch \| bf16 \|.*\| \d+\.\d \|$", table, re.M), table
