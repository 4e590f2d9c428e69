"""The interface contract, the same for every backend."""

from __future__ import annotations

import numpy as np
import pytest

from common.config import D2L
from common.errors import UserError
from common.interface import Backend, LossParts
from common.stylize import stylize, targets
from helpers import rel_err

SMALL = D2L.replace(image_shape=(32, 48), num_epochs=6)


def test_implements_the_protocol(backend, backend_name):
    assert isinstance(backend, Backend)
    assert backend.name == backend_name and backend.precision == "float32"
    assert "cpu" in str(backend.device).lower()
    assert backend.cuda_version() is None  # no CUDA on the CPU


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (1, 8, 1, 9)])
def test_numpy_round_trip_keeps_nchw(backend, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    assert np.array_equal(backend.to_numpy(backend.from_numpy(x)), x)


def test_two_d_and_scalar_results_come_back_as_they_are(backend, rng):
    x = rng.standard_normal((1, 4, 6, 5)).astype(np.float32)
    assert backend.to_numpy(backend.gram(backend.from_numpy(x))).shape == (4, 4)
    assert np.asarray(backend.to_numpy(backend.tv_loss(backend.from_numpy(x)))).shape == ()


def test_preprocess_and_postprocess(backend):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), np.uint8)
    X = backend.preprocess(rgb, (40, 60))
    assert backend.to_numpy(X).shape == (1, 3, 40, 60)
    img = backend.postprocess(X)
    assert img.mode == "RGB" and img.size == (60, 40) and np.array_equal(np.asarray(img), rgb)


def test_extract_features_shapes_and_relu_taps(backend, rng):
    X = backend.from_numpy(rng.standard_normal((1, 3, 64, 96)).astype(np.float32))
    contents, styles = backend.extract_features(X, D2L.content_layers, D2L.style_layers)
    shapes = [backend.to_numpy(t).shape for t in contents + styles]
    assert shapes == [(1, 512, 8, 12), (1, 64, 64, 96), (1, 128, 32, 48), (1, 256, 16, 24), (1, 512, 8, 12),
                      (1, 512, 4, 6)]
    # torch-inplace reading: relu4_4 and relu1_1..relu4_1 are non-negative; conv5_1 (pre-ReLU) is not.
    arrays = [backend.to_numpy(t) for t in contents + styles]
    assert all(a.min() >= 0 for a in arrays[:5]) and arrays[5].min() < 0


def test_to_numpy_is_a_snapshot_that_training_does_not_change(backend, rng):
    content_X, contents_Y, styles_Y = targets(backend, rng.integers(0, 256, (32, 48, 3), np.uint8),
                                              rng.integers(0, 256, (32, 48, 3), np.uint8), SMALL)
    state = backend.init_state(content_X, contents_Y, styles_Y, SMALL)
    state, _ = backend.train_step(state)
    first = backend.to_numpy(backend.current_image(state))
    kept = first.copy()
    state, _ = backend.train_step(state)
    assert np.array_equal(first, kept)
    assert not np.array_equal(backend.to_numpy(backend.current_image(state)), kept)


def test_train_reports_every_step_and_reduces_the_loss(backend):
    rng = np.random.default_rng(0)
    reports = []
    img, history = stylize(backend, rng.integers(0, 256, (40, 40, 3), np.uint8),
                           rng.integers(0, 256, (40, 40, 3), np.uint8), SMALL, callback=reports.append)
    assert len(history) == SMALL.num_epochs and [r.epoch for r in reports] == list(range(1, 7))
    assert all(isinstance(h, LossParts) and all(isinstance(v, float) for v in h) for h in history)
    assert history[-1].total < history[0].total
    assert history[0].content == 0.0  # the image starts as the content image
    assert img.size == (48, 32)


def test_report_every_reports_less_often_but_keeps_every_step(backend):
    rng = np.random.default_rng(0)
    reports = []
    _, history = stylize(backend, rng.integers(0, 256, (32, 32, 3), np.uint8),
                         rng.integers(0, 256, (32, 32, 3), np.uint8), SMALL, callback=reports.append, report_every=4)
    assert [r.epoch for r in reports] == [4, 6] and len(history) == 6


def test_loss_and_grad_does_not_update(backend, rng):
    content_X, contents_Y, styles_Y = targets(backend, rng.integers(0, 256, (32, 32, 3), np.uint8),
                                              rng.integers(0, 256, (32, 32, 3), np.uint8), SMALL)
    state = backend.init_state(content_X, contents_Y, styles_Y, SMALL)
    before = backend.to_numpy(backend.current_image(state))
    losses, grad = backend.loss_and_grad(state)
    assert backend.to_numpy(grad).shape == (1, 3, 32, 48) and np.abs(backend.to_numpy(grad)).max() > 0
    assert np.array_equal(backend.to_numpy(backend.current_image(state)), before)
    _, step_losses = backend.train_step(state)
    assert backend.scalar(step_losses.total) == pytest.approx(backend.scalar(losses.total), rel=1e-6)


def test_train_steps_runs_that_many_steps_and_keeps_each_ones_losses(backend, rng):
    """``train_steps(state, 3)`` is three ``train_step``s, however the backend dispatches them."""
    content_X, contents_Y, styles_Y = targets(backend, rng.integers(0, 256, (32, 48, 3), np.uint8),
                                              rng.integers(0, 256, (32, 48, 3), np.uint8), SMALL)
    num_steps = max(3, backend.steps_per_dispatch)  # JAX on the CPU: its multi-step program
    one_by_one, state = [], backend.init_state(content_X, contents_Y, styles_Y, SMALL)
    for _ in range(num_steps):
        state, losses = backend.train_step(state)
        one_by_one.append(losses)
    image = backend.to_numpy(backend.current_image(state))
    state, together = backend.train_steps(backend.init_state(content_X, contents_Y, styles_Y, SMALL), num_steps)
    expected, actual = backend.losses_to_floats(one_by_one), backend.losses_to_floats(together)
    assert len(actual) == num_steps and all(isinstance(v, float) for parts in actual for v in parts)
    # Equal up to float32 rounding that Adam's steps amplify: JAX's 5-step program fuses the steps
    # differently. Measured against the largest loss: 3.1e-5 (2.3e-3 of the small style loss at step 5).
    assert rel_err(np.array(actual), np.array(expected)) < 1e-4
    # The images: Adam moves pixels with near-zero gradients by ~lr either way, so a few differ by up
    # to 0.27 after 5 fused steps (mean 0.0032, measured); a step more or less moves most pixels by ~lr.
    difference = np.abs(backend.to_numpy(backend.current_image(state)) - image)
    assert difference.mean() < 0.01, difference.mean()


def test_report_every_must_be_a_positive_integer(backend, rng):
    content_X, contents_Y, styles_Y = targets(backend, rng.integers(0, 256, (32, 48, 3), np.uint8),
                                              rng.integers(0, 256, (32, 48, 3), np.uint8), SMALL)
    for bad in (0, -1):
        with pytest.raises(UserError, match="report_every"):
            backend.train(content_X, contents_Y, styles_Y, SMALL, report_every=bad)
