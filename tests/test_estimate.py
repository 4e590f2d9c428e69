"""Sizes and precisions that cannot finish are found before anything runs (issue 18 item 8; tools/estimate.py)."""

from __future__ import annotations

import io

import pytest

from tools import estimate
from common.config import CPU

GiB = 2**30


def check(config, precision="float32", on_gpu=False):
    out = io.StringIO()
    estimate.check_before_run(config, precision, on_gpu, out=out)
    return out.getvalue().splitlines()


@pytest.fixture
def plenty_of_memory(monkeypatch):
    monkeypatch.setattr(estimate, "memory_available_bytes", lambda: 1024 * GiB)
    monkeypatch.setattr(estimate.os, "cpu_count", lambda: 2)


def test_the_default_cpu_run_gets_no_warning(plenty_of_memory, monkeypatch):
    monkeypatch.setattr(estimate, "cpu_flags", lambda: {"avx2", "fma"})
    assert check(CPU) == []


def test_a_long_run_is_warned_about_in_one_line(plenty_of_memory):
    lines = check(CPU.replace(image_shape=(2048, 2048)))
    assert len(lines) == 1 and lines[0].startswith("warning: estimated ")
    assert "per backend for 200 epochs at 2048x2048 on 2 CPU core(s)" in lines[0]


@pytest.mark.parametrize(("flags", "warned"), [({"avx2", "fma"}, True), ({"avx2", "avx512_bf16"}, False),
                                               ({"amx_bf16", "amx_tile"}, False)])
def test_bf16_warns_only_on_a_cpu_without_bf16_instructions(plenty_of_memory, monkeypatch, flags, warned):
    monkeypatch.setattr(estimate, "cpu_flags", lambda: flags)
    lines = check(CPU, "bf16")
    assert bool(lines) == warned
    if warned:
        assert len(lines) == 1 and "is about 55x slower than float32" in lines[0]
        assert "estimated 17 s a step, about 57 min per backend for 200 epochs at 150x225" in lines[0]
    assert check(CPU, "bf16", on_gpu=True) == []  # a GPU's bf16 is another matter


def test_this_machines_flags_are_read():
    flags = estimate.cpu_flags()
    assert not flags or "fpu" in flags  # /proc/cpuinfo's flags line, where there is one


def test_a_size_that_cannot_fit_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    import compare

    monkeypatch.setattr(estimate, "memory_available_bytes", lambda: 8 * GiB)
    monkeypatch.setattr(compare, "run_backend", lambda *a, **k: pytest.fail("a backend was started"))
    out = tmp_path / "out"
    code = compare.main(["--size", "4096x4096", "--backends", "torch", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("compare.py: error: size 4096x4096 needs an estimated ")
    assert "more than the 8.0 GiB available" in err[0]
    assert not out.exists()


# Peak host MiB (ru_maxrss) of one backend's run: 150x225 from docs/compare-cpu/results.json (200 steps, bundled
# weights); the others one step with random weights (benchmark-free: a script that calls stylize and reads ru_maxrss).
MEASURED_PEAK_MIB = {
    ("torch", (150, 225)): 1371, ("tensorflow", (150, 225)): 1778, ("jax", (150, 225)): 804,
    ("torch", (300, 450)): 1485, ("torch", (600, 900)): 2748, ("jax", (300, 450)): 1139, ("jax", (600, 900)): 2307,
}


def test_the_memory_estimate_covers_what_was_measured():
    # ru_maxrss of one run per backend (random weights, 1 step, 2-core CPU, float32); see estimate.py.
    for (name, shape), mib in MEASURED_PEAK_MIB.items():
        guess = estimate.estimate(CPU.replace(image_shape=shape), "float32", on_gpu=False).peak_bytes / 2**20
        assert mib <= guess <= 2.5 * mib, (name, shape, mib, guess)


def test_this_machines_available_memory_is_read():
    available = estimate.memory_available_bytes()
    assert available is None or available > 0
