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
The peak is the best of several same-precision 2048x2048 matrix products timed in the same process.
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

from common import atomic, strict_json  # noqa: E402
from common.config import D2L  # noqa: E402
from common.interface import PRECISIONS  # noqa: E402
from common.estimate import step_flops  # noqa: E402  (FLOPs from the layer shapes)
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


def peak_flops(name: str, precision: str, n: int = 2048) -> float:
    if name in ("torch", "naive"):
        import torch

        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        device = "cuda" if torch.cuda.is_available() else "cpu"
        a = torch.randn(n, n, device=device, dtype=dtype)
        matmul, sync = (lambda: a @ a), (lambda: torch.cuda.synchronize() if device == "cuda" else None)
    elif name == "tensorflow":
        import tensorflow as tf

        a = tf.random.normal((n, n), dtype=tf.bfloat16 if precision == "bf16" else tf.float32)
        out = [a]
        matmul = lambda: out.__setitem__(0, tf.linalg.matmul(a, a))  # noqa: E731
        sync = lambda: out[0].numpy()  # noqa: E731
    else:
        import jax
        import jax.numpy as jnp

        a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.bfloat16 if precision == "bf16" else jnp.float32)
        # HIGHEST for float32: JAX's default is TF32-class on recent NVIDIA GPUs, the backend's float32 is not.
        matmul_precision = jax.lax.Precision.HIGHEST if precision == "float32" else jax.lax.Precision.DEFAULT
        f = jax.jit(lambda x: jnp.matmul(x, x, precision=matmul_precision))
        out = [f(a)]
        matmul = lambda: out.__setitem__(0, f(a))  # noqa: E731
        sync = lambda: out[0].block_until_ready()  # noqa: E731
    # The best of several blocks: a peak is what the hardware can do, not what a noisy moment gave.
    times = time_blocks(lambda n: [matmul() for _ in range(n)], sync, warmup=2, steps=3, blocks=7)
    return 2.0 * n**3 / min(times)


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


def worker(name: str, precision: str, sizes) -> dict:
    if name == "naive":
        precision = "float32"  # the plain listing knows no other; its row says so
    from common.runner import cpu_name, versions

    rows = []
    device = cpu_name()
    for image_shape in sizes:
        if name == "naive":
            run, sync, gpu_name = naive_steps(image_shape)
        else:
            run, sync, backend = backend_steps(name, precision, image_shape)
            gpu_name = backend.device_name()
        device = gpu_name or device
        warmup, steps, blocks = plan_for(image_shape, on_gpu=gpu_name is not None)
        times = time_blocks(run, sync, warmup, steps, blocks)
        rows.append({"size": list(image_shape), "ms_per_step": 1e3 * statistics.median(times),
                     "ms_min": 1e3 * min(times), "ms_max": 1e3 * max(times), "blocks": blocks, "steps_per_block": steps,
                     "gflop_per_step": step_flops(image_shape) / 1e9})
    peak = peak_flops(name, precision)
    for row in rows:
        row["gflops"] = row["gflop_per_step"] / (row["ms_per_step"] / 1e3)
        row["fraction_of_peak"] = row["gflops"] * 1e9 / peak
    return {"backend": name, "precision": precision, "device": device, "peak_gflops": peak / 1e9,
            "versions": versions("torch" if name == "naive" else name), "rows": rows}


def merge_repeats(runs: list[dict]) -> dict:
    """One backend's repeated runs as one: per size the median ms/step, and its range over the runs."""
    finished = [run for run in runs if "error" not in run]
    if len(runs) == 1 or not finished:
        return runs[0]
    merged = {**finished[0], "repeats": len(finished), "peak_gflops": statistics.median(r["peak_gflops"] for r in finished)}
    merged["rows"] = []
    for i, row in enumerate(finished[0]["rows"]):
        times = [run["rows"][i]["ms_per_step"] for run in finished]
        gflops = row["gflop_per_step"] / (statistics.median(times) / 1e3)
        merged["rows"].append({**row, "ms_per_step": statistics.median(times), "ms_min": min(times), "ms_max": max(times),
                               "gflops": gflops, "fraction_of_peak": gflops / merged["peak_gflops"],
                               "ms_per_step_each_run": times})
    return merged


# --- the report ----------------------------------------------------------------------------


def markdown(results: list[dict]) -> str:
    naive = {tuple(r["size"]): r["ms_per_step"] for res in results if res["backend"] == "naive" for r in res["rows"]}
    lines = ["| backend | precision | size | ms/step (min-max) | GFLOP/step | GFLOP/s | of peak | peak GFLOP/s | faster than naive |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        if "error" in res:
            lines.append(f"| {res['backend']} | {res['precision']} | - | {res['error']} | | | | | |")
            continue
        for r in res["rows"]:
            base = naive.get(tuple(r["size"]))
            speedup = f"{base / r['ms_per_step']:.2f}x" if base else "-"
            lines.append(
                f"| {res['backend']} | {res['precision']} | {r['size'][0]}x{r['size'][1]} | {r['ms_per_step']:.0f} "
                f"({r['ms_min']:.0f}-{r['ms_max']:.0f}) | {r['gflop_per_step']:.1f} | {r['gflops']:.0f} | "
                f"{100 * r['fraction_of_peak']:.0f}% | {res['peak_gflops']:.0f} | {speedup} |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        sizes = [image_size(text) for text in args.sizes.split(",")]
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--sizes: {exc}")
    if args.worker:
        print(strict_json.dumps(worker(args.worker, args.precision, sizes)))
        return 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    runs: dict[str, list[dict]] = {name: [] for name in args.backends}
    for repeat in range(args.repeat):  # interleaved, so that a noisy minute hits every backend alike
        for name in args.backends:
            print(f"timing {name} ({repeat + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--worker", name, "--sizes", args.sizes, "--precision",
                                  args.precision], capture_output=True, text=True, env=env, cwd=REPO)
            if out.returncode != 0:
                runs[name].append({"backend": name, "precision": args.precision,
                                   "error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]})
            else:
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = [merge_repeats(runs[name]) for name in args.backends]
    table = markdown(results)
    print(table)
    if args.out:
        atomic.write_text(args.out, strict_json.dumps(results, indent=1))
        atomic.write_text(args.out.with_suffix(".md"), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
