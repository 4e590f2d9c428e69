"""Training-step speed per backend, against a naive baseline and the hardware's measured peak.

    python benchmarks/step_benchmark.py                      # all backends, float32, 3 sizes
    python benchmarks/step_benchmark.py --sizes 150x225 --backends torch,jax --out runs/steps.json
    python benchmarks/step_benchmark.py --sizes 150x225 --repeat 3   # each backend 3 times, interleaved

Each backend runs in its own process. For each image size it times blocks of
training steps with one device synchronisation per block (as a run that
reports progress every few steps does), and reports the median block time per
step; with --repeat, the median of the runs' medians and their range. FLOPs
are counted from the layer shapes: the forward pass through conv5_1 and the
backward pass to the image only (convolutions and Gram matrices; ReLU, pooling
and the elementwise losses are under 1% and left out).
The peak is the machine's, not a framework's: the best rate of square matrix
products (common/machine.py) over NumPy and every framework timed, each in its
own process, measured before each round of backends; one figure for all rows.
"naive" is d2l's listing written plainly: eager PyTorch, VGG parameters left
trainable (so their gradients are computed too), a loss sync every step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backends import NAMES  # noqa: E402  (the registry imports no framework)
from common import atomic  # noqa: E402
from common.interface import PRECISIONS  # noqa: E402
from tools import failures, strict_json, worker  # noqa: E402
from tools.cli import Parser, backend_list, image_size  # noqa: E402
from tools.estimate import step_flops  # noqa: F401, E402  (FLOPs from the layer shapes; tests read it here)
from tools.step_worker import NAIVE, NAIVE_FRAMEWORK, StepJob  # noqa: E402

SIZES = ((150, 225), (300, 450), (600, 900))
CHOICES = (NAIVE, *NAMES)  # the baseline and every backend
WORKER = worker.command("tools.step_worker")


def plan_arg(text: str) -> tuple[int, int, int]:
    try:
        warmup, steps, blocks = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WARMUP,STEPS,BLOCKS (three integers), got {text!r}") from None
    if warmup < 0 or steps < 1 or blocks < 1:
        raise argparse.ArgumentTypeError(f"need WARMUP >= 0, STEPS >= 1 and BLOCKS >= 1, got {text!r}")
    return warmup, steps, blocks


def merge_repeats(runs: list[dict]) -> dict:
    """One backend's repeated runs as one: per size the median ms/step, its range and each run's figure."""
    finished = [run for run in runs if "error" not in run]
    if not finished:
        return runs[0]
    merged = {**finished[0], "repeats": len(finished), "rows": []}
    for i, row in enumerate(finished[0]["rows"]):
        times = [run["rows"][i]["ms_per_step"] for run in finished]
        merged["rows"].append({**row, "ms_per_step": statistics.median(times), "ms_min": min(times),
                               "ms_max": max(times), "ms_per_step_each_run": times}
                              if len(finished) > 1 else {**row, "ms_per_step_each_run": times})
    return merged


def add_rates(results: list[dict], peak_flops: float) -> None:
    """GFLOP/s and share of the machine's one peak, for every row; and each run's speed-up over naive's."""
    naive = next((res for res in results if res["backend"] == NAIVE and "error" not in res), None)
    for res in results:
        for i, row in enumerate(res.get("rows", [])):
            row["gflops"] = row["gflop_per_step"] / (row["ms_per_step"] / 1e3)
            row["fraction_of_peak"] = row["gflops"] * 1e9 / peak_flops
            if naive is not None:
                base = naive["rows"][i]
                row["faster_than_naive"] = base["ms_per_step"] / row["ms_per_step"]
                # Run k against naive's run k, timed just before it: the shared machine's load drifts.
                row["faster_than_naive_each_run"] = [b / t for b, t in zip(base["ms_per_step_each_run"],
                                                                           row["ms_per_step_each_run"])]


# --- the report ----------------------------------------------------------------------------


def peak_text(peak: dict) -> str:
    sources = ", ".join(f"{name} {gflops:.0f}" for name, gflops in peak["by_source"].items() if gflops)
    sizes = ", ".join(str(n) for n in peak["sizes"])
    return (f"Peak {peak['gflops']:.0f} GFLOP/s ({peak['precision']}): the best rate of n x n matrix products "
            f"(n = {sizes}) over {sources} GFLOP/s, each source in its own process, best of 5 blocks a size, "
            f"measured before each of the {peak['rounds']} round(s) of backends and after the last; one peak for every row.")


def markdown(report: dict) -> str:
    from common import machine

    results = report["results"]
    done = [res for res in results if "error" not in res]
    timing = "; ".join(sorted({f"{r['size'][0]}x{r['size'][1]}: {r['blocks']} blocks of {r['steps_per_block']} steps"
                               for res in done for r in res["rows"]}))
    versions = "; ".join(sorted({", ".join(f"{k} {v}" for k, v in res["versions"].items() if v is not None)
                                 for res in done}))
    lines = [f"Machine: {machine.summary(report['machine'])}.  ",
             f"Command: `python benchmarks/step_benchmark.py {report['command']}`; {report['peak']['rounds']} round(s), "
             f"backends interleaved, each in its own process; per size the median block ({timing}).  ",
             f"Versions: {versions}.  ",
             peak_text(report["peak"]), "",
             "| backend | precision | size | ms/step (min-max) | each run | GFLOP/step | GFLOP/s | of peak | faster than naive | each run |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    for res in results:
        if "error" in res:
            lines.append(f"| {res['backend']} | {res['precision']} | - | {res['error']} | | | | | | |")
            continue
        for r in res["rows"]:
            speedup = f"{r['faster_than_naive']:.2f}x" if "faster_than_naive" in r else "-"
            each = ", ".join(f"{t:.0f}" for t in r["ms_per_step_each_run"])
            each_speedup = ", ".join(f"{x:.2f}" for x in r.get("faster_than_naive_each_run", []))
            lines.append(
                f"| {res['backend']} | {res['precision']} | {r['size'][0]}x{r['size'][1]} | {r['ms_per_step']:.0f} "
                f"({r['ms_min']:.0f}-{r['ms_max']:.0f}) | {each} | {r['gflop_per_step']:.1f} | {r['gflops']:.0f} | "
                f"{100 * r['fraction_of_peak']:.0f}% | {speedup} | {each_speedup} |")
    settings = [f"{res['backend']}: " + ", ".join(f"{k}={v}" for k, v in res["speed_settings"].items())
                for res in results if res.get("speed_settings")]
    if settings:
        lines += ["", "Backend settings chosen at run time: " + "; ".join(settings) + "."]
    return "\n".join(lines) + "\n"


def run_worker(job: StepJob, label: str) -> dict:
    """One measurement in its own process (tools/worker.py): its result, or {"error": why not}."""
    with tempfile.TemporaryDirectory(prefix="step-benchmark-") as folder:
        outcome = worker.run(WORKER, job, Path(folder), timeout=None)
    if outcome.result is not None:
        return outcome.result
    return {"error": f"{label}: {failures.from_exit(outcome.returncode, outcome.stderr_tail).error}"}


def runs_done(runs: dict[str, list[dict]]) -> list[dict]:
    return [run for found in runs.values() for run in found if "error" not in run]


def peak_sources(names) -> list[str]:
    """NumPy and every framework timed ("naive" is torch)."""
    return list(dict.fromkeys(["numpy", *(NAIVE_FRAMEWORK if name == NAIVE else name for name in names)]))


def build_parser() -> Parser:
    parser = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backends", default=",".join(CHOICES), type=lambda text: backend_list(text, CHOICES),
                        help=f"comma-separated; {NAIVE} = the baseline")
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES), help="HxW,HxW,...")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS)
    parser.add_argument("--out", type=Path, help="write the results as JSON here, and the table beside it (.md)")
    parser.add_argument("--repeat", type=int, default=1, choices=range(1, 11), metavar="N",
                        help="run every backend N times, interleaved; report the median run's ms/step and the range")
    parser.add_argument("--plan", type=plan_arg, metavar="WARMUP,STEPS,BLOCKS",
                        help="steps to warm up, steps per timed block, blocks; default: by size and device (plan_for)")
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    try:
        sizes = tuple(image_size(text) for text in args.sizes.split(","))
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--sizes: {exc}")
    try:
        with worker.stop_signals_as_interrupts():  # a cancelled job or `timeout` stops the worker too
            return benchmark(args, sizes)
    except KeyboardInterrupt as exc:
        print(f"step_benchmark.py: stopped ({getattr(exc, 'name', 'Ctrl-C')}); nothing written", file=sys.stderr)
        return worker.interrupt_exit_code(exc)


def benchmark(args, sizes) -> int:
    from common import machine

    runs: dict[str, list[dict]] = {name: [] for name in args.backends}
    peaks: dict[str, list[float]] = {source: [] for source in peak_sources(args.backends)}

    def measure_peaks(when: str) -> None:
        for source in peaks:
            print(f"peak: {source} ({when}) ...", file=sys.stderr, flush=True)
            found = run_worker(StepJob(source, args.precision, peak_only=True), f"peak {source}")
            if found.get("gflops"):
                peaks[source].append(found["gflops"])

    for repeat in range(args.repeat):  # interleaved, so that a noisy minute hits every backend alike
        measure_peaks(f"before round {repeat + 1}/{args.repeat}")
        for name in args.backends:
            print(f"timing {name} ({repeat + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
            result = run_worker(StepJob(name, args.precision, sizes, args.plan), name)
            runs[name].append({"backend": name, "precision": args.precision, **result})
    # Once more at the end: on a shared machine the load can fall during a round, and a peak
    # measured only before it would then be too low (a run of issue 13 showed 170% that way).
    measure_peaks("after the last round")
    by_source = {source: max(found, default=None) for source, found in peaks.items()}
    if not any(by_source.values()):
        print("no peak could be measured: every matmul probe failed", file=sys.stderr)
        return 1
    on_gpu = any(res.get("device") != machine.cpu_name() for res in runs_done(runs))
    peak = {"gflops": max(v for v in by_source.values() if v), "precision": args.precision, "by_source": by_source,
            "sizes": list(machine.GPU_PEAK_SIZES if on_gpu else machine.CPU_PEAK_SIZES), "rounds": args.repeat}
    results = [merge_repeats(runs[name]) for name in args.backends]
    add_rates(results, peak["gflops"] * 1e9)
    report = {"machine": machine.describe(), "peak": peak, "command": " ".join(sys.argv[1:]), "results": results}
    table = markdown(report)
    print(table)
    if args.out:
        atomic.write_text(args.out, strict_json.dumps(report, indent=1))
        atomic.write_text(args.out.with_suffix(".md"), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
