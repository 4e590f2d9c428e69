"""Measuring how closely two backends agree, on shared NumPy inputs.

Used by the cross-backend tests (with tolerances), by
``benchmarks/agreement_table.py`` (the README's table) and by
``compare.py --diverge`` (where two backends first part ways). Every quantity
is computed from NumPy float32 inputs through ``from_numpy``, so both sides
see exactly the same numbers.
"""

from __future__ import annotations

import math

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
    layers = (config.content_layers, config.style_layers, config.taps)
    contents_Y, _ = backend.extract_features(content_X, *layers)
    _, styles_Y = backend.extract_features(backend.from_numpy(style_x), *layers)
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


# --- max-pool near-ties: where float32 may route the gradient either way -------------------
#
# A 2x2 max pool sends its gradient to the window's largest value. Where the two
# largest differ by less than float32 computes them to, each framework's rounding
# (its summation order: ISA, kernel, thread count) decides which one wins, and
# every choice is a valid gradient. The float64 features say where that can
# happen; the gradient can differ only in those windows' receptive fields.

# A window is near-tied when a contender is closer to its maximum than this many
# times the largest float32 error either backend makes in that window. A flip
# needs the gap under 2 errors; the rest is room for the gradient pass, which may
# compute the features through a differently fused program than the forward check.
NEAR_TIE_MARGIN = 4.0


def float64_features(weight_set, x: np.ndarray, layers) -> dict[str, np.ndarray]:
    """VGG's outputs at ``layers`` (a plan's prefix) in NumPy float64: the oracle the
    float32 backends are measured against. Convolutions as one matrix product each."""
    convention = weight_set.convention
    # The backends apply the input convention with float32 constants; so does the oracle.
    scale, shift = (np.asarray(v, np.float32).astype(np.float64).reshape(1, 3, 1, 1)
                    for v in (convention.scale, convention.shift))
    X = np.asarray(x, np.float64)[:, list(convention.order)] * scale + shift
    out = {}
    for layer in layers:
        if layer.kind == "conv":
            w = np.asarray(weight_set.params[layer.weight_key], np.float64)
            b = np.asarray(weight_set.params[layer.bias_key], np.float64)
            X = _conv3x3(X, w, b)
        elif layer.kind == "relu":
            X = np.maximum(X, 0.0)
        else:
            X = _windows(X).max(axis=-1)
        out[layer.name] = X
    return out


def _conv3x3(X: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    n, c, h, wd = X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))
    # (N, C, 3*3, H, W) in OIHW order, so that w.reshape(O, C*9) matches.
    cols = np.stack([padded[:, :, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=2)
    out = w.reshape(w.shape[0], -1) @ cols.reshape(n, c * 9, h * wd)
    return out.reshape(n, w.shape[0], h, wd) + b.reshape(1, -1, 1, 1)


def _windows(X: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C, H//2, W//2, 4): each 2x2 window in row-major order; an odd last row or column is dropped."""
    n, c, h, w = X.shape
    h2, w2 = h // 2, w // 2
    return X[:, :, : 2 * h2, : 2 * w2].reshape(n, c, h2, 2, w2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h2, w2, 4)


@dataclass(frozen=True)
class NearTie:
    pool: str  # pool1 .. pool4
    window: tuple[int, int, int, int]  # (N, C, row, column) in the pool's output
    values: tuple[float, ...]  # the window's four float64 inputs, row-major
    contenders: tuple[int, ...]  # which of the four float32 may pick
    gap: float  # float64 maximum minus the closest contender, relative to the maximum


@dataclass(frozen=True)
class NearTies:
    ties: tuple[NearTie, ...]
    pixels: np.ndarray  # (H, W) bool: the input pixels whose gradient a tie can reach

    @property
    def fraction(self) -> float:
        return float(self.pixels.mean())


def near_ties(layers, exact: dict[str, np.ndarray], *approximate: dict[str, np.ndarray],
              margin: float = NEAR_TIE_MARGIN) -> NearTies:
    """The max-pool windows among ``layers`` whose float64 inputs (``exact``) are too
    close for the float32 ``approximate`` features to order reliably, and the input
    pixels downstream of them in the backward pass (their receptive field)."""
    layers = tuple(layers)
    height, width = exact[layers[0].name].shape[2:]  # conv1_1 keeps the image's size
    ties, pixels = [], np.zeros((height, width), bool)
    for k, layer in enumerate(layers):
        if layer.kind != "pool":
            continue
        source = layers[k - 1].name
        values = _windows(exact[source])
        error = np.max([np.abs(_windows(np.asarray(f[source], np.float64)) - values).max(axis=-1) for f in approximate],
                       axis=0)
        top = values.max(axis=-1, keepdims=True)
        contenders = (top - values) < margin * error[..., None]  # the maximum itself included
        for index in np.argwhere(contenders.sum(axis=-1) > 1):
            index = tuple(int(i) for i in index)
            window_values = values[index]
            inside = np.flatnonzero(contenders[index])
            first, second = np.sort(window_values[inside])[::-1][:2]
            gap = float(first - second) / max(abs(float(first)), 1e-300)
            ties.append(NearTie(layer.name, index, tuple(map(float, window_values)), tuple(map(int, inside)), gap))
            mask = np.zeros(exact[source].shape[2:], bool)
            for i in inside:
                mask[2 * index[2] + i // 2, 2 * index[3] + i % 2] = True
            pixels |= receptive_field(layers[:k], mask, (height, width))
    return NearTies(tuple(ties), pixels)


def receptive_field(layers, mask: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The input pixels that reach ``mask`` (a bool map of the last of ``layers``' output)
    through 3x3 convolutions (padding 1) and 2x2 stride-2 poolings."""
    sizes = [tuple(input_size)]
    for layer in layers:
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2) if layer.kind == "pool" else (h, w))
    mask = np.asarray(mask, bool)
    if mask.shape != sizes[-1]:
        raise ValueError(f"mask has shape {mask.shape}, the layer's output {sizes[-1]}")
    for layer, size in zip(reversed(layers), reversed(sizes[:-1])):
        if layer.kind == "conv":
            padded = np.pad(mask, 1)
            mask = np.any([padded[i:i + size[0], j:j + size[1]] for i in range(3) for j in range(3)], axis=0)
        elif layer.kind == "pool":
            grown = np.zeros(size, bool)
            grown[: 2 * mask.shape[0], : 2 * mask.shape[1]] = mask.repeat(2, axis=0).repeat(2, axis=1)
            mask = grown
    return mask


def difference_outside(a, b, pixels: np.ndarray) -> Difference:
    """``difference`` over the elements of (N, C, H, W) arrays whose pixel is not in ``pixels``."""
    keep = ~np.asarray(pixels, bool)
    return difference(np.where(keep, np.asarray(a, np.float64), 0.0), np.where(keep, np.asarray(b, np.float64), 0.0))


# --- where do two backends part ways? -------------------------------------------------------


# The smallest relative image difference ``diverge`` calls divergence, per precision. float32:
# Adam amplifies rounding to ~1e-5 within a few steps (tests/tolerances.py). float64: the
# reference Adam's trajectories stay within ~4e-15 for 20 epochs (FLOAT64_TRAJECTORY there).
ROUNDING = {"float32": 1e-4, "tf32": 1e-4, "bf16": 1e-4, "float64": 1e-12}

# Over hundreds of steps training amplifies rounding itself, so no fixed threshold separates
# rounding from formula. The yardstick: backend A run again with its learning rate one step of
# the working dtype up (float64: 0.3 -> 0.30000000000000004), the same math one rounding apart.
# The pair has diverged where its images differ by more than ROUNDING_MARGIN times that control's,
# and by more than ROUNDING. Measured (float64, reference Adam, 32x48, bundled weights, 500 steps):
# the control grows from 2e-16 to 5e-3, and torch vs jax stays within 4.0x of it, torch vs
# tensorflow within 2.6x (benchmarks/results/diverge-32x48-500/); a formula difference such as a
# float32 learning rate shows at step 1 as ~1e-8 against ~1e-16.
ROUNDING_MARGIN = 100.0


@dataclass(frozen=True)
class StepDifference:
    step: int
    losses: tuple[Difference, ...]  # content, style, tv, total
    image: Difference  # A vs B
    control: Difference  # A vs A with its lr one ulp up: what rounding alone does by this step

    @property
    def ratio(self) -> float:
        return self.image.rel / self.control.rel if self.control.rel else math.inf if self.image.rel else 1.0

    def exceeds_rounding(self, floor: float) -> bool:
        return self.image.rel > max(floor, ROUNDING_MARGIN * self.control.rel)


def one_ulp_up(config: StyleTransferConfig, dtype) -> StyleTransferConfig:
    """``config`` with its learning rate the next value up in ``dtype``: the rounding control."""
    lr = np.asarray(config.lr, dtype)
    return config.replace(lr=float(np.nextafter(lr, np.asarray(np.inf, dtype))))


def diverge(a, b, content_x, style_x, config: StyleTransferConfig, num_steps: int, threshold: float = 1e-4):
    """Run A, B and A's rounding control side by side; return per-step differences, the first step
    where A and B differ by more than rounding (``StepDifference.exceeds_rounding``, with
    ``threshold`` as the floor), and per-layer feature differences there: both backends on the
    same image (A's), so model disagreement shows apart from accumulated drift."""
    rows: list[StepDifference] = []
    first, layers = None, {}
    control = one_ulp_up(config, a.numpy_dtype)
    runs = zip(steps(a, content_x, style_x, config, num_steps), steps(b, content_x, style_x, config, num_steps),
               steps(a, content_x, style_x, control, num_steps))
    for step, ((losses_a, X_a), (losses_b, X_b), (_, X_control)) in enumerate(runs, 1):
        row = StepDifference(step, tuple(difference(x, y) for x, y in zip(losses_a, losses_b)),
                             difference(X_a, X_b), difference(X_a, X_control))
        rows.append(row)
        if first is None and row.exceeds_rounding(threshold):
            first = step
            names = all_tap_names(config)
            feats_a, feats_b = features(a, X_a, names), features(b, X_a, names)
            layers = {name: difference(feats_a[name], feats_b[name]) for name in names}
    return rows, first, layers


def divergence_report(name_a: str, name_b: str, rows, first, layers, threshold: float) -> str:
    lines = [
        f"# Where do {name_a} and {name_b} diverge?\n",
        f"Relative differences (max |a-b| / max(|a|,|b|)) after each step. The control is {name_a} against "
        f"itself with its learning rate one ulp up: what rounding alone does by that step. The pair diverges "
        f"where its image difference exceeds {ROUNDING_MARGIN:g}x the control's and {threshold:g}.\n",
        "| step | content | style | tv | total | image | image max abs | control | image / control |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.step} | " + " | ".join(f"{d.rel:.1e}" for d in r.losses)
                     + f" | {r.image.rel:.1e} | {r.image.abs:.1e} | {r.control.rel:.1e} | {r.ratio:.2g} |")
    if first is None:
        worst = max(rows, key=lambda r: r.ratio)
        lines.append(f"\nIn {len(rows)} steps the images never differ by more than rounding: at most "
                     f"{worst.ratio:.2g}x the control (step {worst.step}), under the {ROUNDING_MARGIN:g}x margin: "
                     f"what separates {name_a} and {name_b} here is no more than rounding.")
    else:
        lines += [
            f"\nFirst step where the images differ by more than rounding: **{first}**. Features of {name_a}'s image "
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
