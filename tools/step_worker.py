"""The step benchmark's worker, in its own process: a matmul peak, or training steps timed per size.

``benchmarks/step_benchmark.py`` runs ``python -m tools.step_worker JOB.json`` through
``tools/worker.py``, once per peak source and once per backend and round, and receives the
measurement as the "finished" message's result.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import D2L
from tools import worker
from tools.estimate import step_flops
from tools.jobs import Record

NAIVE = "naive"  # d2l's listing written plainly, in PyTorch: the baseline
NAIVE_FRAMEWORK = "torch"


@dataclass(frozen=True)
class StepJob(Record):
    """Time ``backend`` (a backend name or NAIVE) at each size; or, with ``peak_only``, ``backend``'s matmul peak
    ("numpy" or a backend name)."""

    backend: str
    precision: str = "float32"
    sizes: tuple[tuple[int, int], ...] = ()
    plan: tuple[int, int, int] | None = None  # warm-up steps, steps per block, blocks; None: plan_for
    peak_only: bool = False

    @classmethod
    def from_dict(cls, data) -> "StepJob":
        job = super().from_dict(data)
        return cls(job.backend, job.precision, tuple(tuple(size) for size in job.sizes),
                   tuple(job.plan) if job.plan else None, job.peak_only)


def time_blocks(run, sync, warmup: int, steps: int, blocks: int) -> list[float]:
    """Seconds per step in each of ``blocks`` blocks; ``run(n)`` queues n steps, ``sync()`` waits for them."""
    run(warmup)
    sync()
    run(steps)  # the block's own program (a multi-step one may compile here)
    sync()
    per_step = []
    for _ in range(blocks):
        start = time.perf_counter()
        run(steps)
        sync()
        per_step.append((time.perf_counter() - start) / steps)
    return per_step


def plan_for(image_shape, on_gpu: bool) -> tuple[int, int, int]:
    """(warm-up steps, steps per block, blocks): fewer at large sizes on a CPU."""
    if on_gpu:  # milliseconds a step: long blocks, so that one synchronisation costs nothing
        return 20, 50, 7
    pixels = image_shape[0] * image_shape[1]
    if pixels <= 150 * 225:
        return 3, 5, 5
    if pixels <= 300 * 450:
        return 2, 3, 3
    return 1, 2, 2


def peak_flops(source: str, precision: str) -> float | None:
    """One source's matmul peak (FLOP/s): "numpy" or a backend's own probe; None where it has none."""
    if source == "numpy":
        from common.machine import numpy_matmul_flops

        return numpy_matmul_flops(precision)
    import backends

    return backends.get_backend(source, weights="random", precision=precision).peak_matmul_flops()


def naive_steps(image_shape):
    """d2l's PyTorch listing, plainly: trainable VGG, in-place ReLUs, loss.item() every step; strict float32."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # cuDNN's default is TF32

    from common import d2l_listing, weights as weight_sets

    style_layers, content_layers = [0, 5, 10, 19, 28], [25]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # d2l.try_gpu()
    net = d2l_listing.vgg_net(weight_sets.bundled().params, content_layers, style_layers).to(device)

    def extract_features(X):
        return d2l_listing.extract_features(net, X, content_layers, style_layers)

    gram = d2l_listing.gram

    rng = np.random.default_rng(0)
    content_X = torch.from_numpy(rng.standard_normal((1, 3, *image_shape)).astype(np.float32)).to(device)
    style_X = torch.from_numpy(rng.standard_normal((1, 3, *image_shape)).astype(np.float32)).to(device)
    contents_Y = [Y.detach() for Y in extract_features(content_X)[0]]
    styles_Y_gram = [gram(Y).detach() for Y in extract_features(style_X)[1]]
    X = torch.nn.Parameter(content_X.clone())
    trainer = torch.optim.Adam([X], lr=0.3)

    def step():
        trainer.zero_grad()
        contents_Y_hat, styles_Y_hat = extract_features(X)
        contents_l = [torch.square(Y_hat - Y).mean() * 1e-3 for Y_hat, Y in zip(contents_Y_hat, contents_Y)]
        styles_l = [torch.square(gram(Y_hat) - Y).mean() * 1e-3 for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)]
        tv_l = 10 * 0.5 * ((X[:, :, 1:, :] - X[:, :, :-1, :]).abs().mean() + (X[:, :, :, 1:] - X[:, :, :, :-1]).abs().mean())
        l = sum(styles_l + contents_l + [tv_l])
        l.backward()
        trainer.step()
        l.item()  # the plain baseline syncs every step (d2l's loop reads the loss every 10 epochs)

    gpu_name = torch.cuda.get_device_name() if device.type == "cuda" else None
    return (lambda n: [step() for _ in range(n)]), lambda: None, gpu_name


def backend_steps(name: str, precision: str, image_shape):
    import backends

    backend = backends.get_backend(name, weights="bundled", precision=precision)
    rng = np.random.default_rng(0)
    content_X = backend.from_numpy(rng.standard_normal((1, 3, *image_shape)).astype(np.float32))
    style_X = backend.from_numpy(rng.standard_normal((1, 3, *image_shape)).astype(np.float32))
    config = D2L.replace(image_shape=image_shape)
    contents_Y, _ = backend.extract_features(content_X, config.content_layers, config.style_layers)
    _, styles_Y = backend.extract_features(style_X, config.content_layers, config.style_layers)
    holder = {"state": backend.init_state(content_X, contents_Y, styles_Y, config), "losses": None}

    def run(num_steps):
        # As ``train`` runs them between two progress reports.
        holder["state"], holder["losses"] = backend.train_steps(holder["state"], num_steps)

    def sync():
        backend.losses_to_floats(holder["losses"])  # waits for the last steps' results
        backend.synchronize()

    return run, sync, backend


def steps(job: StepJob) -> dict:
    """``job.backend``'s ms/step at each size, with its device, settings and versions."""
    import backends
    from common.machine import cpu_name
    from tools.stylize_worker import framework_versions

    precision = "float32" if job.backend == NAIVE else job.precision  # the plain listing knows no other
    rows = []
    device, settings, backend = cpu_name(), {}, None
    for image_shape in job.sizes:
        if job.backend == NAIVE:
            run, sync, gpu_name = naive_steps(image_shape)
        else:
            run, sync, backend = backend_steps(job.backend, precision, image_shape)
            gpu_name, settings = backend.device_name(), backend.speed_settings()
        device = gpu_name or device
        warmup, num_steps, blocks = job.plan or plan_for(image_shape, on_gpu=gpu_name is not None)
        times = time_blocks(run, sync, warmup, num_steps, blocks)
        rows.append({"size": list(image_shape), "ms_per_step": 1e3 * statistics.median(times),
                     "ms_min": 1e3 * min(times), "ms_max": 1e3 * max(times), "blocks": blocks,
                     "steps_per_block": num_steps, "gflop_per_step": step_flops(image_shape) / 1e9})
    if backend is None:  # the baseline's framework, for its versions
        backend = backends.get_backend(NAIVE_FRAMEWORK if job.backend == NAIVE else job.backend, weights="random")
    return {"backend": job.backend, "precision": precision, "device": device, "speed_settings": settings,
            "versions": framework_versions(backend), "rows": rows}


def main(job_path: Path) -> dict:
    job = StepJob.from_json(job_path.read_text())
    if job.peak_only:
        flops = peak_flops(job.backend, job.precision)
        return {"gflops": flops / 1e9 if flops else None}
    return steps(job)


if __name__ == "__main__":
    sys.exit(worker.serve(main, sys.argv[1:]))
