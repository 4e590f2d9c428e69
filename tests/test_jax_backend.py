"""The JAX backend: agreement with the PyTorch backend, native weights from a
seeded Keras cache, precision, the learning-rate schedule, and how the
compiled step behaves (compiled once, donated buffers, weights never trained).

Agreement is measured as max|a - b| / max|b| (``rel_err``), float32 on the CPU.
Measured on 2 CPU cores (jax 0.10.2, flax 0.12, optax 0.2.8, torch 2.15):
feature maps <= 1.3e-6, losses <= 1e-6, the image gradient ~1.5e-6 (random
weights) and ~5e-7 (bundled), the 5-step loss history from the content image
<= 3e-4 (see test_training_matches_torch for why it grows).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import backends
from common import images
from common.config import CPU, D2L
from common.errors import UserError, WeightsUnavailable
from common.stylize import targets
from common.weights import CAFFE_BGR, CAFFE_LOSS_WEIGHTS, WeightSet, random_weights, to_keras_h5


@pytest.fixture(autouse=True, scope="module")
def _require_jax():
    reason = backends.why_unavailable("jax")
    if reason:
        pytest.skip(reason)


WEIGHTS = ["random", "bundled"]
# d2l's indices, and explicit names that read pre-ReLU convolutions, ReLUs and pools.
TAPS = {
    "d2l": (CPU.content_layers, CPU.style_layers),
    "names": (("conv4_2",), ("conv1_1", "relu1_1", "pool1", "conv3_1", "pool4", "conv5_1")),
}


def rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


def random_images(seed: int, shape: tuple[int, int], count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, *shape)).astype(np.float32) for _ in range(count)]


def jax_backend(**options):
    return backends.get_backend("jax", device="cpu", **options)


@pytest.fixture(scope="module")
def jax_random():
    return jax_backend(weights="random")


@pytest.fixture(scope="module")
def pairs():
    """weights -> (torch backend, jax backend) with those weights, each built once."""
    reason = backends.why_unavailable("torch")
    if reason:
        pytest.skip(f"comparing with PyTorch: {reason}")
    made = {}

    def get(weights):
        if weights not in made:
            made[weights] = backends.get_backend("torch", weights=weights, device="cpu"), jax_backend(weights=weights)
        return made[weights]

    return get


@pytest.fixture(params=WEIGHTS)
def pair(request, pairs):
    return pairs(request.param)


def state_for(backend, X, content_X, style_X, config):
    contents_Y, _ = backend.extract_features(backend.from_numpy(content_X), config.content_layers, config.style_layers)
    _, styles_Y = backend.extract_features(backend.from_numpy(style_X), config.content_layers, config.style_layers)
    return backend.init_state(backend.from_numpy(X), contents_Y, styles_Y, config)


# --- the same numbers as PyTorch ----------------------------------------------------------


@pytest.mark.parametrize("taps", list(TAPS))
def test_features_match_torch(pair, taps):
    torch_backend, jx = pair
    (X,) = random_images(0, (64, 96), 1)
    content_layers, style_layers = TAPS[taps]
    expected = torch_backend.extract_features(torch_backend.from_numpy(X), content_layers, style_layers)
    actual = jx.extract_features(jx.from_numpy(X), content_layers, style_layers)
    plan = jx.plan(content_layers, style_layers)
    for name, got, want in zip(plan.content + plan.style, [*actual[0], *actual[1]], [*expected[0], *expected[1]]):
        got, want = jx.to_numpy(got), torch_backend.to_numpy(want)
        assert got.shape == want.shape, name
        assert rel_err(got, want) < 1e-5, f"{name}: relative error {rel_err(got, want):.2e}"


def test_loss_and_grad_match_torch(pair):
    """Same state, same losses and the same gradient of the total loss w.r.t. the image.

    32x48: max pooling's gradient goes to the window's largest value, and where
    two values are equal to float32 rounding (JAX 1.8695534 and 1.869556, torch
    1.8695546 twice, in one case) the frameworks pick different ones, both
    correct. At 64x96 that happened for 1 in 12 random inputs with random
    weights and 3 in 12 with bundled ones (max error 1e-4 to 1e-2); at 32x48
    for 1 in 12 and 0 in 12; this seed has none.
    """
    torch_backend, jx = pair
    X, content_X, style_X = random_images(1, (32, 48))
    config = CPU.replace(image_shape=(32, 48))
    (want_losses, want_grad), (got_losses, got_grad) = (
        backend.loss_and_grad(state_for(backend, X, content_X, style_X, config)) for backend in pair
    )
    for part, got, want in zip(got_losses._fields, got_losses, want_losses):
        assert rel_err(jx.scalar(got), torch_backend.scalar(want)) < 1e-5, part
    got_grad, want_grad = jx.to_numpy(got_grad), torch_backend.to_numpy(want_grad)
    assert got_grad.shape == want_grad.shape == X.shape
    assert rel_err(got_grad, want_grad) < 1e-5, (
        f"gradient relative error {rel_err(got_grad, want_grad):.2e} (a max-pool near-tie? see docstring)"
    )


@pytest.mark.parametrize("schedule", ["d2l", "fast-decay"])
def test_training_matches_torch(pairs, schedule):
    """Five d2l steps from the content image (bundled weights) give torch's loss history.

    "fast-decay" halves the learning rate every 2 steps, so a schedule off by
    one step changes a step by 2x (measured: differences of 6e-2 to 2.4e-1).

    What remains: optax computes Adam's bias correction 1 - 0.999**t in float32
    (torch in float64), so its steps are ~6.5e-6 shorter at first (measured
    5.6e-6 at step 2); and Adam moves a pixel whose gradient is near zero by
    about lr in its sign's direction, which grows rounding to 3e-4 by step 5.
    The content image has many equal neighbouring pixels: with jnp.abs (gradient
    1 at 0, torch's is 0) in the TV loss, step 2 already differed by 6e-4.
    """
    content = images.load_image(images.DEFAULT_CONTENT)
    style = images.load_image(images.DEFAULT_STYLE)
    config = CPU.replace(image_shape=(64, 96), num_epochs=5)
    if schedule == "fast-decay":
        config = config.replace(lr_decay_epoch=2, lr_decay=0.5)
    want, got = (np.array(backend.train(*targets(backend, content, style, config), config)[1])
                 for backend in pairs("bundled"))
    assert got.shape == want.shape == (5, 4)
    tolerance = 2e-3 * np.abs(want) + 1e-6 * np.abs(want).max()  # content loss starts at exactly 0
    assert np.all(np.abs(got - want) <= tolerance), f"relative differences:\n{np.abs(got - want) / np.abs(want)}"


# --- the learning-rate schedule ------------------------------------------------------------


def test_step_lr_schedule_is_torch_step_lr():
    """optax's staircase decay at step e equals config.lr_at(e), PyTorch's StepLR after e steps."""
    import jax.numpy as jnp

    from backends.jax_backend import step_lr

    config = D2L
    schedule = step_lr(config.lr, config.lr_decay_epoch, config.lr_decay)
    epochs = np.arange(301)
    got = np.asarray(schedule(jnp.asarray(epochs)))
    want = np.array([config.lr_at(int(e)) for e in epochs])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[49] == pytest.approx(0.3) and got[50] == pytest.approx(0.24) and got[100] == pytest.approx(0.192)


def test_schedule_is_step_lr(jax_random):
    """Epoch e uses lr * decay ** (e // decay_epoch), as PyTorch's StepLR after e steps.

    Checked on the update itself: each step's image change must be Adam with
    config.lr_at(e), computed here in NumPy (float64) from the gradient. A
    schedule off by one step is off by 2x at steps 2, 4 and 6.
    """
    jx = jax_random
    config = CPU.replace(image_shape=(32, 32), lr=0.1, lr_decay_epoch=2, lr_decay=0.5, num_epochs=7)
    X, content_X, style_X = random_images(2, (32, 32))
    state = state_for(jx, X, content_X, style_X, config)
    beta_1, beta_2, eps = 0.9, 0.999, config.adam_eps
    m = v = np.zeros_like(X, dtype=np.float64)
    settled = np.ones(X.shape, dtype=bool)  # pixels whose gradient is far from zero at every step
    for epoch in range(config.num_epochs):
        lr = config.lr_at(epoch)
        _, grad = jx.loss_and_grad(state)
        g = jx.to_numpy(grad).astype(np.float64)
        settled &= np.abs(g) > 1e-3 * np.abs(g).max()
        before = jx.to_numpy(jx.current_image(state)).astype(np.float64)
        state, _ = jx.train_step(state)
        after = jx.to_numpy(jx.current_image(state)).astype(np.float64)

        t = epoch + 1
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        m_hat, v_hat = m / (1 - beta_1**t), v / (1 - beta_2**t)  # PyTorch's and optax's Adam
        expected = -lr * m_hat / (np.sqrt(v_hat) + eps)
        assert settled.mean() > 0.5
        step_error = np.abs((after - before) - expected)[settled].max() / lr
        assert step_error < 1e-3, f"epoch {epoch}: the step does not match lr={lr} ({step_error:.2e})"


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
    contents_Y, _ = jx.extract_features(jx.from_numpy(content_X), config.content_layers, config.style_layers)
    _, styles_Y = jx.extract_features(jx.from_numpy(style_X), config.content_layers, config.style_layers)
    state = jx.init_state(start, contents_Y, styles_Y, config)
    old = state
    state, _ = jx.train_step(state)
    assert old.X.is_deleted()  # donated: updated in place on the device
    assert not any(a.is_deleted() for a in [start, *contents_Y, *styles_Y])
    np.testing.assert_array_equal(jx.to_numpy(start), X)
    jx.synchronize()  # waits for live arrays; the donated ones are skipped
    state, _ = jx.train_step(state)


def test_train_dispatches_several_steps_between_reports(jax_random):
    """report_every=4 runs 4-step programs (plus single steps for the rest) and reports like the base loop."""
    jx = jax_random
    config = CPU.replace(image_shape=(32, 32), num_epochs=6)
    X, content_X, style_X = random_images(9, (32, 32))
    contents_Y, _ = jx.extract_features(jx.from_numpy(content_X), config.content_layers, config.style_layers)
    _, styles_Y = jx.extract_features(jx.from_numpy(style_X), config.content_layers, config.style_layers)
    histories, reports = {}, {}
    for report_every in (1, 4):
        reports[report_every] = []
        _, histories[report_every] = jx.train(jx.from_numpy(X), contents_Y, styles_Y, config,
                                              reports[report_every].append, report_every)
    assert [r.epoch for r in reports[4]] == [4, 6]
    assert [r.lr for r in reports[4]] == [config.lr_at(3), config.lr_at(5)]
    assert all(isinstance(v, float) for parts in histories[4] for v in parts)
    one, four = np.array(histories[1]), np.array(histories[4])
    assert rel_err(four, one) < 1e-4  # the same steps; fused differently, so equal to rounding


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
    return backend._train_step.lower(backend.params, state).as_text()


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
    text = lowered_step_text(jax_backend(weights="random", precision="tf32"))
    assert ops(text, "convolution") and "HIGHEST" not in text


def test_bf16_convolves_in_bfloat16_and_keeps_float32_losses_and_image():
    import jax.numpy as jnp

    backend = jax_backend(weights="random", precision="bf16")
    text = lowered_step_text(backend)
    forward = [line for line in ops(text, "convolution") if "tensor<1x32x32x3xbf16>" in line]
    assert forward, "the first convolution should take the bfloat16 image"
    assert all("xbf16>" in line for line in ops(text, "convolution"))
    assert all("xf32>" in line for line in ops(text, "dot_general"))  # Grams: float32, HIGHEST
    config = CPU.replace(image_shape=(32, 32), num_epochs=2)
    X, content_X, style_X = random_images(8, (32, 32))
    contents_Y, styles_Y = backend.extract_features(backend.from_numpy(X), config.content_layers, config.style_layers)
    assert all(Y.dtype == jnp.float32 for Y in contents_Y + styles_Y)
    state = state_for(backend, X, content_X, style_X, config)
    state, losses = backend.train_step(state)
    assert all(v.dtype == jnp.float32 for v in losses)
    assert np.all(np.isfinite([backend.scalar(v) for v in losses]))
    assert backend.current_image(state).dtype == jnp.float32


# --- native weights (Keras' cache, seeded: no network, no TensorFlow) ---------------------


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tmp_path


def seed_keras_cache(keras_home, params) -> str:
    from backends import jax_backend as module

    path = keras_home / "models" / module.NATIVE_FILE
    path.parent.mkdir(parents=True)
    to_keras_h5(params, path)
    return module.md5_of(path)


def test_native_weights_from_keras_cache(keras_home, monkeypatch):
    from backends import jax_backend as module

    params = random_weights(seed=7).params
    monkeypatch.setattr(module, "NATIVE_MD5", seed_keras_cache(keras_home, params))
    native = jax_backend(weights="native")
    assert native.weights.name == "native" and native.weights.convention == CAFFE_BGR
    assert native.loss_weights == CAFFE_LOSS_WEIGHTS
    for key, value in params.items():
        np.testing.assert_array_equal(native.weights.params[key], value, err_msg=key)

    same = jax_backend(weights=WeightSet("seeded", params, CAFFE_BGR, CAFFE_LOSS_WEIGHTS))
    (X,) = random_images(5, (32, 48), 1)
    for got, want in zip(*(b.extract_features(b.from_numpy(X), *TAPS["d2l"]) for b in (native, same))):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(native.to_numpy(g), same.to_numpy(w))


def test_native_weights_read_keras_2_layout_too(keras_home, monkeypatch):
    """Keras 2 names a layer's arrays ``block1_conv1/kernel:0`` (nested groups), Keras 1 ``block1_conv1_W_1:0``."""
    import h5py

    from backends import jax_backend as module
    from common.vgg import CONV_LAYERS, keras_name

    params = random_weights(seed=8).params
    path = keras_home / "models" / module.NATIVE_FILE
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        for conv in CONV_LAYERS:
            name = keras_name(conv.name)
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=np.transpose(params[conv.weight_key], (2, 3, 1, 0)))
            group.create_dataset(f"{name}/bias:0", data=params[conv.bias_key])
    loaded = module.load_native_weights(expected_md5=module.md5_of(path))
    for key, value in params.items():
        np.testing.assert_array_equal(loaded.params[key], value, err_msg=key)


def test_native_md5_is_the_one_keras_checks():
    """NATIVE_MD5 is the file_hash keras.applications passes for the notop file (read as text, not imported)."""
    import importlib.util
    import re
    from pathlib import Path

    from backends import jax_backend as module

    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("keras is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "src" / "applications" / "vgg19.py"
    if not source.exists():
        pytest.skip(f"this keras has no {source}")
    after_last_mention = source.read_text().split(module.NATIVE_FILE)[-1]  # its get_file(...) call
    found = re.search(r'file_hash="([0-9a-f]{32})"', after_last_mention)
    assert found and found.group(1) == module.NATIVE_MD5


def test_native_weights_with_wrong_md5_are_refused(keras_home):
    from backends import jax_backend as module

    seed_keras_cache(keras_home, random_weights(seed=7).params)  # not Keras' file: its md5 differs
    with pytest.raises(UserError, match="refusing"):
        module.load_native_weights()


def test_native_weights_missing_fail_clearly(keras_home):
    from backends import jax_backend as module

    with pytest.raises(WeightsUnavailable) as excinfo:
        jax_backend(weights="native")
    message = str(excinfo.value)
    assert "\n" not in message
    assert module.NATIVE_FILE in message
    assert str(keras_home / "models") in message
    assert "--weights bundled" in message


def test_native_weights_never_import_tensorflow(keras_home):
    """Reading Keras' file takes h5py only; checked in a fresh process."""
    params = random_weights(seed=7).params
    digest = seed_keras_cache(keras_home, params)
    code = (
        "import sys; from backends import jax_backend as m; "
        f"w = m.load_native_weights(expected_md5={digest!r}); assert w.name == 'native'; "
        "bad = [k for k in ('tensorflow', 'keras', 'torch') if k in sys.modules]; assert not bad, bad"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_HOME": str(keras_home), "PYTHONPATH": root}
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- small things --------------------------------------------------------------------------


def test_layout_at_the_boundary(jax_random):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    t = jax_random.from_numpy(x)
    assert tuple(t.shape) == (2, 4, 5, 3)  # NHWC inside
    np.testing.assert_array_equal(jax_random.to_numpy(t), x)
    m = np.eye(3, dtype=np.float32)
    np.testing.assert_array_equal(jax_random.to_numpy(jax_random.from_numpy(m)), m)
    assert jax_random.to_numpy(jax_random.from_numpy(np.float32(2.5))) == 2.5


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

