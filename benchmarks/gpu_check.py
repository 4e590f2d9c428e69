"""The 300x450 GPU check: float32, tf32 and bf16 per backend, and what tf32 and bf16 cost in accuracy.

    bash benchmarks/gpu_check.sh                  # what the lent GPU machines run (torch + JAX, no TensorFlow)
    python benchmarks/gpu_check.py --dry-run      # what it would run, without a GPU

For every backend installed (TensorFlow too, where present) and every precision,
one fresh process: the GPU's measured matmul peak in that precision
(``peak_matmul_flops``), the training step timed as ``step_benchmark.py`` times
it on a GPU, the peak GPU memory, and a short stylization of the default pair
from the content image. Then, per backend, the PSNR of the tf32 and bf16 images
against the float32 image. Everything must fit in 5 minutes, JAX's compiles
included, so the stylization is short (``QUALITY_EPOCHS``) and every process
gets what is left of the budget. Without an NVIDIA GPU it is a dry run: it says
what it skipped and why, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import atomic, machine  # noqa: E402
from backends import NAMES  # noqa: E402
from tools import failures, worker  # noqa: E402
from tools.gpu_check_worker import GpuCheckJob  # noqa: E402

WORKER = worker.command("tools.gpu_check_worker")

IMAGE_SHAPE = (300, 450)
PRECISIONS = ("float32", "tf32", "bf16")
BUDGET_S = 285  # the whole check; under 5 minutes with start-up to spare
QUALITY_EPOCHS = 200  # of d2l's 500: enough for the images to differ as they will, cheap on a GPU
WARMUP, STEPS, BLOCKS = 10, 20, 5  # timed steps: 5 blocks of 20, one synchronisation a block

# Documented dense (no 2:4 sparsity) peaks in TFLOP/s per precision: float32 on the CUDA cores,
# tf32 and bf16 on the tensor cores. NVIDIA H100 Tensor Core GPU datasheet and Hopper
# whitepaper (H100 SXM5: FP32 66.9, TF32 494.7, BF16 989.4; NVIDIA quotes the tensor-core
# figures with sparsity, 989 and 1979); the NVIDIA H200 datasheet gives H200 SXM the same
# figures (and H200 NVL 60 / 835* / 1671*), H100 PCIe 51 / 756* / 1513* (* with sparsity, halved here).
# Matched by the name nvidia-smi reports; first match wins, so the specific names come first.
DOCUMENTED_PEAK_TFLOPS = (
    ("H200 NVL", {"float32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    ("H200", {"float32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("H100 NVL", {"float32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    ("H100 PCIe", {"float32": 51.2, "tf32": 378.0, "bf16": 756.5}),
    ("H100", {"float32": 66.9, "tf32": 494.7, "bf16": 989.4}),
)


def documented_peak(gpu_name: str) -> dict[str, float] | None:
    return next((peaks for key, peaks in DOCUMENTED_PEAK_TFLOPS if key in gpu_name), None)


# --- one backend in one precision (its own process: tools/gpu_check_worker.py) -----------------


# A CPU rehearsal of the whole check (tests/test_gpu_check.py): tiny, so that it proves the code path only.
# Its budget is larger: a shared CPU can be slow, and the rehearsal checks the path, not the time.
# Its peak probe multiplies small matrices: a CPU without bf16 instructions emulates bf16, and
# 2048x2048 products took minutes there.
SMOKE = {"image_shape": (32, 32), "epochs": 2, "warmup": 1, "steps": 2, "blocks": 2, "budget_s": 540,
         "peak_sizes": (128,)}
FULL = {"image_shape": IMAGE_SHAPE, "epochs": QUALITY_EPOCHS, "warmup": WARMUP, "steps": STEPS, "blocks": BLOCKS,
        "budget_s": BUDGET_S}


# --- the report -----------------------------------------------------------------------------


def psnr_against_float32(rows: list[dict], folder: Path) -> dict[tuple[str, str], float]:
    import numpy as np

    from tools.report import psnr

    found = {}
    for row in rows:
        if "error" in row or row["precision"] == "float32":
            continue
        reference = folder / f"{row['backend']}-float32.npy"
        if reference.exists():
            found[row["backend"], row["precision"]] = psnr(np.load(reference), np.load(folder / f"{row['backend']}-{row['precision']}.npy"))
    return found


def markdown(rows: list[dict], psnr_db: dict, gpu: str, documented: dict | None, plan: dict = FULL) -> str:
    (height, width), epochs = plan["image_shape"], plan["epochs"]
    lines = [f"GPU: {gpu}; {height}x{width}, {plan['blocks']} blocks of {plan['steps']} steps, median block; "
             f"images after {epochs} epochs from the content image. "
             "Of peak: the step's useful FLOP/s (step_benchmark.step_flops) over the GPU's peak in that precision: "
             + ("the documented dense figure (benchmarks/gpu_check.py cites it) and " if documented else "")
             + "the best measured matmul rate of that framework in that precision.", "",
             "| backend | precision | ms/step (min-max) | TFLOP/s | of documented peak | of measured matmul peak | "
             "peak memory MiB | image vs float32, PSNR dB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['backend']} | {row['precision']} | {row['error']} | | | | | |")
            continue
        doc = f"{100 * row['tflops'] / documented[row['precision']]:.0f}%" if documented else "-"
        quality = psnr_db.get((row["backend"], row["precision"]))
        lines.append(f"| {row['backend']} | {row['precision']} | {row['ms_per_step']:.2f} ({row['ms_min']:.2f}-"
                     f"{row['ms_max']:.2f}) | {row['tflops']:.1f} | {doc} | "
                     f"{100 * row['tflops'] / row['matmul_peak_tflops']:.0f}% | {row['peak_memory_mib']:.0f} | "
                     f"{'reference' if row['precision'] == 'float32' else (f'{quality:.1f}' if quality else '-')} |")
    return "\n".join(lines) + "\n"


def dry_run(reason: str, names: list[str]) -> int:
    print(f"gpu_check: DRY RUN: {reason}.")
    print(f"gpu_check: skipped: the {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} table ({', '.join(PRECISIONS)}: ms/step, "
          "share of the GPU's peak, peak memory) and the PSNR of tf32 and bf16 against float32, "
          "because they need an NVIDIA GPU.")
    print(f"gpu_check: would run {len(names) * len(PRECISIONS)} processes, one per backend and precision: "
          + ", ".join(f"{n} {p}" for n in names for p in PRECISIONS)
          + f"; each times {BLOCKS}x{STEPS} steps after {WARMUP} and stylizes {QUALITY_EPOCHS} epochs; "
          f"budget {BUDGET_S} s in all.")
    print(f"gpu_check: machine: {machine.summary(machine.describe(gpus=[]))}")
    return 0


def main() -> int:
    import backends

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    parser.add_argument("--out", type=Path, help="also write the table (.md) and the rows (.json) here")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the whole check, tiny, on any device
    parser.add_argument("--backends", type=lambda text: text.split(","), help=argparse.SUPPRESS)
    args = parser.parse_args()
    plan = SMOKE if args.smoke else FULL
    gpus = machine.gpu_names()
    if args.dry_run or not (gpus or args.smoke):  # installed, not imported: a dry run starts no framework
        reason = "asked for with --dry-run" if args.dry_run else "no NVIDIA GPU here (nvidia-smi is missing or lists none)"
        return dry_run(reason, [name for name in NAMES if backends.installed(name)])
    names = [name for name in args.backends or NAMES if not backends.why_unavailable(name)]
    if not names:
        print("gpu_check: no backend can be imported here; install torch and JAX", file=sys.stderr)
        return 1
    try:
        with worker.stop_signals_as_interrupts():  # gpu_check.sh's `timeout 300` stops the worker too
            rows, psnr_db = check(names, plan)
    except KeyboardInterrupt as exc:
        print(f"gpu_check: stopped ({getattr(exc, 'name', 'Ctrl-C')}); nothing written", file=sys.stderr)
        return worker.interrupt_exit_code(exc)
    device = gpus[0] if gpus else f"none (a --smoke rehearsal on {machine.cpu_name()})"
    table = markdown(rows, psnr_db, device, documented_peak(device), plan)
    print(table)
    if args.out:
        report = {"machine": machine.describe(gpus), "rows": rows,
                  "psnr_db": {f"{n} {p}": v for (n, p), v in psnr_db.items()}}
        atomic.write_text(args.out.with_suffix(".json"), json.dumps(report, indent=1))
        atomic.write_text(args.out.with_suffix(".md"), table)
    return 0


def check(names: list[str], plan: dict) -> tuple[list[dict], dict]:
    """Every backend in every precision, each in its own process, within the plan's budget; the rows and PSNRs."""
    deadline = time.monotonic() + plan["budget_s"]
    job_plan = {key: plan[key] for key in ("image_shape", "epochs", "warmup", "steps", "blocks")}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            for precision in PRECISIONS:
                left = deadline - time.monotonic()
                if left < 20:
                    rows.append({"backend": name, "precision": precision, "error": "skipped: the 5-minute budget ran out"})
                    continue
                print(f"gpu_check: {name} {precision} ({left:.0f} s left) ...", file=sys.stderr, flush=True)
                job = GpuCheckJob(name, precision, str(Path(folder) / f"{name}-{precision}.npy"), **job_plan,
                                  peak_sizes=plan.get("peak_sizes"))
                outcome = worker.run(WORKER, job, Path(folder) / f"{name}-{precision}", timeout=left)
                if outcome.returncode is None:
                    rows.append({"backend": name, "precision": precision, "error": "stopped: the 5-minute budget ran out"})
                elif outcome.result is None:
                    error = failures.from_exit(outcome.returncode, outcome.stderr_tail).error
                    rows.append({"backend": name, "precision": precision, "error": error[:200]})
                else:
                    rows.append(outcome.result)
        return rows, psnr_against_float32(rows, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
