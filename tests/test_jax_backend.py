"""JAX only: how the compiled step behaves (compiled once, donated buffers,
weights never trained, several steps per dispatch), the precision each
setting asks XLA for, and device placement. The rest of the JAX backend's
tests are shared with TensorFlow, in test_native_keras_weights.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from common.config import CPU
from common.errors import UserError
from helpers import cached_backend, make_backend, random_images, rel_err, require, state_for, targets_for


@pytest.fixture(autouse=True, scope="module")
def _require_jax():
    require("jax")


@pytest.fixture(scope="module")
def jax_random():
    return cached_backend("jax")


# --- hand-written gradients (for speed), checked against JAX's own ----------------------------


@pytest.mark.parametrize("shape", [(1, 8, 10, 3), (1, 7, 9, 4)])  # odd sizes drop a row and a column
def test_max_pool_gradient_is_lax_reduce_windows_own_ties_included(shape):
    import jax
    from flax import nnx

    from backends.jax_backend import max_pool

    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape).astype(np.float32)  # three values: most windows have tied maxima
    g = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32)
    reference = lambda x: nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))  # noqa: E731
    y, vjp = jax.vjp(max_pool, x)
    y_ref, vjp_ref = jax.vjp(reference, x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(vjp(g)[0], vjp_ref(g)[0])  # to the first maximum, exactly as select_and_scatter


def test_frozen_conv_gradient_is_the_convolutions_own():
    import jax

    from backends.jax_backend import conv3x3, frozen_conv3x3, input_grad_kernel

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 9, 11, 5)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    g = rng.standard_normal((1, 9, 11, 7)).astype(np.float32)
    precision = jax.lax.Precision.HIGHEST
    y, vjp = jax.vjp(lambda x: frozen_conv3x3(x, kernel, input_grad_kernel(kernel), precision), x)
    y_ref, vjp_ref = jax.vjp(lambda x: conv3x3(x, kernel, precision), x)
    np.testing.assert_array_equal(y, y_ref)
    # Bit-identical on the CPU here (5 seeds); a tolerance, since XLA may pick another kernel elsewhere.
    assert rel_err(np.asarray(vjp(g)[0]), np.asarray(vjp_ref(g)[0])) < 1e-6


def test_the_hand_written_gradients_are_used_on_the_cpu_only(jax_random, monkeypatch):
    """Elsewhere (a GPU) the network takes XLA's own gradients: the same gradient, to rounding."""
    from backends import jax_backend

    monkeypatch.setattr(jax_backend, "CUSTOM_GRADIENT_PLATFORMS", ())
    plain = make_backend("jax", weights="random")
    assert jax_random.custom_gradients and not plain.custom_gradients
    config = CPU.replace(image_shape=(32, 32))
    images = random_images(8, (32, 32))
    (_, custom), (_, own) = (b.loss_and_grad(state_for(b, *images, config)) for b in (jax_random, plain))
    assert rel_err(np.asarray(own), np.asarray(custom)) < 1e-5


# --- the compiled step ---------------------------------------------------------------------


def test_train_step_compiles_once_and_returns_device_scalars(jax_random, caplog):
    import jax

    jx = jax_random
    config = CPU.replace(image_shape=(32, 40), num_epochs=3)  # a shape no other test compiles
    X, content_X, style_X = random_images(3, (32, 40))
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        for _ in range(2):  # a second init_state with an equal config reuses the compiled step
            state = state_for(jx, X, content_X, style_X, config)
            for _ in range(3):
                state, losses = jx.train_step(state)
    compiles = [r.getMessage() for r in caplog.records if "Compiling jit(_step)" in r.getMessage()]
    assert len(compiles) == 1, compiles
    for value in losses:
        assert isinstance(value, jax.Array) and value.shape == () and value.dtype == np.float32


def test_only_the_image_is_trained(jax_random):
    import jax

    jx = jax_random
    config = CPU.replace(image_shape=(32, 32))
    X, content_X, style_X = random_images(4, (32, 32))
    state = state_for(jx, X, content_X, style_X, config)
    image_shape = jx.current_image(state).shape
    leaves = jax.tree.leaves(state.opt_state)
    # Adam's two moments have the image's shape; the rest are step counts. No VGG weights.
    assert sorted(leaf.shape for leaf in leaves) == [(), (), image_shape, image_shape]
    _, grad = jx.loss_and_grad(state)
    assert grad.shape == image_shape
    params_before = [np.asarray(p) for p in jax.tree.leaves(jx.params)]
    state, _ = jx.train_step(state)
    for before, after in zip(params_before, jax.tree.leaves(jx.params)):
        np.testing.assert_array_equal(before, np.asarray(after))


def test_the_step_donates_its_state_but_never_the_callers_arrays(jax_random):
    jx = jax_random
    config = CPU.replace(image_shape=(32, 32))
    X, content_X, style_X = random_images(5, (32, 32))
    start = jx.from_numpy(X)
    contents_Y, styles_Y = targets_for(jx, content_X, style_X, config)
    state = jx.init_state(start, contents_Y, styles_Y, config)
    old = state
    state, _ = jx.train_step(state)
    assert old.X.is_deleted()  # donated: updated in place on the device
    assert not any(a.is_deleted() for a in [start, *contents_Y, *styles_Y])
    np.testing.assert_array_equal(jx.to_numpy(start), X)
    jx.synchronize()  # waits for live arrays; the donated ones are skipped
    state, _ = jx.train_step(state)


def test_train_dispatches_several_steps_between_reports(jax_random):
    """report_every=6 runs one 5-step program and single steps for the rest, and reports like the base loop."""
    from backends.jax_backend import STEPS_PER_DISPATCH

    jx = jax_random
    assert jx.steps_per_dispatch == STEPS_PER_DISPATCH == 5  # on the CPU
    config = CPU.replace(image_shape=(32, 32), num_epochs=8)
    X, content_X, style_X = random_images(9, (32, 32))
    contents_Y, styles_Y = targets_for(jx, content_X, style_X, config)
    histories, reports = {}, {}
    for report_every in (1, 6):
        reports[report_every] = []
        _, histories[report_every] = jx.train(jx.from_numpy(X), contents_Y, styles_Y, config,
                                              reports[report_every].append, report_every)
    assert [r.epoch for r in reports[6]] == [6, 8]
    assert [r.lr for r in reports[6]] == [config.lr_at(5), config.lr_at(7)]
    assert all(isinstance(v, float) for parts in histories[6] for v in parts)
    assert jx._steps._cache_size() == 1  # one multi-step program; chunks of 1 and 2 ran step by step
    one, six = np.array(histories[1]), np.array(histories[6])
    assert rel_err(six, one) < 1e-4  # the same steps; fused differently, so equal to rounding


def test_each_convolution_carries_its_own_input_gradient_kernel(jax_random):
    from backends.jax_backend import input_grad_kernel
    from common.vgg import CONV_LAYERS

    layers = jax_random.params["layers"]
    for conv in CONV_LAYERS:
        kernel, grad_kernel = np.asarray(layers[conv.index]["kernel"][...]), np.asarray(layers[conv.index]["grad_kernel"][...])
        np.testing.assert_array_equal(grad_kernel, input_grad_kernel(kernel), err_msg=conv.name)


def test_frozen_conv_in_bf16_has_the_convolutions_own_gradient():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from backends.jax_backend import FrozenConv, conv3x3, input_grad_kernel

    conv = FrozenConv(4, 6, precision=jax.lax.Precision.DEFAULT, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    conv.grad_kernel[...] = jnp.asarray(input_grad_kernel(np.asarray(conv.kernel[...])))
    x = np.random.default_rng(2).standard_normal((1, 7, 9, 4)).astype(np.float32)
    g = np.random.default_rng(3).standard_normal((1, 7, 9, 6)).astype(np.float32)

    def reference(x):
        x, kernel = x.astype(jnp.bfloat16), conv.kernel[...].astype(jnp.bfloat16)
        return conv3x3(x, kernel, jax.lax.Precision.DEFAULT) + conv.bias[...].astype(jnp.bfloat16)

    y, vjp = jax.vjp(conv, jnp.asarray(x))
    y_ref, vjp_ref = jax.vjp(reference, jnp.asarray(x))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
    np.testing.assert_array_equal(np.asarray(vjp(g.astype(jnp.bfloat16))[0], np.float32),
                                  np.asarray(vjp_ref(g.astype(jnp.bfloat16))[0], np.float32))


def test_synchronize_waits_for_queued_steps(jax_random):
    jx = jax_random
    config = CPU.replace(image_shape=(32, 32))
    state = state_for(jx, *random_images(6, (32, 32)), config)
    for _ in range(3):
        state, losses = jx.train_step(state)
    jx.synchronize()
    assert all(v.is_ready() for v in losses) and jx.current_image(state).is_ready()


# --- precision -----------------------------------------------------------------------------


def lowered_step_text(backend, shape=(32, 32)) -> str:
    """The StableHLO of one training step (the forward pass, its gradient and the update)."""
    config = CPU.replace(image_shape=shape)
    state = state_for(backend, *random_images(7, shape), config)
    return backend._step.lower(backend.params, state).as_text()


def ops(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if f"stablehlo.{name}" in line]


def test_float32_is_strict(jax_random):
    """Every convolution (forward and backward) and every matmul asks for HIGHEST precision,
    so a GPU never uses TF32-class arithmetic; on this CPU it makes no difference."""
    text = lowered_step_text(jax_random)
    convs, dots = ops(text, "convolution"), ops(text, "dot_general")
    assert len(convs) >= 13 * 2 and len(dots) >= 5  # 13 convs to conv5_1, forward and backward; 5 Grams
    for line in convs:
        assert "precision_config = [#stablehlo<precision HIGHEST>, #stablehlo<precision HIGHEST>]" in line, line
        assert "bf16" not in line
    for line in dots:
        assert "precision = [HIGHEST, HIGHEST]" in line, line


def test_tf32_uses_default_precision():
    text = lowered_step_text(make_backend("jax", weights="random", precision="tf32"))
    assert ops(text, "convolution") and "HIGHEST" not in text


def test_bf16_convolves_in_bfloat16():
    """The convolutions take and give bfloat16, the Grams stay float32.

    (Features, losses and the image stay float32: test_native_keras_weights.py.)
    """
    text = lowered_step_text(cached_backend("jax", precision="bf16"))
    forward = [line for line in ops(text, "convolution") if "tensor<1x32x32x3xbf16>" in line]
    assert forward, "the first convolution should take the bfloat16 image"
    assert all("xbf16>" in line for line in ops(text, "convolution"))
    assert all("xf32>" in line for line in ops(text, "dot_general"))  # Grams: float32, HIGHEST


# --- devices ------------------------------------------------------------------------------


def test_device_and_placement(jax_random):
    import jax

    assert jax_random.device == "cpu"
    X = jax_random.from_numpy(np.zeros((1, 3, 8, 8), np.float32))
    assert X.devices() == {jax_random.jax_device}
    assert all(p.devices() == {jax_random.jax_device} for p in jax.tree.leaves(jax_random.params))


@pytest.mark.parametrize("requested", ["cpu", "CPU:0", "/cpu:0", "/device:CPU:0"])
def test_device_names(requested):
    from backends.jax_backend import pick_device

    assert pick_device(requested).platform == "cpu"


def test_unknown_device_is_a_user_error():
    from backends.jax_backend import pick_device

    with pytest.raises(UserError):
        pick_device("cpu:7")
    with pytest.raises(UserError):
        pick_device("tpu")

