"""The TensorFlow backend's own checks: Keras' optimizer and its schedule, the
XLA choice, the TF32 flag, Keras mixed precision and device names.

What TensorFlow shares with JAX (native weights from Keras' file, agreement
with the PyTorch backend, the schedule and Adam's update, bf16 outputs, the
NCHW/NHWC boundary) is tested once for both in test_native_keras_weights.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from common.config import CPU
from common.errors import UserError
from helpers import cached_backend, make_backend, random_images, rel_err, require, state_for


@pytest.fixture(autouse=True, scope="module")
def _require_tensorflow():
    require("tensorflow")


def tf_backend(**options):
    return make_backend("tensorflow", **options)


@pytest.fixture(scope="module")
def tf_random():
    return cached_backend("tensorflow")


@pytest.fixture
def restore_tf32():
    import tensorflow as tf

    enabled = tf.config.experimental.tensor_float_32_execution_enabled()
    yield
    tf.config.experimental.enable_tensor_float_32_execution(enabled)


# --- the learning-rate schedule ------------------------------------------------------------


def test_keras_optimizer_reports_lr_at_each_epoch(tf_random):
    """Before step e, Keras' Adam says its learning rate is config.lr_at(e), PyTorch's StepLR after e steps.

    (That the step itself uses it is test_native_keras_weights.py::test_schedule_is_step_lr.)
    """
    config = CPU.replace(image_shape=(32, 32), lr=0.1, lr_decay_epoch=2, lr_decay=0.5, num_epochs=7)
    state = state_for(tf_random, *random_images(2, (32, 32)), config)
    for epoch in range(config.num_epochs):
        assert float(state.trainer.learning_rate) == pytest.approx(config.lr_at(epoch), rel=1e-6), epoch
        state, _ = tf_random.train_step(state)


# --- XLA ---------------------------------------------------------------------------------


def test_xla_and_plain_tf_function_agree(tf_random, monkeypatch):
    from backends import tensorflow_backend

    assert tf_random.jit_compile is tensorflow_backend.JIT_COMPILE is False  # measured: see JIT_COMPILE
    config = CPU.replace(image_shape=(32, 32))
    X, content_X, style_X = random_images(3, (32, 32))
    histories = []
    for jit_compile in (False, True):
        monkeypatch.setattr(tf_random, "jit_compile", jit_compile)
        state = state_for(tf_random, X, content_X, style_X, config)
        histories.append([[tf_random.scalar(v) for v in tf_random.train_step(state)[1]] for _ in range(2)])
    plain, xla = np.array(histories)
    assert rel_err(xla, plain) < 1e-4


# --- precision -----------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_tf32")
@pytest.mark.parametrize("precision", ["float32", "tf32"])
def test_tf32_flag(precision):
    import tensorflow as tf

    tf_backend(weights="random", precision="tf32" if precision == "float32" else "float32")  # start from the other
    backend = tf_backend(weights="random", precision=precision)
    assert tf.config.experimental.tensor_float_32_execution_enabled() is (precision == "tf32")
    assert backend.net[0].compute_dtype == "float32"


@pytest.mark.usefixtures("restore_tf32")
def test_bf16_runs_keras_mixed_precision():
    """bfloat16 compute, float32 variables, per layer; TF32 stays off.

    (Features, losses and the image stay float32: test_native_keras_weights.py.)
    """
    import tensorflow as tf

    tf_backend(weights="random", precision="tf32")  # start from the other
    backend = tf_backend(weights="random", precision="bf16")
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    conv = backend.net[0]
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"


# --- devices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "expected"), [("cpu", "/CPU:0"), ("/CPU:0", "/CPU:0"), ("/device:cpu:0", "/CPU:0")]
)
def test_device_names(requested, expected):
    from backends.tensorflow_backend import _device_name

    assert _device_name(requested) == expected


def test_unknown_device_is_a_user_error():
    from backends.tensorflow_backend import _device_name

    with pytest.raises(UserError, match="unknown device"):
        _device_name("tpu")
