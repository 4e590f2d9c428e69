"""Measure cross-backend agreement and print the README's table.

    python benchmarks/agreement_table.py            # all installed backends, float32 on the CPU
    python benchmarks/agreement_table.py --json runs/agreement.json
    python benchmarks/agreement_table.py --precision float64 --adam stock,reference   # the float64 rows
    python benchmarks/agreement_table.py --recipes pytorch-tutorial,tf1-tutorial     # the other recipes' rows

Every entry is max |a - b| / max(|a|, |b|) over all elements and cases, with the
same NumPy inputs fed to each backend. "numpy" is common/reference.py in float64.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import backends  # noqa: E402
from common import atomic, reference  # noqa: E402
from tools import agreement, strict_json  # noqa: E402
from common.images import postprocess_array, postprocess_float  # noqa: E402
from tools.report import psnr  # noqa: E402
from common.config import ADAM_FORMULAS, D2L, StyleTransferConfig  # noqa: E402
from common.recipes import RECIPES  # noqa: E402

TRAIN_EPOCHS = 20


def measure(names: list[str], precision: str = "float32", adams=("stock",)) -> dict[str, dict[str, float]]:
    """{quantity: {"a vs b": max relative error}}; quantities are labelled with a precision other
    than float32 and an Adam other than stock."""
    made = {}
    for name in names:
        made[name, "random"] = backends.get_backend(name, weights="random", device="cpu", precision=precision)
        made[name, "bundled"] = backends.get_backend(name, weights="bundled", device="cpu", precision=precision)
    table: dict[str, dict[str, float]] = {}
    label = "" if precision == "float32" else f", {precision}"

    def record(quantity, pair, diff):
        quantity += label
        key = f"{pair[0]} vs {pair[1]}"
        table.setdefault(quantity, {})[key] = max(table.get(quantity, {}).get(key, 0.0), diff.rel)

    # Small tensors: each backend against the float64 reference, and every pair.
    outputs = {}
    for (shape, scale), case in zip(agreement.SHAPES, agreement.SHAPE_IDS):
        x, y = agreement.tensors(shape, scale, count=2)
        outputs["numpy", case] = {
            "gram": reference.gram(x), "tv": reference.tv_loss(x),
            "content loss": reference.content_loss(x, y), "style loss": reference.style_loss(x, reference.gram(y)),
        }
        for name in names:
            b = made[name, "random"]
            outputs[name, case] = {
                "gram": agreement.gram(b, x), "tv": agreement.tv_loss(b, x),
                "content loss": agreement.content_loss(b, x, y), "style loss": agreement.style_loss(b, x, y),
            }
        for a, b in itertools.combinations(["numpy", *names], 2):
            for quantity in outputs["numpy", case]:
                record(quantity, (a, b), agreement.difference(outputs[a, case][quantity], outputs[b, case][quantity]))

    content_x, style_x = agreement.images()
    config = D2L.replace(image_shape=agreement.IMAGE_SHAPE, num_epochs=TRAIN_EPOCHS)
    names_all = agreement.all_tap_names(config)
    results = {}
    for name in names:
        for weights in ("random", "bundled"):
            b = made[name, weights]
            results[name, weights, "features"] = agreement.features(b, content_x, names_all)
            results[name, weights, "grad"] = agreement.loss_and_grad(b, content_x, style_x, config)
        for adam in adams:
            run = list(agreement.steps(made[name, "bundled"], content_x, style_x, config.replace(adam=adam),
                                       TRAIN_EPOCHS))
            results[name, adam, "step"] = run[0][1]
            results[name, adam, "history"] = np.array([losses for losses, _ in run])
            results[name, adam, "final"] = run[-1][1]
    for a, b in itertools.combinations(names, 2):
        for weights in ("random", "bundled"):
            for layer in names_all:
                record(f"features ({weights})", (a, b),
                       agreement.difference(results[a, weights, "features"][layer], results[b, weights, "features"][layer]))
            record(f"loss ({weights})", (a, b), agreement.difference(results[a, weights, "grad"][0], results[b, weights, "grad"][0]))
            record(f"gradient ({weights})", (a, b), agreement.difference(results[a, weights, "grad"][1], results[b, weights, "grad"][1]))
        for adam in adams:
            training = lambda quantity: quantity + ("" if adam == "stock" else f", {adam} Adam")  # noqa: E731
            record(training("image after 1 Adam step"), (a, b),
                   agreement.difference(results[a, adam, "step"], results[b, adam, "step"]))
            history_a, history_b = results[a, adam, "history"], results[b, adam, "history"]
            per_part = [agreement.difference(history_a[:, k], history_b[:, k]) for k in range(history_a.shape[1])]
            record(training(f"{TRAIN_EPOCHS}-epoch loss history"), (a, b), max(per_part, key=lambda d: d.rel))
            record(training(f"image after {TRAIN_EPOCHS} epochs"), (a, b),
                   agreement.difference(results[a, adam, "final"], results[b, adam, "final"]))
            if precision == "float64":  # 8-bit images would be identical: PSNR of the float images
                images = [postprocess_float(results[n, adam, "final"]) for n in (a, b)]
                quantity = f"PSNR after {TRAIN_EPOCHS} epochs, float images, dB (higher is closer)"
            else:
                images = [np.asarray(postprocess_array(results[n, adam, "final"])) for n in (a, b)]
                quantity = f"PSNR after {TRAIN_EPOCHS} epochs, dB (higher is closer)"
            table.setdefault(training(quantity) + label, {})[f"{a} vs {b}"] = psnr(*images)
    return table


def measure_recipes(names: list[str], precision: str, recipe_names: list[str]) -> dict[str, dict[str, float]]:
    """Each recipe, its whole run on the default pair (bundled weights, the agreement tests' 64x96):
    the image after the first step and after the last, the loss history, and the PSNR at the end."""
    from common import images
    from common.stylize import start_image, targets

    label = "" if precision == "float32" else f", {precision}"
    made = {name: backends.get_backend(name, weights="bundled", device="cpu", precision=precision) for name in names}
    content, style = (images.load_image(path) for path in (images.DEFAULT_CONTENT, images.DEFAULT_STYLE))
    table: dict[str, dict[str, float]] = {}
    for recipe in recipe_names:
        config = StyleTransferConfig(recipe=recipe, image_shape=agreement.IMAGE_SHAPE).validate()
        space = config.recipe_data.space
        runs = {}
        # The rounding control, where the recipe has an lr: the first backend again with its lr one ulp up.
        control = f"{names[0]} (lr + 1 ulp)"
        runners = [(name, b, config) for name, b in made.items()]
        if "lr" in config.recipe_data.uses:
            runners.append((control, made[names[0]], agreement.one_ulp_up(config, made[names[0]].numpy_dtype)))
        for name, b, run_config in runners:
            content_X, contents_Y, styles_Y = targets(b, content, style, run_config)
            state = b.init_state(start_image(b, content_X, run_config), contents_Y, styles_Y, run_config)
            history, first = [], None
            for _ in range(run_config.num_epochs):
                state, losses = b.train_step(state)
                history.append([b.scalar(v) for v in losses])
                if first is None:
                    first = b.to_numpy(b.current_image(state))
            runs[name] = first, np.array(history), b.to_numpy(b.current_image(state))
        steps = f"{config.num_epochs} steps"
        pairs = list(itertools.combinations(names, 2)) + ([(names[0], control)] if control in runs else [])
        for a, b in pairs:
            key = f"{a} vs {b}"

            def put(quantity, value):
                table.setdefault(f"{recipe}: {quantity}{label}", {})[key] = value

            put("image after 1 step", agreement.difference(runs[a][0], runs[b][0]).rel)
            put(f"loss history, {steps}", max(agreement.difference(runs[a][1][:, k], runs[b][1][:, k]).rel
                                             for k in range(runs[a][1].shape[1])))
            put(f"image after {steps}", agreement.difference(runs[a][2], runs[b][2]).rel)
            if precision == "float64":
                put(f"PSNR after {steps}, float images, dB (higher is closer)",
                    psnr(*(postprocess_float(runs[n][2], space) for n in (a, b))))
            else:
                put(f"PSNR after {steps}, dB (higher is closer)",
                    psnr(*(np.asarray(postprocess_array(runs[n][2], space)) for n in (a, b))))
    return table


def markdown(table: dict[str, dict[str, float]]) -> str:
    pairs = sorted({pair for row in table.values() for pair in row}, key=lambda p: (not p.startswith("numpy"), p))
    lines = ["| quantity | " + " | ".join(pairs) + " |", "|---|" + "---:|" * len(pairs)]
    for quantity, row in table.items():
        cell = "{:.1f}" if "PSNR" in quantity else "{:.1e}"
        lines.append(f"| {quantity} | " + " | ".join(cell.format(row[p]) if p in row else "" for p in pairs) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(backends.NAMES), help="comma-separated backends")
    parser.add_argument("--precision", choices=("float32", "float64"), default="float32")
    parser.add_argument("--adam", default="stock", help="comma-separated Adam formulas for the training rows: "
                                                        + ", ".join(ADAM_FORMULAS))
    parser.add_argument("--recipes", default="d2l",
                        help="comma-separated recipes: d2l gives the rows above; the others (pytorch-tutorial, "
                             "tf1-tutorial) their whole runs' rows")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    names = [n for n in args.backends.split(",") if not backends.why_unavailable(n)]
    adams = [a for a in args.adam.split(",") if a]
    if not adams or any(a not in ADAM_FORMULAS for a in adams):
        parser.exit(2, f"agreement_table.py: error: --adam takes {', '.join(ADAM_FORMULAS)}, got {args.adam!r}\n")
    recipe_names = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipe_names if r not in RECIPES]
    if unknown or not recipe_names:
        parser.exit(2, f"agreement_table.py: error: --recipes takes {', '.join(RECIPES)}, got {args.recipes!r}\n")
    table = measure(names, args.precision, adams) if "d2l" in recipe_names else {}
    table.update(measure_recipes(names, args.precision, [r for r in recipe_names if r != "d2l"]))
    print(markdown(table))
    if args.json:
        atomic.write_text(args.json, strict_json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
