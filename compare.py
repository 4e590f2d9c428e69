#!/usr/bin/env python
"""Compare PyTorch, TensorFlow and JAX on d2l's neural style transfer (section 13.12).

Every backend stylizes the same image pair with the same weights, image size,
hyperparameters and precision, each in its own process, one after another.
The output folder gets each backend's image, results.json, summary.md, a
side-by-side picture and a loss plot; the table is printed at the end.

    python compare.py                       # every installed backend, default images
    python compare.py --backends torch --size 300x450 --epochs 500
    python compare.py --ratio cpu/results.json gpu/results.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

import backends  # noqa: E402  (imports no framework)
from common import atomic, images, machine  # noqa: E402
from common.errors import UserError  # noqa: E402
from tools import estimate, failures, jobs, progress, report, run_folder, worker  # noqa: E402
from tools.cli import DEVICES, compare_parser, config_from_args, printable  # noqa: E402
from tools.jobs import Job, Result  # noqa: E402
from tools.ratio import ratio  # noqa: E402

# The per-backend worker; tests put a fake in its place.
RUNNER = worker.command("tools.stylize_worker")


def build_parser():
    return compare_parser(__doc__.split("\n\n")[0] + " Each backend runs in its own process.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with worker.stop_signals_as_interrupts():
            if args.ratio:
                return ratio(*args.ratio, args.out)
            if args.diverge:
                return diverge(args)
            return compare(args, argv if argv is not None else sys.argv[1:])
    except UserError as exc:
        print(f"compare.py: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except worker.Stopped as exc:  # in --ratio or --diverge: nothing to keep but what is written whole
        return worker.interrupt_exit_code(exc)


# --- the comparison -------------------------------------------------------------------------


def compare(args, argv: list[str]) -> int:
    # Everything that can be wrong with the input is checked before anything runs or is written.
    notes: list[str] = []
    content_img = images.load_image(args.content, "content image", notes)
    style_img = images.load_image(args.style, "style image", notes)
    gpus = machine.gpu_names() if args.device != "cpu" else []
    if args.device == "gpu" and not gpus:
        raise UserError("--device gpu: no NVIDIA GPU found (nvidia-smi lists none)")
    preset = args.preset if args.preset != "auto" else ("d2l" if gpus else "cpu")
    config = config_from_args(args, preset)
    estimate.check_before_run(config, args.precision, on_gpu=bool(gpus))  # refuses what cannot fit, warns if slow
    overrides = {k: v for k, v in (("content", args.content_weight), ("style", args.style_weight),
                                   ("tv", args.tv_weight)) if v is not None}

    out = run_folder.prepare_out(args.out)

    for note in notes:
        print(printable(f"note: {note}"))
    why = "a GPU was found" if gpus else "no GPU found" if args.device != "cpu" else "--device cpu"
    description = f"recipe {config.recipe}; " + run_description(config, preset, why, args)
    print(description)
    if config.recipe_data.note and args.weights != "native-vgg16":  # tf1-tutorial's: on VGG16 it does not apply
        print(f"note: {config.recipe_data.note}")

    # One Job per backend, alike but for the name and the folder (filled in by run_all).
    job = Job(backend="", out_dir="", config=config, content=str((out / "content.png").resolve()),
              style=str((out / "style.png").resolve()), weights=args.weights, precision=args.precision,
              device=DEVICES[args.device], seed=args.seed, repeat=args.repeat, loss_weight_overrides=overrides)
    summary = {
        "description": description, "command": printable("python compare.py " + " ".join(argv)), "preset": preset,
        "config": dataclasses.asdict(config), "weights": args.weights, "precision": args.precision,
        "machine": machine.describe(gpus), "backends": [],
    }
    with run_folder.lock_out(out, args.out):
        return run_all(args, out, job, summary, content_img, style_img)


def run_description(config, preset: str, why: str, args) -> str:
    recipe = config.recipe_data
    if recipe.optimizer == "adam":
        steps, how = "epochs", f"lr {config.lr:g}; taps {config.taps}; {config.adam} Adam"
    elif recipe.optimizer == "lbfgs":
        steps, how = "L-BFGS steps", f"lr {config.lr:g}; optimizer {config.optimizer}"
    else:
        steps, how = "normalized steps", f"step size {recipe.step_size:g}"
    return (f"preset {preset} ({why}): {config.image_shape[0]}x{config.image_shape[1]}, {config.num_epochs} {steps}, "
            f"{how}; start {config.init}; weights {args.weights}; precision {args.precision}")


def run_all(args, out: Path, job: Job, summary: dict, content_img, style_img) -> int:
    """Each backend in turn, the report rewritten after each; ``out`` is absolute and locked by this run."""
    run_folder.remove_previous_run(out)
    for name, img in (("content.png", content_img), ("style.png", style_img)):
        with atomic.atomic_path(out / name) as tmp:
            img.save(tmp, format="PNG")
    jobs_root = out / run_folder.JOBS
    status = 0
    rows: list[Result] = []
    name = args.backends[0]
    try:
        for name in args.backends:
            job_dir = jobs_root / name
            try:
                result = run_backend(dataclasses.replace(job, backend=name, out_dir=str(job_dir)), args.timeout,
                                     args.quiet)
            finally:
                run_folder.collect(job_dir, out, name)
            rows.append(result)
            # Written after every backend, so nothing already measured is lost.
            report.write_report(out, summary, rows, content_img, style_img)
            if not result.ok:
                print(printable(f"{name}: {result.status}: {result.error or ''}"), file=sys.stderr)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Stopped): the worker is stopped by now
        if name not in {r.backend for r in rows}:
            rows.append(Result.failed(name, jobs.INTERRUPTED, getattr(exc, "name", "Ctrl-C")))
        status = worker.interrupt_exit_code(exc)
    finally:
        shutil.rmtree(jobs_root, ignore_errors=True)
    report.write_report(out, summary, rows, content_img, style_img)
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone; the files are written
        print()
        print(printable(report.summary_table(rows)))
        print(report.agreement_table(summary["agreement"]))
        print(run_folder.what_was_written(args.out, rows, out))
    if status == 0 and not any(r.ok for r in rows):
        status = 1  # nothing to compare: a script or CI must not take this for success
    return status


def run_backend(job: Job, timeout: float, quiet: bool) -> Result:
    """One backend's run in its own process (tools/worker.py), as a result row whatever happens to it."""
    reason = backends.why_unavailable(job.backend)
    if reason:
        return Result.failed(job.backend, jobs.NOT_INSTALLED, reason)
    bars = progress.Bars(job.backend, quiet)
    try:
        outcome = worker.run(RUNNER, job, Path(job.out_dir), timeout, on_message=bars)
    finally:
        bars.close()
    if outcome.result is not None:
        try:
            return Result.from_dict(outcome.result)
        except UserError as exc:  # a worker from another version of this file
            return Result.failed(job.backend, failures.CRASHED, f"its result could not be read: {exc}")
    if outcome.returncode is None:
        return Result.failed(job.backend, jobs.TIMED_OUT, f"stopped after {timeout:g} s (--timeout)")
    failure = failures.from_exit(outcome.returncode, outcome.stderr_tail)
    return Result.failed(job.backend, failure.status, failure.error)


# --- --diverge ------------------------------------------------------------------------------


def diverge(args) -> int:
    """Both backends in this process (the registry imports them in a safe order), step by step."""
    from tools import agreement

    # The cheap checks first: why_unavailable imports each framework (seconds).
    content_img = images.load_image(args.content, "content image")
    style_img = images.load_image(args.style, "style image")
    config = config_from_args(args, "cpu", default_epochs=20)
    if config.recipe != "d2l":  # its rounding control nudges Adam's lr; the other recipes: agreement_table.py
        raise UserError(f"--diverge steps d2l's recipe only; for {config.recipe} see "
                        "benchmarks/agreement_table.py --recipes and tests/test_recipes.py")
    out = run_folder.prepare_out(args.out)
    for name in args.diverge:
        reason = backends.why_unavailable(name)
        if reason:
            raise UserError(reason)
    content_x = images.preprocess_array(content_img, config.image_shape)
    style_x = images.preprocess_array(style_img, config.image_shape)
    a, b = (backends.get_backend(name, weights=args.weights, device=DEVICES[args.device], precision=args.precision)
            for name in args.diverge)
    print(f"running {a.name} and {b.name} for {config.num_epochs} steps at "
          f"{config.image_shape[0]}x{config.image_shape[1]}, weights {args.weights}, precision {args.precision}, "
          f"{config.adam} Adam")
    threshold = args.threshold or agreement.ROUNDING[args.precision]
    rows, first, layers = agreement.diverge(a, b, content_x, style_x, config, config.num_epochs, threshold)
    text = agreement.divergence_report(a.name, b.name, rows, first, layers, threshold)
    print(text)
    name = f"diverge-{a.name}-{b.name}.md"
    atomic.write_text(out / name, text)
    print(f"wrote {printable(str(args.out / name))}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
