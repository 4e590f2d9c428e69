"""One backend's run, in its own process: set up, stylize, measure, send the result.

``compare.py`` runs ``python -m tools.stylize_worker JOB.json`` once per backend through
``tools/worker.py``, so each framework gets a fresh process: fair memory figures, no
import-order or GPU-memory interference. Progress and the ``Result`` go to the parent as
messages; the image goes into the job's folder; a crash becomes a row that says what happened.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from common import atomic
from common.errors import DivergedError, UserError
from common.machine import cpu_name
from tools import failures, jobs, worker
from tools.jobs import Job, Result


def framework_versions(backend) -> dict[str, str | None]:
    """Python's, NumPy's and the backend's framework packages' versions, and the CUDA it runs with (or None)."""
    import backends

    return {**backends.versions(backend.name), "cuda": backend.cuda_version()}


# --- the run -------------------------------------------------------------------------------


def run(job: Job, started: float) -> Result:
    """Run one backend as ``job`` describes; ``started`` is when the process began work."""
    import backends  # no framework yet
    from common import images
    from common.images import postprocess_array
    from common.stylize import stylize_array

    weights = job.weights
    if weights == "random":
        from common.weights import random_weights

        weights = random_weights(job.seed)
    backend = backends.get_backend(job.backend, weights=weights, device=job.device, precision=job.precision)
    # The command line's loss weights over the config's, or over the weight set's own: one place.
    loss_weights = dataclasses.replace(job.config.resolved_loss_weights(backend.weights),
                                       **job.loss_weight_overrides).validate()
    config = job.config.replace(loss_weights=loss_weights)
    backend.synchronize()
    setup_s = time.perf_counter() - started
    content = images.load_image(job.content, "content image")
    style = images.load_image(job.style, "style image")

    runs = []
    for repeat in range(job.repeat):
        timer = StepTimer(config.num_epochs, run=(repeat, job.repeat))
        X, history = stylize_array(backend, content, style, config, callback=timer, report_every=1)
        backend.synchronize()
        runs.append(timer.finish())

    out = Path(job.out_dir)
    postprocess_array(X, config.recipe_data.space).save(out / f"{job.backend}.png")
    np.save(out / f"{job.backend}.npy", X)  # the float image: agreement beyond 8 bits (report.image_agreement)
    steady = [s for r in runs for s in r.step_s[job.warmup:]] or [s for r in runs for s in r.step_s]
    return Result(
        backend=job.backend,
        status=jobs.OK,
        device=str(backend.device),
        device_name=backend.device_name() or cpu_name(),
        precision=backend.precision,
        weights=backend.weights.name,
        taps=config.taps,
        recipe=config.recipe,
        optimizer=_optimizer_name(backend.name, config),
        evaluations=runs[0].evaluations,
        loss_weights=dataclasses.asdict(loss_weights),
        versions=framework_versions(backend),
        setup_s=setup_s,
        first_step_s=runs[0].first_step_s,
        step_s_median=statistics.median(steady),
        step_s_p10=float(np.percentile(steady, 10)),
        step_s_p90=float(np.percentile(steady, 90)),
        repeat_step_s_medians=[statistics.median(r.step_s[job.warmup:] or r.step_s) for r in runs],
        total_s=runs[0].total_s,
        peak_host_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        peak_device_bytes=backend.peak_device_bytes(),
        final_losses=dict(zip(jobs.LOSS_PARTS, history[-1])),
        history=[list(parts) for parts in history],
        image=f"{job.backend}.png",
    )


def _optimizer_name(backend_name: str, config) -> str:
    """What optimized the image, in the framework's words."""
    recipe = config.recipe_data
    if recipe.optimizer == "lbfgs" and config.optimizer == "native":
        import backends

        return backends.REGISTRY[backend_name].native_lbfgs or "none"
    if recipe.optimizer == "lbfgs":
        return "torch.optim.LBFGS's algorithm" + (" (torch.optim.LBFGS)" if backend_name == "torch" else "")
    if recipe.optimizer == "adam":
        return f"{config.adam} Adam"
    return recipe.optimizer


@dataclasses.dataclass(frozen=True)
class RunTimes:
    step_s: list[float]
    first_step_s: float  # includes compilation
    total_s: float
    evaluations: int  # loss evaluations: the steps, or L-BFGS' closure calls


class StepTimer:
    """The per-step callback: per-step wall times, and a progress message to the parent now and then.

    Each report converts the step's losses to floats, which waits for the device, so the time
    between two reports is the device's time for a step.
    """

    MESSAGE_EVERY_S = 0.2  # the parent's bar redraws at most twice a second anyway

    def __init__(self, num_epochs: int, run: tuple[int, int] = (0, 1)):
        self.num_epochs, self.run = num_epochs, run
        self.evaluations = 0
        self.step_s: list[float] = []
        self.first_step_s = float("nan")
        self.start = self.last = self.last_message = time.perf_counter()
        worker.send("progress", step=0, num_epochs=num_epochs, losses=None, lr=None, run=list(run))  # the bar, at once

    def __call__(self, report) -> None:
        now = time.perf_counter()
        steps = report.epoch - len(self.step_s)
        self.step_s.extend([(now - self.last) / steps] * steps)
        if report.epoch == steps:
            self.first_step_s = now - self.start
        self.last = now
        self.evaluations = report.evaluations
        if now - self.last_message >= self.MESSAGE_EVERY_S or report.epoch in (1, self.num_epochs):
            self.last_message = now
            worker.send("progress", step=report.epoch, num_epochs=self.num_epochs,
                        losses=report.losses._asdict(), lr=report.lr, run=list(self.run))

    def finish(self) -> RunTimes:
        return RunTimes(self.step_s, self.first_step_s, time.perf_counter() - self.start, self.evaluations)


def main(job_path: Path) -> dict:
    """The worker's whole life: every outcome becomes a result row (a crash keeps its traceback beside it)."""
    started = time.perf_counter()
    job = Job.from_json(job_path.read_text())
    try:
        result = run(job, started)
    except DivergedError as exc:
        result = Result.failed(job.backend, jobs.DIVERGED, str(exc), diverged_at_step=exc.step)
    except UserError as exc:
        result = Result.failed(job.backend, jobs.ERROR, str(exc))
    except Exception as exc:  # report any crash as a row, with the traceback kept beside it
        atomic.write_text(Path(job.out_dir) / "traceback.txt", traceback.format_exc())
        failure = failures.from_exception(exc)
        result = Result.failed(job.backend, failure.status, failure.error)
    return result.to_dict()


if __name__ == "__main__":
    sys.exit(worker.serve(main, sys.argv[1:]))
