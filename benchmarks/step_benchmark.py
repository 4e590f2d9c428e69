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
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from common import atomic  # noqa: E402
from tools import strict_json  # noqa: E402
from common.config import D2L  # noqa: E402
from common.interface import PRECISIONS  # noqa: E402
from tools.estimate import step_flops  # noqa: E402  (FLOPs from the layer shapes)
from backends import NAMES  # noqa: E402  (the registry imports no framework)
from compare import backend_list, image_size  # noqa: E402

SIZES = ((150, 225), (300, 450), (600, 900))
CHOICES = ("naive", *NAMES)  # "naive": the baseline


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


def plan_arg(text: str) -> tuple[int, int, int]:
    try:
        warmup, steps, blocks = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WARMUP,STEPS,BLOCKS (three integers), got {text!r}") from None
    if warmup < 0 or steps < 1 or blocks < 1:
        raise argparse.ArgumentTypeError(f"need WARMUP >= 0, STEPS >= 1 and BLOCKS >= 1, got {text!r}")
    return warmup, steps, blocks


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


# --- workers (one process each) ----------------------------------------------------------


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


def worker(name: str, precision: str, sizes, plan=None) -> dict:
    if name == "naive":
        precision = "float32"  # the plain listing knows no other; its row says so
    from common.machine import cpu_name
    from tools.stylize_worker import versions

    rows = []
    device, settings = cpu_name(), {}
    for image_shape in sizes:
        if name == "naive":
            run, sync, gpu_name = naive_steps(image_shape)
        else:
            run, sync, backend = backend_steps(name, precision, image_shape)
            gpu_name, settings = backend.device_name(), backend.speed_settings()
        device = gpu_name or device
        warmup, steps, blocks = plan or plan_for(image_shape, on_gpu=gpu_name is not None)
        times = time_blocks(run, sync, warmup, steps, blocks)
        rows.append({"size": list(image_shape), "ms_per_step": 1e3 * statistics.median(times),
                     "ms_min": 1e3 * min(times), "ms_max": 1e3 * max(times), "blocks": blocks, "steps_per_block": steps,
                     "gflop_per_step": step_flops(image_shape) / 1e9})
    return {"backend": name, "precision": precision, "device": device, "speed_settings": settings,
            "versions": versions("torch" if name == "naive" else name), "rows": rows}


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
    naive = next((res for res in results if res["backend"] == "naive" and "error" not in res), None)
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
    versions = "; ".join(sorted({", ".join(f"{k} {v}" for k, v in res["versions"].items()) for res in done}))
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


def _worker_json(args: list[str], env: dict, label: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        return {"error": f"{label}: " + (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def runs_done(runs: dict[str, list[dict]]) -> list[dict]:
    return [run for found in runs.values() for run in found if "error" not in run]


def peak_sources(names) -> list[str]:
    """NumPy and every framework timed ("naive" is torch)."""
    return list(dict.fromkeys(["numpy", *("torch" if name == "naive" else name for name in names)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backends", default="naive,torch,tensorflow,jax", type=lambda text: backend_list(text, CHOICES),
                        help="comma-separated; naive = the baseline")
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES), help="HxW,HxW,...")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS)
    parser.add_argument("--out", type=Path, help="write the results as JSON here, and the table beside it (.md)")
    parser.add_argument("--repeat", type=int, default=1, choices=range(1, 11), metavar="N",
                        help="run every backend N times, interleaved; report the median run's ms/step and the range")
    parser.add_argument("--plan", type=plan_arg, metavar="WARMUP,STEPS,BLOCKS",
                        help="steps to warm up, steps per timed block, blocks; default: by size and device (plan_for)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--peak", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        sizes = [image_size(text) for text in args.sizes.split(",")]
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--sizes: {exc}")
    if args.peak:
        flops = peak_flops(args.peak, args.precision)
        print(strict_json.dumps({"gflops": flops / 1e9 if flops else None}))
        return 0
    if args.worker:
        print(strict_json.dumps(worker(args.worker, args.precision, sizes, args.plan)))
        return 0
    from common import machine

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    runs: dict[str, list[dict]] = {name: [] for name in args.backends}
    peaks: dict[str, list[float]] = {source: [] for source in peak_sources(args.backends)}
    def measure_peaks(when: str) -> None:
        for source in peaks:
            print(f"peak: {source} ({when}) ...", file=sys.stderr, flush=True)
            found = _worker_json(["--peak", source, "--precision", args.precision], env, f"peak {source}")
            if found.get("gflops"):
                peaks[source].append(found["gflops"])

    for repeat in range(args.repeat):  # interleaved, so that a noisy minute hits every backend alike
        measure_peaks(f"before round {repeat + 1}/{args.repeat}")
        for name in args.backends:
            print(f"timing {name} ({repeat + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
            plan = ["--plan", ",".join(map(str, args.plan))] if args.plan else []
            result = _worker_json(["--worker", name, "--sizes", args.sizes, "--precision", args.precision, *plan],
                                  env, name)
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
