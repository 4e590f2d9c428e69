"""Each backend against the NumPy float64 oracle (common/reference.py).

Tolerance 1e-5 relative (of the largest reference value): float32 carries ~7
digits; sums over up to ~1e5 terms lose about two of them. Measured worst
cases are ~1e-7 for gram and ~1e-7 for the losses on these shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from common import reference
from tools import agreement
from common.config import LossWeights

RTOL = 1e-5

SHAPES = agreement.SHAPES
IDS = agreement.SHAPE_IDS


def rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


@pytest.mark.parametrize(("shape", "scale"), SHAPES, ids=IDS)
class TestAgainstReference:
    def test_gram(self, backend, rng, shape, scale):
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
        actual = backend.to_numpy(backend.gram(backend.from_numpy(x)))
        assert actual.shape == (shape[1], shape[1])
        assert rel_err(actual, reference.gram(x)) < RTOL

    def test_content_loss(self, backend, rng, shape, scale):
        y_hat, y = ((rng.standard_normal((2, *shape)) * scale).astype(np.float32))
        actual = backend.scalar(backend.content_loss(backend.from_numpy(y_hat), backend.from_numpy(y)))
        assert rel_err(actual, reference.content_loss(y_hat, y)) < RTOL

    def test_style_loss(self, backend, rng, shape, scale):
        y_hat, y = ((rng.standard_normal((2, *shape)) * scale).astype(np.float32))
        gram_y = reference.gram(y).astype(np.float32)
        gram_t = backend.gram(backend.from_numpy(y))  # the backend's own Gram as target, as in training
        actual = backend.scalar(backend.style_loss(backend.from_numpy(y_hat), gram_t))
        assert rel_err(actual, reference.style_loss(y_hat, gram_y)) < RTOL

    def test_tv_loss(self, backend, rng, shape, scale):
        y_hat = (rng.standard_normal(shape) * scale).astype(np.float32)
        actual = backend.scalar(backend.tv_loss(backend.from_numpy(y_hat)))
        assert rel_err(actual, reference.tv_loss(y_hat)) < RTOL


def test_compute_loss(backend, rng):
    weights = LossWeights(content=2.0, style=1e4, tv=10.0)
    X = rng.standard_normal((1, 3, 33, 41)).astype(np.float32)
    contents = [rng.standard_normal((1, 8, 9, 11)).astype(np.float32) for _ in range(2)]
    contents_hat = [c + 0.1 * rng.standard_normal(c.shape).astype(np.float32) for c in contents]
    styles_hat = [rng.standard_normal((1, c, 7, 5)).astype(np.float32) for c in (4, 16, 32)]
    styles = [rng.standard_normal(s.shape).astype(np.float32) for s in styles_hat]
    grams = [reference.gram(s) for s in styles]
    expected = reference.compute_loss(X, contents_hat, styles_hat, contents, grams, weights)

    t = backend.from_numpy
    contents_l, styles_l, tv_l, l = backend.compute_loss(
        t(X), [t(c) for c in contents_hat], [t(s) for s in styles_hat], [t(c) for c in contents],
        [backend.gram(t(s)) for s in styles], weights,
    )
    assert len(contents_l) == 2 and len(styles_l) == 3
    for got, want in zip(contents_l, expected[0]):
        assert rel_err(backend.scalar(got), want) < RTOL
    for got, want in zip(styles_l, expected[1]):
        assert rel_err(backend.scalar(got), want) < RTOL
    assert rel_err(backend.scalar(tv_l), expected[2]) < RTOL
    assert rel_err(backend.scalar(l), expected[3]) < RTOL
