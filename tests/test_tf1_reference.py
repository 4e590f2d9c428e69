"""The NumPy oracle's TF1-tutorial formulas (common/reference.py), on values worked by hand.

These are what every backend's ``tf1-tutorial`` recipe is checked against, so
they are checked here against numbers small enough to compute on paper.
"""

from __future__ import annotations

import numpy as np
import pytest

from common import reference


def test_gram_is_unnormalized_channel_products():
    # Channels (1, 2) and (3, 4) at two positions: [[1+4, 3+8], [3+8, 9+16]].
    X = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    np.testing.assert_array_equal(reference.gram_unnormalized(X), [[5.0, 11.0], [11.0, 25.0]])
    # d2l's Gram is the same divided by c*h*w.
    np.testing.assert_allclose(reference.gram(X) * 2 * 2, reference.gram_unnormalized(X))


def test_layer_losses_are_the_mean_of_per_layer_mses():
    a = [np.zeros((1, 1, 1, 2)), np.zeros((1, 1, 2, 2))]
    b = [np.full((1, 1, 1, 2), 2.0), np.full((1, 1, 2, 2), 1.0)]
    assert reference.mean_layer_mse(a, b) == pytest.approx((4.0 + 1.0) / 2)  # not the mean over all elements


def test_denoise_loss_has_no_half():
    X = np.array([[0.0, 3.0], [1.0, 5.0]]).reshape(1, 1, 2, 2)
    # |dy|: |1-0|, |5-3| -> mean 1.5; |dx|: |3-0|, |5-1| -> mean 3.5
    assert reference.denoise_loss(X) == pytest.approx(1.5 + 3.5)


def test_adaptive_factors_divide_by_the_loss():
    assert reference.adaptive_factors([2.0, 0.0]) == [pytest.approx(0.5), pytest.approx(1e10)]


def test_normalized_step_scales_by_the_gradient_std_and_clips():
    X = np.full((1, 3, 2, 2), 128.0)
    grad = np.arange(12.0).reshape(X.shape) - 5.5
    step = 10.0
    moved = reference.normalized_step(X, grad, step)
    expected = 128.0 - grad * step / (grad.std() + 1e-8)
    np.testing.assert_allclose(moved, np.clip(expected, 0, 255))
    assert (moved - X).std() == pytest.approx(step, rel=1e-6)  # the unclipped step's std is step_size
    assert reference.normalized_step(np.full((1, 1, 1, 2), 250.0), np.array([-1.0, 1.0]).reshape(1, 1, 1, 2),
                                     step).max() == 255.0
