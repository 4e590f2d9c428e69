"""Before a run: the memory and time a training step needs, from VGG19's layer shapes.

FLOPs: each 3x3 convolution costs 2·H·W·C_in·C_out·9 forward and each style
Gram 2·C²·H·W; the backward pass to the image costs about as much again
(ReLU, pooling and the elementwise losses are under 1% and left out). Memory:
the outputs of every layer up to the deepest tap, which the backward pass
keeps, times a factor measured per framework, plus the framework itself.
``check_before_run`` warns when a run will be long and refuses one that cannot
fit in the memory this machine has now.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from common.config import D2L, StyleTransferConfig
from common.errors import UserError
from common.vgg import feature_plan

GiB = 2**30
# Peak host memory = BASE + FACTOR x activation_bytes. Measured peaks (ru_maxrss, float32, one step, 2-core CPU;
# python benchmarks/peak_memory.py NAME HxW):
#   torch: 1472 MiB at 150x225 (activations 77 MiB), 1485 at 300x450 (312), 2748 at 600x900 (1252): slope 1.1
#   JAX: 804 MiB at 150x225 (docs/compare-cpu), 1139 at 300x450, 2307 at 600x900: slope 1.2-1.4
#   TensorFlow: 1778 MiB at 150x225 (docs/compare-cpu), the largest start-up
# BASE is TensorFlow's start-up and FACTOR rounds the largest slope up, so the estimate errs high
# (by at most 2.2x at the sizes measured; tests/test_estimate.py holds these figures).
BASE_BYTES = 1.8 * GiB
ACTIVATION_FACTOR = 2.0
# Throughput of a float32 step per CPU core: 49.9 GFLOP a step at 150x225 took 263-315 ms on 2 cores
# (README's default run), about 80 GFLOP/s per core; the slowest backend's figure is used.
CPU_FLOPS_PER_CORE = 80e9
# bf16 on a CPU without bf16 instructions (AVX2 only): 16.5 s a step at 150x225 against about 0.3 s in float32.
BF16_WITHOUT_INSTRUCTIONS_SLOWDOWN = 16.5 / 0.3
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# A run estimated to take longer than this (per backend) gets a warning.
LONG_RUN_S = 30 * 60


def step_flops(image_shape, config: StyleTransferConfig = D2L) -> float:
    """Forward through the deepest tap, plus the backward pass with respect to the image."""
    style = feature_plan(config.content_layers, config.style_layers, config.feature_taps).style
    forward = 0.0
    for layer, channels, height, width in _layer_outputs(image_shape, config):
        if layer.kind == "conv":  # 3x3 with padding 1: its input has the output's height and width
            forward += 2.0 * height * width * layer.in_channels * layer.out_channels * 9
        if layer.name in style:
            forward += 2.0 * channels * channels * height * width  # the Gram matrix
    # Backward to the image only: one input-gradient op per forward op, same size.
    return 2.0 * forward


def activation_bytes(image_shape, config: StyleTransferConfig = D2L, bytes_per_value: int = 4) -> int:
    """The outputs of every layer up to the deepest tap (convolutions, ReLUs, poolings), in bytes."""
    return sum(channels * height * width for _, channels, height, width in _layer_outputs(image_shape, config)) \
        * bytes_per_value


def _layer_outputs(image_shape, config):
    """(layer, channels, height, width) of each layer's output through the deepest tap."""
    height, width = image_shape
    channels = 3
    for layer in feature_plan(config.content_layers, config.style_layers, config.feature_taps).layers:
        if layer.kind == "conv":
            channels = layer.out_channels
        elif layer.kind == "pool":
            height, width = height // 2, width // 2
        yield layer, channels, height, width


@dataclass(frozen=True)
class Estimate:
    peak_bytes: float  # host memory of one backend's run
    step_s: float | None  # on a CPU; None on a GPU (not measured there)

    def total_s(self, num_epochs: int) -> float | None:
        return None if self.step_s is None else self.step_s * num_epochs


def estimate(config: StyleTransferConfig, precision: str, on_gpu: bool, cpu_count: int | None = None,
             flags: set[str] | None = None) -> Estimate:
    if on_gpu:  # activations live in GPU memory, whose size is not known here
        return Estimate(BASE_BYTES, None)
    peak = BASE_BYTES + ACTIVATION_FACTOR * activation_bytes(config.image_shape, config)
    step_s = step_flops(config.image_shape, config) / (CPU_FLOPS_PER_CORE * (cpu_count or os.cpu_count() or 1))
    if precision == "bf16" and not has_bf16_instructions(flags):
        step_s *= BF16_WITHOUT_INSTRUCTIONS_SLOWDOWN
    return Estimate(peak, step_s)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16_instructions(flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


def memory_available_bytes() -> int | None:
    """Memory the kernel says a new process can use without swapping: MemAvailable, else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_before_run(config: StyleTransferConfig, precision: str, on_gpu: bool, out=None) -> Estimate:
    """Refuse (``UserError``) a run that cannot fit in memory; warn, one line each, about one that will be slow."""
    out = out or sys.stderr
    flags = cpu_flags()
    guess = estimate(config, precision, on_gpu, flags=flags)
    size = f"{config.image_shape[0]}x{config.image_shape[1]}"
    available = None if on_gpu else memory_available_bytes()
    if available is not None and guess.peak_bytes > available:
        raise UserError(
            f"size {size} needs an estimated {guess.peak_bytes / GiB:.1f} GiB per backend (VGG19's activations "
            f"for the backward pass), more than the {available / GiB:.1f} GiB available; choose a smaller --size"
        )
    said = []
    if not on_gpu and precision == "bf16" and not has_bf16_instructions(flags):
        said.append(f"--precision bf16 on a CPU without bf16 instructions ({' or '.join(BF16_FLAGS)}) is about "
                    f"{BF16_WITHOUT_INSTRUCTIONS_SLOWDOWN:.0f}x slower than float32 (measured 16.5 s against 0.3 s "
                    "a step at 150x225 on an AVX2 CPU)")
    total = guess.total_s(config.num_epochs)
    if total is not None and total > LONG_RUN_S:
        said.append(f"estimated {_duration(guess.step_s)} a step, about {_duration(total)} per backend for "
                    f"{config.num_epochs} epochs at {size} on {os.cpu_count()} CPU core(s); a smaller --size or "
                    "fewer --epochs is faster")
    if said:
        print("warning: " + "; ".join(said), file=out)
    return guess
