"""float64: every backend computes in float64 throughout, and with the reference Adam the
three backends' training trajectories agree to float64 rounding.

In float32 the backends drift apart in training (26 dB PSNR after 200 epochs) because Adam
amplifies rounding. In float64 rounding is ~1e-16, too small to grow visibly in a few
hundred steps, so any remaining difference is a difference in the math: these tests fail
if any backend's losses, schedule or optimizer formula changes (benchmarks/mutation_check.py).
Tolerances and their measurements: tests/tolerances.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import backends
import tolerances as tol
from common import reference
from tools import agreement
from common.config import D2L, StyleTransferConfig
from common.errors import UserError
from helpers import cached_backend, require

NAMES = list(backends.NAMES)
PAIRS = list(itertools.combinations(NAMES, 2))
CONFIG = D2L.replace(image_shape=tol.FLOAT64_IMAGE_SHAPE, num_epochs=tol.FLOAT64_EPOCHS,
                     lr_decay_epoch=tol.FLOAT64_LR_DECAY_EPOCH, adam="reference")


def float64_backend(name: str):
    return cached_backend(name, "random", "float64")


_trajectories: dict = {}


def trajectory(name: str):
    """(loss parts per epoch, final image) of a float64 reference-Adam run; once per backend."""
    if name not in _trajectories:
        content_x, style_x = agreement.images(image_shape=CONFIG.image_shape)
        run = list(agreement.steps(float64_backend(name), content_x, style_x, CONFIG, CONFIG.num_epochs))
        _trajectories[name] = np.array([losses for losses, _ in run]), run[-1][1]
    return _trajectories[name]


@pytest.mark.parametrize("name", NAMES)
def test_float64_throughout(name):
    """Inputs, features, the Gram, losses, the image and the optimizer's result are float64."""
    backend = float64_backend(name)
    content_x, style_x = agreement.images(image_shape=CONFIG.image_shape)
    x = content_x.astype(np.float64) + 1e-12  # below float32's resolution: lost if anything rounds to float32
    assert backend.to_numpy(backend.from_numpy(x)).dtype == np.float64
    np.testing.assert_array_equal(backend.to_numpy(backend.from_numpy(x)), x)
    feature = agreement.features(backend, x, ["conv1_1"])["conv1_1"]
    assert feature.dtype == np.float64
    assert backend.to_numpy(backend.gram(backend.from_numpy(feature))).dtype == np.float64
    losses, grad = agreement.loss_and_grad(backend, content_x, style_x, CONFIG)
    assert grad.dtype == np.float64
    _, image = next(agreement.steps(backend, content_x, style_x, CONFIG, 1))
    assert image.dtype == np.float64


@pytest.mark.parametrize("name", NAMES)
def test_reference_adam_matches_numpy(name):
    """Three reference-Adam steps equal common.reference.adam_step fed the backend's own gradients."""
    backend = float64_backend(name)
    content_x, style_x = agreement.images(image_shape=CONFIG.image_shape)
    state = agreement._state(backend, content_x, style_x, CONFIG)
    X = content_x.astype(np.float64)
    m = v = np.zeros_like(X)
    for t in range(1, 4):
        _, grad = backend.loss_and_grad(state)
        X, m, v = reference.adam_step(X, backend.to_numpy(grad), m, v, t, CONFIG.lr_at(t - 1), CONFIG.adam_eps)
        state, _ = backend.train_step(state)
        diff = agreement.difference(backend.to_numpy(backend.current_image(state)), X)
        assert diff.rel <= tol.FLOAT64_ADAM_STEP, f"{name}, step {t}: {diff.describe()}"


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
def test_reference_adam_trajectories_agree(pair):
    """20 epochs of float64 training with the reference Adam: same losses, same image, to rounding."""
    (history_a, image_a), (history_b, image_b) = (trajectory(name) for name in pair)
    for epoch, (losses_a, losses_b) in enumerate(zip(history_a, history_b), 1):
        diff = agreement.difference(losses_a, losses_b)
        assert diff.rel <= tol.FLOAT64_TRAJECTORY, f"{pair}: losses at epoch {epoch}: {diff.describe()}"
    diff = agreement.difference(image_a, image_b)
    assert diff.rel <= tol.FLOAT64_TRAJECTORY, f"{pair}: image after {CONFIG.num_epochs} epochs: {diff.describe()}"


def test_jax_x64_stays_inside_the_float64_backend():
    """JAX's x64 switch is process-wide: the float64 backend sets it around its own calls only,
    so JAX code outside and a float32 JAX backend in the same process still compute in float32."""
    require("jax")
    import jax
    import jax.numpy as jnp

    float64 = float64_backend("jax")
    float32 = cached_backend("jax", "random", "float32")
    x = agreement.tensors((1, 4, 6, 5), 1.0)[0]
    assert float64.to_numpy(float64.gram(float64.from_numpy(x))).dtype == np.float64
    assert not jax.config.jax_enable_x64
    assert jnp.zeros(1).dtype == jnp.float32
    assert float32.gram(float32.from_numpy(x)).dtype == jnp.float32
    assert float32.to_numpy(float32.gram(float32.from_numpy(x))).dtype == np.float32


def test_adam_setting_is_validated():
    assert StyleTransferConfig(adam="reference").validate().adam == "reference"
    with pytest.raises(UserError, match="adam must be one of stock, reference"):
        StyleTransferConfig(adam="keras").validate()


@pytest.mark.parametrize("adam", ["stock", "reference"])
def test_diverge_in_float64_finds_the_formula_difference(adam, tmp_path):
    """``compare.py --diverge torch,jax --precision float64``: with stock Adam the pair parts at
    step 1 by more than rounding (optax computes StepLR's lr in float32: ~1e-8 against the
    rounding control's ~1e-16); with the reference Adam it never does."""
    require("torch")
    require("jax")
    import compare

    code = compare.main(["--diverge", "torch,jax", "--precision", "float64", "--adam", adam, "--epochs", "2",
                         "--size", "32x48", "--weights", "random", "--out", str(tmp_path)])
    assert code == 0
    text = (tmp_path / "diverge-torch-jax.md").read_text()
    if adam == "stock":
        assert "First step where the images differ by more than rounding: **1**" in text
    else:
        assert "In 2 steps the images never differ by more than rounding" in text
