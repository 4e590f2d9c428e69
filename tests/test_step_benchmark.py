"""benchmarks/step_benchmark.py: its FLOP count, its command line and one tiny real run."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_compare_anywhere import alive

import backends

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "step_benchmark.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("step_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_benchmark"] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def test_step_flops_counts_vgg_through_conv5_1_and_the_grams_twice():
    # VGG19 up to conv5_1 written out independently: (in, out) per conv, "pool" halves the size.
    layers = [(3, 64), (64, 64), "pool", (64, 128), (128, 128), "pool", (128, 256), (256, 256), (256, 256),
              (256, 256), "pool", (256, 512), (512, 512), (512, 512), (512, 512), "pool", (512, 512)]
    style_after = {0: 64, 2: 128, 4: 256, 8: 512, 12: 512}  # conv index (of 13) -> channels of its style tap
    height, width, forward, conv = 64, 96, 0.0, 0
    for layer in layers:
        if layer == "pool":
            height, width = height // 2, width // 2
            continue
        forward += 2 * height * width * layer[0] * layer[1] * 9
        if conv in style_after:
            forward += 2 * style_after[conv] ** 2 * height * width
        conv += 1
    assert load_benchmark().step_flops((64, 96)) == 2 * forward


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "10x"], "expected HEIGHTxWIDTH"),
    (["--sizes", "8x8"], "too small"),
    (["--backends", "torch,mxnet"], "unknown backend 'mxnet'"),
])
def test_bad_arguments_are_one_line(args, message):
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_a_tiny_run_writes_the_table_and_the_json(tmp_path):
    name = next((n for n in ("jax", "torch", "tensorflow") if not backends.why_unavailable(n)), None)
    if name is None or backends.why_unavailable("torch"):
        pytest.skip("needs torch (the naive baseline) and one backend")
    out = subprocess.run([sys.executable, str(SCRIPT), "--backends", f"naive,{name}", "--sizes", "32x32",
                          "--out", str(tmp_path / "steps.json")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "steps.json").read_text())
    results, peak = report["results"], report["peak"]
    assert [r["backend"] for r in results] == ["naive", name]
    # One peak for every row, the best of NumPy's and each framework's own probe.
    assert set(peak["by_source"]) == {"numpy", "torch", name} and peak["gflops"] == max(peak["by_source"].values())
    assert report["machine"]["cpu"] and "isa" in report["machine"] and "threads" in report["machine"]
    for result in results:
        (row,) = result["rows"]
        assert row["size"] == [32, 32] and row["ms_per_step"] > 0
        assert row["gflops"] == pytest.approx(row["gflop_per_step"] / (row["ms_per_step"] / 1e3))
        assert row["fraction_of_peak"] == pytest.approx(row["gflops"] / peak["gflops"])
    table = (tmp_path / "steps.md").read_text()
    assert table.startswith("Machine: ") and "over numpy" in table and "one peak for every row" in table
    rows = [line for line in table.splitlines() if line.startswith(("| naive |", f"| {name} |"))]
    assert len(rows) == 2 and rows[0].endswith("| 1.00x | 1.00 |")
    assert re.search(r"\| \d+\.\d\dx \| \d+\.\d\d \|$", rows[1])  # its speed-up over the baseline


def test_repeats_merge_into_the_median_run_with_its_range():
    bench = load_benchmark()
    runs = [{"backend": "jax", "rows": [{"size": [32, 32], "gflop_per_step": 2.0, "ms_per_step": ms}]}
            for ms in (30.0, 10.0, 20.0)]
    merged = bench.merge_repeats(runs + [{"backend": "jax", "error": "crashed"}])  # a failed run is left out
    (row,) = merged["rows"]
    assert merged["repeats"] == 3 and row["ms_per_step_each_run"] == [30.0, 10.0, 20.0]
    assert (row["ms_per_step"], row["ms_min"], row["ms_max"]) == (20.0, 10.0, 30.0)


def test_rates_divide_by_the_one_peak_and_compare_each_run_with_naives_run_before_it():
    bench = load_benchmark()
    naive = bench.merge_repeats([{"backend": "naive", "rows": [{"size": [32, 32], "gflop_per_step": 2.0, "ms_per_step": ms}]}
                                 for ms in (40.0, 60.0)])
    jax = bench.merge_repeats([{"backend": "jax", "rows": [{"size": [32, 32], "gflop_per_step": 2.0, "ms_per_step": ms}]}
                               for ms in (20.0, 40.0)])
    bench.add_rates([naive, jax], peak_flops=200e9)
    (row,) = jax["rows"]
    assert row["gflops"] == pytest.approx(2.0 / 0.030) and row["fraction_of_peak"] == pytest.approx(2.0 / 0.030 / 200)
    assert row["faster_than_naive"] == pytest.approx(50 / 30)  # medians
    assert row["faster_than_naive_each_run"] == pytest.approx([2.0, 1.5])  # run by run


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_sigterm_stops_the_benchmark_and_its_worker_at_once():
    """As `timeout 600 python benchmarks/step_benchmark.py` ends it: the worker must not outlive its parent."""
    bench = subprocess.Popen([sys.executable, str(SCRIPT), "--backends", "naive", "--sizes", "32x32"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (workers := children(bench.pid)):
            assert bench.poll() is None and time.monotonic() < deadline, "no worker started"
            time.sleep(0.05)
        bench.send_signal(signal.SIGTERM)
        _, stderr = bench.communicate(timeout=60)
    finally:
        bench.kill()
    assert bench.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not [pid for pid in workers if alive(pid)]  # stopped and reaped before the parent exited
