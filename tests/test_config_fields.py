"""Every field of StyleTransferConfig reaches the run: changing it changes the result, a bad value is a one-line error.

The lists are checked against ``dataclasses.fields``, so a new field without a test here fails.
Run settings belong to the config alone: ``get_backend`` refuses them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import backends
from common.config import D2L, RUN_SETTINGS, LossWeights, StyleTransferConfig
from common.errors import UserError
from common.stylize import stylize_array

FIELDS = tuple(field.name for field in dataclasses.fields(StyleTransferConfig))
# Small and short; the lr decays after every step, so a change to the schedule shows within three.
BASE = D2L.replace(image_shape=(32, 48), num_epochs=3, lr_decay_epoch=1)

# One change per field that takes effect within BASE's three steps.
CHANGES = {
    "image_shape": (48, 32),
    "lr": 0.1,
    "num_epochs": 2,
    "lr_decay_epoch": 2,  # step 1 keeps lr instead of lr * lr_decay
    "lr_decay": 0.5,
    "adam_eps": 0.1,  # about the size of sqrt(v) here, so it shortens every step
    "adam": "reference",  # Keras' own Adam adds epsilon elsewhere; elsewhere the rounding differs
    "loss_weights": LossWeights(content=1.0, style=0.0, tv=0.0),
    "content_layers": (19,),
    "style_layers": (0, 5),
    "taps": "pre-relu",  # issue 14: the config's taps used to be ignored in training
    "recipe": "tf1-tutorial",
    "init": "noise",
    "optimizer": "native",  # on LBFGS_BASE: optax's L-BFGS for JAX; torch's is the same one (see below)
}
# Fields that only an L-BFGS recipe reads are changed on this base instead.
LBFGS_BASE = BASE.replace(recipe="pytorch-tutorial", num_epochs=1)
BASES = {"optimizer": LBFGS_BASE}

# One bad value per field.
REJECTED = {
    "image_shape": (8, 48),
    "lr": -0.1,
    "num_epochs": 0,
    "lr_decay_epoch": 1.5,
    "lr_decay": 1.5,
    "adam_eps": math.nan,
    "adam": "adamw",
    "loss_weights": LossWeights(style=-1.0),
    "content_layers": (99,),
    "style_layers": ("conv9_9",),
    "taps": "post-relu",
    "recipe": "gatys",
    "init": "zeros",
    "optimizer": "adamw",
}


def images():
    rng = np.random.default_rng(0)
    return tuple(rng.integers(0, 256, (32, 48, 3), np.uint8) for _ in range(2))


_runs: dict = {}


def run(backend, config: StyleTransferConfig):
    """The final image and the loss history (floats) of one run; the base run once per backend."""
    key = (backend.name, config)
    if key not in _runs:
        X, history = stylize_array(backend, *images(), config)
        _runs[key] = X, [tuple(parts) for parts in history]
    return _runs[key]


def test_every_field_has_a_change_and_a_rejected_value():
    assert set(CHANGES) == set(FIELDS) and set(REJECTED) == set(FIELDS)
    assert set(RUN_SETTINGS) == set(FIELDS)


@pytest.mark.parametrize("field", FIELDS)
def test_changing_a_field_changes_the_run(backend, field):
    if field == "optimizer" and backend.name != "jax":
        # torch.optim.LBFGS is both torch's "same" and "native"; TensorFlow has no native one
        # (test_recipes.py::test_tensorflow_has_no_native_lbfgs).
        pytest.skip(f"{backend.name} has one L-BFGS only")
    base = BASES.get(field, BASE)
    base_X, base_history = run(backend, base)
    X, history = run(backend, base.replace(**{field: CHANGES[field]}))
    assert history != base_history or X.shape != base_X.shape or not np.array_equal(X, base_X)


@pytest.mark.parametrize("field", FIELDS)
def test_a_bad_value_is_a_one_line_error(backend, field):
    with pytest.raises(UserError) as caught:
        stylize_array(backend, *images(), BASE.replace(**{field: REJECTED[field]}))
    message = str(caught.value)
    assert message and "\n" not in message


def test_config_loss_weights_replace_the_weight_sets(backend):
    defaults = backend.weights.loss_weights
    assert BASE.resolved_loss_weights(backend.weights) == defaults  # d2l: the weight set's own
    assert BASE.replace(loss_weights=CHANGES["loss_weights"]).resolved_loss_weights(backend.weights) == \
        CHANGES["loss_weights"]


@pytest.mark.parametrize("setting", ["taps", "loss_weights", "lr"])
def test_get_backend_refuses_run_settings(backend_name, setting):
    with pytest.raises(UserError, match=f"^{setting} is a run setting: it belongs on StyleTransferConfig") as caught:
        backends.get_backend(backend_name, weights="random", device="cpu", **{setting: getattr(BASE, setting)})
    assert "\n" not in str(caught.value)


def test_get_backend_refuses_unknown_options():
    with pytest.raises(UserError, match="not 'colour'"):
        backends.get_backend("torch", colour="blue")


def test_extract_features_refuses_an_unknown_reading(backend):
    X = backend.from_numpy(np.zeros((1, 3, 32, 48), np.float32))
    with pytest.raises(UserError, match="^taps must be one of torch-inplace, pre-relu, got 'post-relu'$"):
        backend.extract_features(X, BASE.content_layers, BASE.style_layers, "post-relu")
