"""The three recipes (common/recipes.py): how a config takes a recipe's settings, each backend's
new pieces against the NumPy float64 oracle, and the backends against each other.

The oracles: common/reference.py (the TF1 tutorial's Gram, losses, adaptive factors and
normalized step) and common/lbfgs.py (torch.optim.LBFGS's algorithm, the tutorial's clamp
included), both float64. The cross-backend checks run in float64, where agreement is rounding
only; float32 L-BFGS with lr 1 and no line search amplifies rounding ~10x every few closure calls
(README, "Recipes"), and max-pool near-ties (tests/tolerances.py) make a float32 image check
machine-dependent.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

import backends
from common import lbfgs, recipes, reference
from common.config import D2L, LossWeights, StyleTransferConfig, preset
from common.errors import UserError
from common.stylize import noise_image, stylize_array, targets
from helpers import cached_backend, image_of, rel_err, require

SHAPE = (32, 48)
TF1 = StyleTransferConfig(recipe="tf1-tutorial", image_shape=SHAPE, num_epochs=1)
TUTORIAL = StyleTransferConfig(recipe="pytorch-tutorial", image_shape=SHAPE, num_epochs=1)


def pixel_images():
    rng = np.random.default_rng(0)
    return tuple(rng.integers(0, 256, (*SHAPE, 3), np.uint8) for _ in range(2))


# --- the config: no framework ------------------------------------------------------------------


def test_the_default_config_is_still_d2ls():
    c = StyleTransferConfig()
    assert (c.recipe, c.lr, c.num_epochs, c.lr_decay_epoch, c.lr_decay, c.adam_eps, c.adam) == (
        "d2l", 0.3, 500, 50, 0.8, 1e-8, "stock")
    assert (c.content_layers, c.style_layers, c.taps, c.init, c.optimizer) == (
        (25,), (0, 5, 10, 19, 28), "torch-inplace", "content", None)


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_a_config_takes_its_recipes_settings(name):
    recipe = recipes.get(name)
    c = StyleTransferConfig(recipe=name).validate()
    assert (c.content_layers, c.style_layers, c.num_epochs, c.init) == (
        recipe.content_layers, recipe.style_layers, recipe.num_epochs, recipe.init)
    assert c.lr == recipe.lr
    unused = [f.name for f in dataclasses.fields(c) if f.name not in recipe.uses]
    assert all(getattr(c, field) is None for field in unused if field != "loss_weights")


@pytest.mark.parametrize(("name", "setting", "value"), [
    ("tf1-tutorial", "lr", 1.0),  # its step size is fixed (issue 15: `--lr` for tf1-tutorial is an error)
    ("tf1-tutorial", "adam", "reference"),
    ("tf1-tutorial", "optimizer", "native"),
    ("pytorch-tutorial", "taps", "pre-relu"),  # its layers are named
    ("pytorch-tutorial", "lr_decay", 0.5),
    ("d2l", "optimizer", "native"),
])
def test_a_setting_the_recipe_does_not_use_is_one_line(name, setting, value):
    with pytest.raises(UserError, match=f"^{setting} is not used by recipe {name} ") as caught:
        StyleTransferConfig(recipe=name, **{setting: value}).validate()
    assert "\n" not in str(caught.value)


def test_an_unknown_recipe_is_one_line():
    with pytest.raises(UserError, match="^recipe must be one of d2l, pytorch-tutorial, tf1-tutorial, got 'gatys'$"):
        StyleTransferConfig(recipe="gatys")


def test_changing_the_recipe_takes_the_new_recipes_values():
    changed = D2L.replace(image_shape=SHAPE, lr_decay_epoch=1).replace(recipe="tf1-tutorial").validate()
    assert changed == StyleTransferConfig(recipe="tf1-tutorial", image_shape=SHAPE)
    # A value set on purpose (not the old recipe's) stays, and the new recipe validates it.
    assert D2L.replace(num_epochs=3).replace(recipe="pytorch-tutorial").num_epochs == 3
    assert preset("cpu", "pytorch-tutorial") == StyleTransferConfig(recipe="pytorch-tutorial", image_shape=(150, 225))


def test_noise_starts_are_seeded_and_in_the_recipes_range():
    tf1 = noise_image(recipes.TF1_TUTORIAL.noise, SHAPE)
    assert np.array_equal(tf1, noise_image(recipes.TF1_TUTORIAL.noise, SHAPE))
    assert tf1.shape == (1, 3, *SHAPE) and 128 <= tf1.min() and tf1.max() < 129


# --- each backend against the NumPy float64 oracle -------------------------------------------


@pytest.fixture
def backend64(backend_name):
    return cached_backend(backend_name, "random", "float64")


def features(backend, config, X):
    """The recipe's content and style features of ``X`` (NumPy, NCHW, in the recipe's space)."""
    space = config.recipe_data.space
    contents, styles = backend.extract_features(backend.from_numpy(X), config.content_layers, config.style_layers,
                                                config.feature_taps, space)
    return contents, styles


def test_unnormalized_gram_and_denoise_loss_match_numpy(backend64):
    X = np.random.default_rng(1).uniform(0, 255, (1, 8, 6, 7))
    t = backend64.from_numpy(X)
    np.testing.assert_allclose(backend64.to_numpy(backend64.gram(t, normalized=False)),
                               reference.gram_unnormalized(X), rtol=1e-13)
    assert backend64.scalar(backend64.tv_loss(t, 1.0)) == pytest.approx(reference.denoise_loss(X), rel=1e-13)


def test_a_byte_image_reads_as_its_normalized_twin(backend64):
    """The input transform folds each recipe's image space into the weight set's convention."""
    from common import images

    pixels = pixel_images()[0]
    byte = images.preprocess_array(pixels, SHAPE, images.BYTE_RGB)
    normalized = images.preprocess_array(pixels, SHAPE)
    layers = (TF1.content_layers, TF1.style_layers)
    as_byte = backend64.extract_features(backend64.from_numpy(byte), *layers, space=images.BYTE_RGB)
    as_normalized = backend64.extract_features(backend64.from_numpy(normalized), *layers)
    for a, b in zip(as_byte[0] + as_byte[1], as_normalized[0] + as_normalized[1]):
        # The two float32 inputs round differently; measured <= 6.3e-8 (every backend).
        assert rel_err(backend64.to_numpy(a), backend64.to_numpy(b)) < 1e-6


def tf1_state(backend, X):
    content, style = pixel_images()
    _, contents_Y, styles_Y = targets(backend, content, style, TF1)
    return backend.init_state(backend.from_numpy(X), contents_Y, styles_Y, TF1)


def test_adaptive_losses_match_numpy_and_their_factors_are_constants(backend64):
    """TF1's loss: each kind's mean over layers, times weight / (itself + 1e-10) held constant in the gradient."""
    X = noise_image(recipes.TF1_TUTORIAL.noise, SHAPE, np.float64)
    state = tf1_state(backend64, X)
    losses, grad = backend64.loss_and_grad(state)
    content, style = pixel_images()
    (content_X, style_X) = (backend64.to_numpy(backend64.preprocess(img, SHAPE, recipes.TF1_TUTORIAL.space))
                            for img in (content, style))
    contents_Y, _ = features(backend64, TF1, content_X)
    _, styles_Y = features(backend64, TF1, style_X)
    contents, styles = features(backend64, TF1, X)
    to_np = backend64.to_numpy
    expected = {
        "content": reference.mean_layer_mse([to_np(a) for a in contents], [to_np(b) for b in contents_Y]),
        "style": reference.mean_layer_mse([reference.gram_unnormalized(to_np(a)) for a in styles],
                                          [reference.gram_unnormalized(to_np(b)) for b in styles_Y]),
        "tv": reference.denoise_loss(X),
    }
    for part, value in expected.items():
        assert backend64.scalar(getattr(losses, part)) == pytest.approx(value, rel=1e-12)
    w = recipes.TF1_TUTORIAL.loss_weights["imagenet-rgb"]
    factors = reference.adaptive_factors(expected.values())
    weights = [w.content, w.style, w.tv]
    assert backend64.scalar(losses.total) == pytest.approx(
        sum(wk * f * l for wk, f, l in zip(weights, factors, expected.values())), rel=1e-12)
    # The gradient is that of the plain weighted sum with weights w_k / (L_k + 1e-10): without the
    # stop-gradient it would be w_k * 1e-10 / (L_k + 1e-10)^2 times that, about nothing.
    plain = dataclasses.replace(recipes.TF1_TUTORIAL.formula, adaptive=False)
    scaled = LossWeights(*(wk * f for wk, f in zip(weights, factors)))

    def plain_total(X_):
        contents_hat, styles_hat = backend64.extract_features(X_, TF1.content_layers, TF1.style_layers,
                                                              TF1.feature_taps, recipes.TF1_TUTORIAL.space)
        return backend64.compute_loss(X_, contents_hat, styles_hat, state.contents_Y, state.styles_Y_gram, scaled,
                                      plain)[3]

    expected_grad = gradient_of(backend64, plain_total, X)
    assert rel_err(backend64.to_numpy(grad), expected_grad) < 1e-12


def gradient_of(backend, f, X) -> np.ndarray:
    """d f / d X at NumPy ``X`` (NCHW), with the backend's own autodiff."""
    x = backend.from_numpy(X)
    if backend.name == "torch":
        x.requires_grad_(True)
        f(x).backward()
        return x.grad.numpy()
    if backend.name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
        return backend.to_numpy(tape.gradient(y, x))
    import jax

    with jax.enable_x64(True):
        return backend.to_numpy(jax.grad(f)(x))


def test_a_normalized_step_matches_numpy(backend64):
    X0 = noise_image(recipes.TF1_TUTORIAL.noise, SHAPE, np.float64)
    state = tf1_state(backend64, X0)
    _, grad = backend64.loss_and_grad(state)
    state, _ = backend64.train_step(state)
    expected = reference.normalized_step(X0, backend64.to_numpy(grad), recipes.TF1_TUTORIAL.step_size)
    # np.std and each framework's std sum in different orders: measured <= 2.8e-14 (of 0..255).
    np.testing.assert_allclose(image_of(backend64, state), expected, rtol=0, atol=1e-11)


def test_the_first_lbfgs_step_matches_the_oracle(backend64):
    """One optimizer.step(closure) (20 closure calls) against common/lbfgs.py driving the same
    backend's loss and gradient, with the tutorial's clamp."""
    content, style = pixel_images()
    content_X, contents_Y, styles_Y = targets(backend64, content, style, TUTORIAL)
    X0 = backend64.to_numpy(content_X).astype(np.float64)

    def evaluate(x):
        x = np.clip(x, 0, 1)
        state = backend64.init_state(backend64.from_numpy(x.reshape(X0.shape)), contents_Y, styles_Y, TUTORIAL)
        losses, grad = backend64.loss_and_grad(state)
        return x, backend64.scalar(losses.total), backend64.to_numpy(grad).astype(np.float64).ravel()

    oracle = lbfgs.LBFGSState(X0.ravel().copy())
    lbfgs.step(oracle, evaluate, recipes.PYTORCH_TUTORIAL.lbfgs)

    state = backend64.init_state(content_X, contents_Y, styles_Y, TUTORIAL)
    state, _ = backend64.train_step(state)
    assert backend64.evaluations(state) == oracle.func_evals == 20
    ours = backend64.to_numpy(state.gen_img.weight.detach() if backend64.name == "torch"
                              else backend64.current_image(state))  # torch: before the final clamp
    oracle_x = oracle.x.reshape(X0.shape)
    if backend64.name != "torch":
        oracle_x = np.clip(oracle_x, 0, 1)  # current_image clamps, as the tutorial does at the end
    # Dot products summed in other orders (NHWC for TensorFlow and JAX); measured <= 2.5e-13 (JAX),
    # 1.1e-13 (TensorFlow), 5.0e-14 (torch).
    np.testing.assert_allclose(ours, oracle_x, rtol=0, atol=1e-10)


def test_tensorflow_has_no_native_lbfgs():
    require("tensorflow")
    b = cached_backend("tensorflow", "random", "float32")
    content, style = pixel_images()
    with pytest.raises(UserError, match="^optimizer native: TensorFlow's core has none") as caught:
        stylize_array(b, content, style, TUTORIAL.replace(optimizer="native"))
    assert "\n" not in str(caught.value)


def test_optax_lbfgs_runs_with_the_clamp_and_counts_its_evaluations():
    require("jax")
    b = cached_backend("jax", "random", "float32")
    content, style = pixel_images()
    reported = []
    X, history = stylize_array(b, content, style, TUTORIAL.replace(optimizer="native", num_epochs=2),
                               callback=lambda report: reported.append(report.evaluations))
    assert X.min() >= 0 and X.max() <= 1
    assert history[1].total < history[0].total
    # 20 iterations a step, each one evaluation plus what its zoom line search adds.
    assert 20 <= reported[0] < reported[1]


# --- the backends against each other, float64 ------------------------------------------------

PAIRS = list(itertools.combinations(backends.NAMES, 2))
_runs: dict = {}


def run64(name: str, config: StyleTransferConfig) -> np.ndarray:
    key = (name, config)
    if key not in _runs:
        _runs[key] = stylize_array(cached_backend(name, "random", "float64"), *pixel_images(), config)[0]
    return _runs[key]


# Measured, max |a - b| over the image's range, every pair: the first normalized step <= 8.9e-16;
# the first L-BFGS step (20 closure calls) <= 5.4e-13, the second <= 2.2e-11 (rounding grows).
@pytest.mark.parametrize(("config", "tolerance"), [(TF1, 1e-13), (TUTORIAL, 1e-11),
                                                   (TUTORIAL.replace(num_epochs=2), 1e-9)],
                         ids=["tf1-step-1", "lbfgs-step-1", "lbfgs-step-2"])
@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
def test_the_recipes_first_steps_agree_across_backends(pair, config, tolerance):
    for name in pair:
        require(name)
    a, b = (run64(name, config) for name in pair)
    assert np.abs(a - b).max() / (a.max() - a.min()) < tolerance
