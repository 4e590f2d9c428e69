"""One backend's run, in its own process: set up, stylize, measure, write a result.

``compare.py`` starts ``python -m tools.stylize_worker JOB.json`` once per backend, so
each framework gets a fresh process: fair memory figures, no import-order or
GPU-memory interference. The result (JSON plus the output image) goes into the
job's folder; a crash leaves a JSON that says what happened.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from common import atomic
from tools import failures, strict_json
from common.config import LossWeights, StyleTransferConfig
from common.errors import DivergedError, UserError
from common.machine import cpu_name

VERSION_PACKAGES = {
    "torch": ("torch", "torchvision"),
    "tensorflow": ("tensorflow", "keras"),
    "jax": ("jax", "jaxlib", "flax", "optax"),
}


def versions(name: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "numpy": np.__version__}
    for package in VERSION_PACKAGES.get(name, ()):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def cuda_version(name: str) -> str | None:
    """The CUDA version the framework runs with, where it runs on an NVIDIA GPU (framework already imported)."""
    try:
        if name == "torch":
            import torch

            return torch.version.cuda if torch.cuda.is_available() else None
        if name == "tensorflow":
            import tensorflow as tf

            return tf.sysconfig.get_build_info().get("cuda_version") if tf.config.list_physical_devices("GPU") else None
        if name == "jax":
            import jax

            backend = jax.extend.backend.get_backend()
            return backend.platform_version if backend.platform == "gpu" else None
    except Exception:  # a version string is not worth a failed run
        return None
    return None


def config_from_dict(data: dict) -> StyleTransferConfig:
    data = dict(data)
    data["image_shape"] = tuple(data["image_shape"])
    data["content_layers"] = tuple(data["content_layers"])
    data["style_layers"] = tuple(data["style_layers"])
    if data.get("loss_weights") is not None:
        data["loss_weights"] = LossWeights(**data["loss_weights"])
    return StyleTransferConfig(**data)


def run(job: dict, started: float) -> dict:
    """Run one backend as ``job`` describes; ``started`` is when the process began work."""
    import backends  # no framework yet
    from common import images
    from common.images import postprocess_array
    from common.stylize import stylize_array

    name = job["backend"]
    config = config_from_dict(job["config"])
    weights = job["weights"]
    if weights == "random":
        from common.weights import random_weights

        weights = random_weights(job.get("seed", 0))
    backend = backends.get_backend(
        name, weights=weights, device=job.get("device"), precision=job["precision"], taps=config.taps,
        loss_weights=config.loss_weights,
    )
    if job.get("loss_weight_overrides"):
        backend.loss_weights = dataclasses.replace(backend.loss_weights, **job["loss_weight_overrides"]).validate()
    backend.synchronize()
    setup_s = time.perf_counter() - started
    content = images.load_image(job["content"], "content image")
    style = images.load_image(job["style"], "style image")

    runs = []
    for repeat in range(job.get("repeat", 1)):
        progress = Progress(name, config.num_epochs, quiet=job.get("quiet", False), run=(repeat, job.get("repeat", 1)))
        run_start = time.perf_counter()
        progress.start(run_start)
        X, history = stylize_array(backend, content, style, config, callback=progress, report_every=1)
        backend.synchronize()
        total_s = time.perf_counter() - run_start
        progress.close()
        runs.append({"step_s": progress.step_s, "first_step_s": progress.first_step_s, "total_s": total_s})

    out = Path(job["out_dir"])
    postprocess_array(X).save(out / f"{name}.png")
    np.save(out / f"{name}.npy", X)  # the float image: agreement beyond 8 bits (report.image_agreement)
    steady = [s for r in runs for s in r["step_s"][job.get("warmup", 5):]] or [s for r in runs for s in r["step_s"]]
    return {
        "backend": name,
        "status": "ok",
        "device": str(backend.device),
        "device_name": backend.device_name() or cpu_name(),
        "precision": backend.precision,
        "weights": backend.weights.name,
        "taps": backend.taps,
        "loss_weights": dataclasses.asdict(config.loss_weights or backend.loss_weights),
        "versions": {**versions(name), "cuda": cuda_version(name)},
        "setup_s": setup_s,
        "first_step_s": runs[0]["first_step_s"],
        "step_s_median": statistics.median(steady),
        "step_s_p10": float(np.percentile(steady, 10)),
        "step_s_p90": float(np.percentile(steady, 90)),
        "repeat_step_s_medians": [statistics.median(r["step_s"][job.get("warmup", 5):] or r["step_s"]) for r in runs],
        "total_s": runs[0]["total_s"],
        "peak_host_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_device_bytes": backend.peak_device_bytes(),
        "final_losses": dict(zip(("content", "style", "tv", "total"), history[-1])),
        "history": [list(parts) for parts in history],
        "image": f"{name}.png",
    }




class Progress:
    """The per-step callback: a tqdm bar on stderr plus per-step wall times.

    Each report converts the step's losses to floats, which waits for the
    device, so the time between two reports is the device's time for a step.
    """

    def __init__(self, name: str, num_epochs: int, quiet: bool = False, run: tuple[int, int] = (0, 1)):
        from tqdm import tqdm

        label = name if run[1] == 1 else f"{name} run {run[0] + 1}/{run[1]}"
        self.bar = tqdm(total=num_epochs, desc=f"{label:>14}", unit="step", disable=quiet, file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5)
        self.step_s: list[float] = []
        self.first_step_s = float("nan")

    def start(self, now: float) -> None:
        self.last = self.run_start = now

    def __call__(self, report) -> None:
        now = time.perf_counter()
        steps = report.epoch - len(self.step_s)
        self.step_s.extend([(now - self.last) / steps] * steps)
        if report.epoch == steps:
            self.first_step_s = now - self.run_start
        self.last = now
        losses = report.losses
        self.bar.set_postfix_str(
            f"content {losses.content:.3g} style {losses.style:.3g} tv {losses.tv:.3g} lr {report.lr:.3g}", refresh=False
        )
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()


def stop_with_parent() -> None:
    """End this worker when its parent (compare.py) ends, even by SIGKILL (Linux; elsewhere nothing).

    compare.py starts each worker in its own process group and stops it on Ctrl-C, SIGTERM and
    SIGHUP; a signal it cannot catch would otherwise leave the worker running outside any --timeout.
    """
    import ctypes
    import signal

    parent = int(os.environ.get("COMPARE_PID", os.getppid()))  # read before start-up, which a kill may outrun
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    job_path = Path(argv[0])
    job = json.loads(job_path.read_text())
    result_path = Path(job["out_dir"]) / "result.json"
    try:
        result = run(job, started)
    except DivergedError as exc:
        result = {"backend": job["backend"], "status": "diverged", "error": str(exc), "diverged_at_step": exc.step}
    except UserError as exc:
        result = {"backend": job["backend"], "status": "error", "error": str(exc)}
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # report any crash as a row, with the traceback kept beside it
        atomic.write_text(Path(job["out_dir"]) / "traceback.txt", traceback.format_exc())
        failure = failures.from_exception(exc)
        result = {"backend": job["backend"], "status": failure.status, "error": failure.error}
    atomic.write_text(result_path, strict_json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stop_with_parent()
    sys.exit(main(sys.argv[1:]))
