"""Measuring how closely two backends agree, on shared NumPy inputs.

Used by the cross-backend tests (with tolerances), by
``benchmarks/agreement_table.py`` (the README's table) and by
``compare.py --diverge`` (where two backends first part ways). Every quantity
is computed from NumPy float32 inputs through ``from_numpy``, so both sides
see exactly the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from common.config import StyleTransferConfig
from common.vgg import feature_plan


@dataclass(frozen=True)
class Difference:
    """max |a - b| / max(|a|, |b|), and where the worst element sits."""

    rel: float
    abs: float
    index: tuple[int, ...]
    a: float
    b: float

    def describe(self) -> str:
        return f"max relative error {self.rel:.2e} (abs {self.abs:.2e}) at {self.index}: {self.a!r} vs {self.b!r}"


def difference(a, b) -> Difference:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    err = np.abs(a - b)
    index = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    scale = max(float(np.max(np.abs(a), initial=0)), float(np.max(np.abs(b), initial=0)), 1e-300)
    worst = float(err[index]) if err.size else 0.0
    return Difference(worst / scale, worst, tuple(int(i) for i in index), float(a[index]), float(b[index]))


# --- quantities, each from NumPy in to NumPy out ------------------------------------------


def gram(backend, x: np.ndarray) -> np.ndarray:
    return backend.to_numpy(backend.gram(backend.from_numpy(x)))


def tv_loss(backend, x: np.ndarray) -> float:
    return backend.scalar(backend.tv_loss(backend.from_numpy(x)))


def content_loss(backend, y_hat: np.ndarray, y: np.ndarray) -> float:
    return backend.scalar(backend.content_loss(backend.from_numpy(y_hat), backend.from_numpy(y)))


def style_loss(backend, y_hat: np.ndarray, y: np.ndarray) -> float:
    t = backend.from_numpy
    return backend.scalar(backend.style_loss(t(y_hat), backend.gram(t(y))))


def compute_loss(backend, X, contents_hat, styles_hat, contents, styles, loss_weights) -> np.ndarray:
    """[content parts..., style parts..., tv, total] as one vector."""
    t = backend.from_numpy
    contents_l, styles_l, tv_l, l = backend.compute_loss(
        t(X), [t(c) for c in contents_hat], [t(s) for s in styles_hat], [t(c) for c in contents],
        [backend.gram(t(s)) for s in styles], loss_weights,
    )
    return np.array([backend.scalar(v) for v in [*contents_l, *styles_l, tv_l, l]])


def all_tap_names(config: StyleTransferConfig) -> tuple[str, ...]:
    """Every layer output the default network computes, conv1_1 .. conv5_1."""
    plan = feature_plan(config.content_layers, config.style_layers, config.taps)
    return tuple(layer.name for layer in plan.layers)


def features(backend, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    _, styles = backend.extract_features(backend.from_numpy(x), [], list(names))
    return {name: backend.to_numpy(t) for name, t in zip(names, styles)}


def _state(backend, content_x, style_x, config: StyleTransferConfig, start_x=None):
    content_X = backend.from_numpy(content_x)
    contents_Y, _ = backend.extract_features(content_X, config.content_layers, config.style_layers)
    _, styles_Y = backend.extract_features(backend.from_numpy(style_x), config.content_layers, config.style_layers)
    X = content_X if start_x is None else backend.from_numpy(start_x)
    return backend.init_state(X, contents_Y, styles_Y, config)


def loss_and_grad(backend, content_x, style_x, config, start_x=None) -> tuple[np.ndarray, np.ndarray]:
    """The loss parts [content, style, tv, total] and d(total)/d(image) at ``start_x``."""
    losses, grad = backend.loss_and_grad(_state(backend, content_x, style_x, config, start_x))
    return np.array([backend.scalar(v) for v in losses]), backend.to_numpy(grad)


def steps(backend, content_x, style_x, config, num_steps, start_x=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (loss parts, image after the step) for each of ``num_steps`` training steps."""
    state = _state(backend, content_x, style_x, config, start_x)
    for _ in range(num_steps):
        state, losses = backend.train_step(state)
        yield np.array([backend.scalar(v) for v in losses]), backend.to_numpy(backend.current_image(state))


# --- where do two backends part ways? -------------------------------------------------------


# The relative image difference that rounding alone can explain, per precision: beyond it,
# ``diverge`` calls a pair diverged. float32: Adam amplifies rounding to ~1e-5 within a few steps
# (tests/tolerances.py). float64: the reference Adam's trajectories stay within ~4e-15 for 20 epochs
# (tests/tolerances.py FLOAT64_TRAJECTORY), so 1e-12 is a formula, not rounding.
ROUNDING = {"float32": 1e-4, "tf32": 1e-4, "bf16": 1e-4, "float64": 1e-12}


@dataclass(frozen=True)
class StepDifference:
    step: int
    losses: tuple[Difference, ...]  # content, style, tv, total
    image: Difference


def diverge(a, b, content_x, style_x, config: StyleTransferConfig, num_steps: int, threshold: float = 1e-4):
    """Run both backends side by side; return per-step differences, the first step whose
    image differs by more than ``threshold`` (relative; ``ROUNDING`` has one per precision), and per-layer feature
    differences there: both backends on the same image (A's), so model
    disagreement shows apart from accumulated drift."""
    rows: list[StepDifference] = []
    first, layers = None, {}
    for step, ((losses_a, X_a), (losses_b, X_b)) in enumerate(
        zip(steps(a, content_x, style_x, config, num_steps), steps(b, content_x, style_x, config, num_steps)), 1
    ):
        row = StepDifference(step, tuple(difference(x, y) for x, y in zip(losses_a, losses_b)), difference(X_a, X_b))
        rows.append(row)
        if first is None and row.image.rel > threshold:
            first = step
            names = all_tap_names(config)
            feats_a, feats_b = features(a, X_a, names), features(b, X_a, names)
            layers = {name: difference(feats_a[name], feats_b[name]) for name in names}
    return rows, first, layers


def divergence_report(name_a: str, name_b: str, rows, first, layers, threshold: float) -> str:
    lines = [
        f"# Where do {name_a} and {name_b} diverge?\n",
        "Relative differences (max |a-b| / max(|a|,|b|)) after each step.\n",
        "| step | content | style | tv | total | image | image max abs |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.step} | " + " | ".join(f"{d.rel:.1e}" for d in r.losses)
                     + f" | {r.image.rel:.1e} | {r.image.abs:.1e} |")
    if first is None:
        lines.append(f"\nThe images never differ by more than {threshold:g} (relative) in {len(rows)} steps.")
    else:
        lines += [
            f"\nFirst step with image difference above {threshold:g}: **{first}**. Features of {name_a}'s image "
            "at that step, computed by both backends:\n",
            "| layer | relative | worst element (N, C, H, W) |",
            "|---|---:|---|",
        ]
        lines += [f"| {name} | {d.rel:.1e} | {d.index} |" for name, d in layers.items()]
        worst = max(layers.values(), key=lambda d: d.rel)
        if worst.rel < threshold:
            lines.append(f"\nOn the same image both networks agree to {worst.rel:.0e} at every layer: the images "
                         f"part ways in the update (the optimizer), not in the model.")
        else:
            first_layer = next(name for name, d in layers.items() if d.rel >= threshold)
            lines.append(f"\nThe networks themselves disagree from {first_layer} on: look at that layer first.")
    return "\n".join(lines) + "\n"


# --- the shared inputs ------------------------------------------------------------------------

# (NCHW shape, magnitude): odd sizes, one channel, many channels, tall and wide maps, large and tiny values.
SHAPES: tuple[tuple[tuple[int, int, int, int], float], ...] = (
    ((1, 3, 7, 5), 1.0),
    ((1, 1, 9, 13), 1.0),
    ((1, 64, 17, 11), 1.0),
    ((1, 512, 5, 3), 1.0),
    ((1, 8, 101, 3), 1.0),
    ((1, 8, 2, 97), 1.0),
    ((1, 16, 12, 12), 1e3),
    ((1, 16, 12, 12), 1e-3),
)
SHAPE_IDS = tuple(f"{'x'.join(map(str, s[1:]))}@{m:g}" for s, m in SHAPES)
# Small enough for CI on two cores; big enough that conv5_1 is 4x6.
IMAGE_SHAPE = (64, 96)


def tensors(shape, scale, count=1, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, *shape, int(np.log10(scale) + 10)])
    return [(rng.standard_normal(shape) * scale).astype(np.float32) for _ in range(count)]


def images(seed=0, image_shape=IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A content and a style image in d2l's normalized space: smooth shapes and stripes.

    A little noise breaks the symmetry of the sines: exactly tied values in a
    max-pool window get their gradient routed differently by each framework
    (all correct), which would make gradients disagree for no real reason.
    """
    rng = np.random.default_rng(seed)
    height, width = image_shape
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    content = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)])
    content += 0.3 * ((xx - 0.4) ** 2 + (yy - 0.3) ** 2 < 0.05) + 0.05 * rng.standard_normal((3, height, width))
    style = np.stack([np.sin(40 * (xx + yy) + 2 * c) for c in range(3)]) + 0.2 * rng.standard_normal((3, height, width))
    return content[None].astype(np.float32), style[None].astype(np.float32)
