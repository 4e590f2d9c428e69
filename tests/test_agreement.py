"""Cross-backend agreement: every pair of backends, and each against the NumPy float64 reference.

The same NumPy float32 arrays go to every backend through ``from_numpy``;
``tools/agreement.py`` measures max |a - b| / max(|a|, |b|) and the worst
element. Tolerances and the measurements behind them live in tests/tolerances.py.
A failure names the pair, the quantity, the layer and the worst element.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

import backends
import tolerances as tol
from common import reference
from tools import agreement
from common.config import D2L, LossWeights
from common.errors import WeightsUnavailable
from common.images import postprocess_array
from common.interface import LossParts
from tools.report import psnr
from common.vgg import feature_plan

NAMES = list(backends.NAMES)
PAIRS = list(itertools.combinations(NAMES, 2))
WITH_REFERENCE = [("numpy", name) for name in NAMES] + PAIRS
WEIGHTS = ["random", "bundled", "keras"]  # keras: Keras' full-precision file, skipped unless fetched
CONFIG = D2L.replace(image_shape=agreement.IMAGE_SHAPE, num_epochs=tol.TRAIN_EPOCHS)
PLAN = feature_plan(CONFIG.content_layers, CONFIG.style_layers, CONFIG.taps)


def pair_id(pair) -> str:
    return f"{pair[0]}-{pair[1]}"


_made: dict = {}
_memo: dict = {}


def backend(name: str, weights: str = "random"):
    reason = backends.why_unavailable(name)
    if reason:
        pytest.skip(reason)
    if (name, weights) not in _made:
        try:
            _made[name, weights] = backends.get_backend(name, weights=weights, device="cpu")
        except WeightsUnavailable as exc:
            if weights != "keras":
                raise
            pytest.skip(f"{exc}; fetching it needs the package registry")
    return _made[name, weights]


def memo(key, compute):
    """Each backend computes each quantity once per session, whatever pair asks for it."""
    if key not in _memo:
        _memo[key] = compute()
    return _memo[key]


def check(pair, quantity, a, b, tolerance, layer: str = "") -> None:
    diff = agreement.difference(a, b)
    where = f" at {layer}" if layer else ""
    assert diff.rel <= tolerance, f"{pair[0]} vs {pair[1]}: {quantity}{where}: {diff.describe()} > {tolerance:.0e}"


# --- small tensors: Gram, TV, the losses -----------------------------------------------------

SMALL_QUANTITIES = {
    "gram": (reference.gram, agreement.gram, 1, tol.GRAM),
    "tv": (reference.tv_loss, agreement.tv_loss, 1, tol.TV),
    "content loss": (reference.content_loss, agreement.content_loss, 2, tol.CONTENT_LOSS),
    "style loss": (lambda x, y: reference.style_loss(x, reference.gram(y)), agreement.style_loss, 2, tol.STYLE_LOSS),
}


def small(name, quantity, case_index):
    shape, scale = agreement.SHAPES[case_index]
    ref_fn, backend_fn, arity, _ = SMALL_QUANTITIES[quantity]
    inputs = agreement.tensors(shape, scale, count=arity)
    if name == "numpy":
        return ref_fn(*inputs)
    return memo((name, quantity, case_index), lambda: backend_fn(backend(name), *inputs))


@pytest.mark.parametrize("case", range(len(agreement.SHAPES)), ids=agreement.SHAPE_IDS)
@pytest.mark.parametrize("quantity", list(SMALL_QUANTITIES))
@pytest.mark.parametrize("pair", WITH_REFERENCE, ids=pair_id)
def test_small_tensor_quantities(pair, quantity, case):
    tolerance = SMALL_QUANTITIES[quantity][3]
    check(pair, f"{quantity} on {agreement.SHAPE_IDS[case]}", small(pair[0], quantity, case),
          small(pair[1], quantity, case), tolerance)


def loss_parts(name):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((1, 3, 33, 41)).astype(np.float32)
    contents = [rng.standard_normal((1, 8, 9, 11)).astype(np.float32) for _ in range(2)]
    contents_hat = [c + 0.1 * rng.standard_normal(c.shape).astype(np.float32) for c in contents]
    styles_hat = [rng.standard_normal((1, c, 7, 5)).astype(np.float32) for c in (4, 16, 32)]
    styles = [rng.standard_normal(s.shape).astype(np.float32) for s in styles_hat]
    weights = LossWeights(content=2.0, style=1e4, tv=10.0)
    if name == "numpy":
        contents_l, styles_l, tv_l, l = reference.compute_loss(
            X, contents_hat, styles_hat, contents, [reference.gram(s) for s in styles], weights)
        return np.array([*contents_l, *styles_l, tv_l, l])
    return agreement.compute_loss(backend(name), X, contents_hat, styles_hat, contents, styles, weights)


@pytest.mark.parametrize("pair", WITH_REFERENCE, ids=pair_id)
def test_compute_loss_and_its_parts(pair):
    a, b = loss_parts(pair[0]), loss_parts(pair[1])
    for k, part in enumerate(["content 1", "content 2", "style 1", "style 2", "style 3", "tv", "total"]):
        check(pair, f"compute_loss {part}", a[k], b[k], tol.COMPUTE_LOSS)


# --- VGG19: features at every tap, the gradient, one Adam step, a short training run ----------


def features(name, weights):
    content_x, _ = agreement.images()
    names = agreement.all_tap_names(CONFIG)
    return memo((name, weights, "features"), lambda: agreement.features(backend(name, weights), content_x, names))


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_features_at_every_tap(pair, weights):
    a, b = features(pair[0], weights), features(pair[1], weights)
    failures = []
    for layer in agreement.all_tap_names(CONFIG):
        diff = agreement.difference(a[layer], b[layer])
        if diff.rel > tol.FEATURES:
            failures.append(f"{layer}: {diff.describe()}")
    assert not failures, f"{pair[0]} vs {pair[1]}: features ({weights} weights) > {tol.FEATURES:.0e} at\n" + "\n".join(failures)


def gradient(name, weights):
    content_x, style_x = agreement.images()
    return memo((name, weights, "grad"),
                lambda: agreement.loss_and_grad(backend(name, weights), content_x, style_x, CONFIG))


# --- max-pool near-ties: the gradient is checked wherever float32 can order the pooling ------


def float64_features(name, weights):
    content_x, _ = agreement.images()
    return memo(("float64", weights, "features"), lambda: agreement.float64_features(
        backend(name, weights).weights, content_x, PLAN.layers))


def near_ties(names, weights) -> agreement.NearTies:
    """The windows any of ``names`` may order differently from float64, and their receptive field."""
    return memo((tuple(names), weights, "near ties"), lambda: agreement.near_ties(
        PLAN.layers, float64_features(names[0], weights), *(features(name, weights) for name in names)))


def check_outside_near_ties(pair, quantity, a, b, tolerance, ties: agreement.NearTies) -> None:
    """``check`` on every pixel that no near-tied max-pool window reaches; those few are
    excluded (their gradient may go either way), and must stay few."""
    assert ties.fraction <= tol.NEAR_TIE_PIXELS, (
        f"{pair[0]} vs {pair[1]}: {len(ties.ties)} max-pool windows are near-tied for these backends, reaching "
        f"{ties.fraction:.0%} of the image's pixels > {tol.NEAR_TIE_PIXELS:.0%}: are their features right?")
    diff = agreement.difference_outside(a, b, ties.pixels)
    assert diff.rel <= tolerance, (
        f"{pair[0]} vs {pair[1]}: {quantity} outside the receptive field of {len(ties.ties)} near-tied max-pool "
        f"windows ({ties.fraction:.1%} of the pixels): {diff.describe()} > {tolerance:.0e}")


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_loss_and_gradient_at_the_content_image(pair, weights):
    (losses_a, grad_a), (losses_b, grad_b) = gradient(pair[0], weights), gradient(pair[1], weights)
    for k, part in enumerate(LossParts._fields):
        check(pair, f"{part} loss ({weights} weights)", losses_a[k], losses_b[k], tol.LOSS)
    check_outside_near_ties(pair, f"gradient of the total loss ({weights} weights)", grad_a, grad_b, tol.GRADIENT,
                            near_ties(pair, weights))


# --- the root cause, pinned: a pool1 window no float32 computation can order ------------------


def float64_gradient(weights):
    """d(total loss)/d(image) in float64: the torch backend's network and losses in double."""
    import torch

    net_owner = backend("torch", weights)
    net = copy.deepcopy(net_owner.net).double().to(memory_format=torch.contiguous_format)
    order, scale, shift = net_owner.input_transform() or ([0, 1, 2], np.ones(3, np.float32), np.zeros(3, np.float32))

    def taps(X):
        X = X[:, order] * torch.from_numpy(scale).double().reshape(1, 3, 1, 1) \
            + torch.from_numpy(shift).double().reshape(1, 3, 1, 1)
        out = {}
        for layer in PLAN.layers:
            X = out[layer.name] = net[layer.index](X)
        return [out[name] for name in PLAN.content], [out[name] for name in PLAN.style]

    def compute():
        content_x, style_x = (torch.from_numpy(x).double() for x in agreement.images())
        contents_Y, _ = taps(content_x)
        _, styles_Y = taps(style_x)
        X = content_x.clone().requires_grad_(True)
        contents_Y_hat, styles_Y_hat = taps(X)
        *_, total = net_owner.compute_loss(X, contents_Y_hat, styles_Y_hat, contents_Y,
                                           [net_owner.gram(Y) for Y in styles_Y],
                                           CONFIG.resolved_loss_weights(net_owner.weights))
        (grad,) = torch.autograd.grad(total, X)
        return grad.numpy()

    return memo(("float64", weights, "grad"), compute)


@pytest.mark.parametrize("layer, side", [("conv1_1", 3), ("conv1_2", 5), ("pool1", 6), ("conv2_2", 14),
                                         ("pool2", 16), ("conv3_4", 48), ("pool3", 52), ("conv5_1", 156)])
def test_receptive_field_is_vgg_s(layer, side):
    """One unit of ``layer`` sees a side x side square of the image (VGG's textbook figures)."""
    layers = PLAN.layers[: next(k for k, l in enumerate(PLAN.layers) if l.name == layer) + 1]
    size = (256, 256)
    out = size
    for l in layers:
        out = (out[0] // 2, out[1] // 2) if l.kind == "pool" else out
    mask = np.zeros(out, bool)
    mask[out[0] // 2, out[1] // 2] = True
    rows, cols = np.nonzero(agreement.receptive_field(layers, mask, size))
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (side, side)
    assert agreement.receptive_field(layers, mask, size).sum() == side * side


def test_near_ties_finds_a_planted_tie_and_its_receptive_field():
    """A pool1 window whose two largest values are closer than the float32 error: found,
    with its contenders, and the input pixels behind those two; nothing else is."""
    layers = PLAN.layers[:5]  # conv1_1 .. pool1
    rng = np.random.default_rng(0)
    exact = {"conv1_1": np.zeros((1, 2, 8, 10)), "relu1_2": rng.uniform(1, 2, (1, 2, 8, 10))}
    exact["relu1_2"][0, 1, 4:6, 6:8] = [[3.0, 1.0], [2.0, 3.0 + 1e-9]]  # window (0, 1, 2, 3): contenders 0 and 3
    approximate = {"relu1_2": exact["relu1_2"] + 1e-7 * rng.standard_normal((1, 2, 8, 10))}
    ties = agreement.near_ties(layers, exact, approximate)
    assert [(t.pool, t.window, t.contenders) for t in ties.ties] == [("pool1", (0, 1, 2, 3), (0, 3))]
    assert ties.ties[0].gap == pytest.approx(1e-9 / 3, rel=1e-3)
    expected = np.zeros((8, 10), bool)
    expected[2:7, 4:9] = expected[3:8, 5:10] = True  # (4, 6) and (5, 7), each seen through two 3x3 convolutions
    np.testing.assert_array_equal(ties.pixels, expected)
    a = rng.standard_normal((1, 3, 8, 10))
    b = a + np.where(expected, 1.0, 0.0)
    assert agreement.difference_outside(a, b, ties.pixels).rel == 0.0
    assert agreement.difference(a, b).rel > 0.1


@pytest.mark.parametrize("name", NAMES)
def test_near_ties_include_a_pool1_window_float32_cannot_order(name):
    """With the bundled weights the test image has, in pool1, a window whose two largest
    inputs differ by 1.5e-8 of their value in float64, below float32's unit roundoff
    (2**-24 = 6.0e-8): which one a float32 network calls the maximum, and so which
    pixels get the gradient, is up to its rounding. On an AVX2 CPU TensorFlow's
    summation order picks float64's, torch and JAX the other (a 1.9e-3 gradient
    difference); with AVX-512 all three picked the same. Each backend's near-ties
    must include it, and must stay few."""
    ties = near_ties([name], "bundled")
    unorderable = [tie for tie in ties.ties if tie.gap < 2.0**-24]
    assert [(tie.pool, tie.window) for tie in unorderable] == [("pool1", (0, 23, 2, 12))], ties.ties
    assert ties.fraction <= tol.NEAR_TIE_PIXELS, f"{len(ties.ties)} near-ties reach {ties.fraction:.0%} of the pixels"


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("name", NAMES)
def test_gradient_is_float64_s_outside_near_tied_max_pool_windows(name, weights):
    """Each float32 backend's gradient against a float64 one, pixel by pixel: equal to
    1e-5 everywhere but downstream of the max-pool windows it cannot order, so a
    difference between backends there is a choice between valid gradients, not a bug."""
    if backends.why_unavailable("torch"):
        pytest.skip(f"the float64 gradient comes from torch: {backends.why_unavailable('torch')}")
    check_outside_near_ties(("float64", name), f"gradient of the total loss ({weights} weights)",
                            float64_gradient(weights), gradient(name, weights)[1], tol.GRADIENT,
                            near_ties([name], weights))


def training(name):
    content_x, style_x = agreement.images()
    return memo((name, "train"), lambda: list(
        agreement.steps(backend(name, "bundled"), content_x, style_x, CONFIG, tol.TRAIN_EPOCHS)))


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_one_adam_step_from_the_same_state(pair):
    (_, X_a), (_, X_b) = training(pair[0])[0], training(pair[1])[0]
    check_outside_near_ties(pair, "image after one Adam step", X_a, X_b, tol.for_pair(pair, **tol.ONE_STEP),
                            near_ties(pair, "bundled"))


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_short_training_run_agrees(pair):
    run_a, run_b = training(pair[0]), training(pair[1])
    history_a = np.array([losses for losses, _ in run_a])
    history_b = np.array([losses for losses, _ in run_b])
    tolerance = tol.for_pair(pair, **tol.HISTORY)
    for k, part in enumerate(LossParts._fields):
        for epoch in range(tol.TRAIN_EPOCHS):
            check(pair, f"{part} loss at epoch {epoch + 1}", history_a[epoch, k], history_b[epoch, k], tolerance)
    pixels_a, pixels_b = (np.asarray(postprocess_array(run[-1][1])) for run in (run_a, run_b))
    limit = tol.for_pair(pair, **tol.FINAL_PSNR_DB)
    assert psnr(pixels_a, pixels_b) >= limit, (
        f"{pair[0]} vs {pair[1]}: image after {tol.TRAIN_EPOCHS} epochs: PSNR {psnr(pixels_a, pixels_b):.1f} dB "
        f"< {limit} dB")


def tv_gradient(name):
    """d(TV)/d(image) on a real photo: 8-bit pixels, so many neighbours are exactly equal,
    where |x| has no derivative and frameworks must agree on sign(0) = 0."""
    from common import images

    photo = images.preprocess_array(images.load_image(images.DEFAULT_CONTENT), agreement.IMAGE_SHAPE)
    config = CONFIG.replace(loss_weights=LossWeights(content=0.0, style=0.0, tv=10.0))
    return memo((name, "tv grad"), lambda: agreement.loss_and_grad(backend(name), photo, photo, config)[1])


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_tv_gradient_where_neighbours_are_equal(pair):
    check(pair, "gradient of the TV loss on an 8-bit photo", tv_gradient(pair[0]), tv_gradient(pair[1]), tol.GRADIENT)
