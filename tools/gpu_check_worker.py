"""The GPU check's worker, in its own process: one backend in one precision, timed, probed and stylizing.

``benchmarks/gpu_check.py`` runs ``python -m tools.gpu_check_worker JOB.json`` through
``tools/worker.py`` once per backend and precision, and receives the row as the "finished"
message's result; the stylized image goes to ``image_out`` for the PSNR against float32.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools import worker
from tools.jobs import Record


@dataclass(frozen=True)
class GpuCheckJob(Record):
    backend: str
    precision: str
    image_out: str  # .npy of the stylized image
    image_shape: tuple[int, int]
    epochs: int  # of the stylization
    warmup: int  # timed steps: warm-up, then blocks of steps with one synchronisation each
    steps: int
    blocks: int
    peak_sizes: tuple[int, ...] | None = None  # the matmul probe's sizes; None: the backend's own

    @classmethod
    def from_dict(cls, data) -> "GpuCheckJob":
        job = super().from_dict(data)
        return cls(**{**job.__dict__, "image_shape": tuple(job.image_shape),
                      "peak_sizes": tuple(job.peak_sizes) if job.peak_sizes else None})


def measure(job: GpuCheckJob) -> dict:
    import numpy as np

    from common import images, stylize
    from common.config import D2L
    from tools.estimate import step_flops
    from tools.step_worker import backend_steps, time_blocks

    started = time.perf_counter()
    run, sync, backend = backend_steps(job.backend, job.precision, job.image_shape)
    times = time_blocks(run, sync, job.warmup, job.steps, job.blocks)
    ms = 1e3 * statistics.median(times)
    peak = backend.peak_matmul_flops(job.peak_sizes)
    # The same backend (its compiled programs), a fresh training state: stylize starts from the content image.
    config = D2L.replace(image_shape=job.image_shape, num_epochs=job.epochs)
    content_img = images.load_image(images.DEFAULT_CONTENT, "content image")
    style_img = images.load_image(images.DEFAULT_STYLE, "style image")
    out_img, _ = stylize.stylize(backend, content_img, style_img, config)
    np.save(job.image_out, np.asarray(out_img.convert("RGB")))
    return {"backend": job.backend, "precision": job.precision, "gpu": backend.device_name(), "ms_per_step": ms,
            "ms_min": 1e3 * min(times), "ms_max": 1e3 * max(times),
            "tflops": step_flops(job.image_shape) / (ms / 1e3) / 1e12, "matmul_peak_tflops": peak / 1e12,
            "peak_memory_mib": (backend.peak_device_bytes() or 0) / 2**20, "seconds": time.perf_counter() - started}


def main(job_path: Path) -> dict:
    return measure(GpuCheckJob.from_json(job_path.read_text()))


if __name__ == "__main__":
    sys.exit(worker.serve(main, sys.argv[1:]))
