"""NumPy float64 reference: the oracle every backend is tested against.

Written as plainly as d2l's PyTorch listing, on NCHW arrays of one image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from common.config import LossWeights
from common.recipes import ADAPTIVE_EPS


def gram(X: np.ndarray) -> np.ndarray:
    """Channel correlations of a 1xCxHxW feature map, divided by c*h*w (d2l)."""
    X = np.asarray(X, dtype=np.float64)
    num_channels, n = X.shape[1], X.size // X.shape[1]
    X = X.reshape((num_channels, n))
    return X @ X.T / (num_channels * n)


def content_loss(Y_hat: np.ndarray, Y: np.ndarray) -> float:
    return float(np.mean(np.square(np.asarray(Y_hat, np.float64) - np.asarray(Y, np.float64))))


def style_loss(Y_hat: np.ndarray, gram_Y: np.ndarray) -> float:
    return float(np.mean(np.square(gram(Y_hat) - np.asarray(gram_Y, np.float64))))


def tv_loss(Y_hat: np.ndarray) -> float:
    Y_hat = np.asarray(Y_hat, dtype=np.float64)
    dy = np.abs(Y_hat[:, :, 1:, :] - Y_hat[:, :, :-1, :]).mean()
    dx = np.abs(Y_hat[:, :, :, 1:] - Y_hat[:, :, :, :-1]).mean()
    return float(0.5 * (dy + dx))


def compute_loss(
    X: np.ndarray,
    contents_Y_hat: Sequence[np.ndarray],
    styles_Y_hat: Sequence[np.ndarray],
    contents_Y: Sequence[np.ndarray],
    styles_Y_gram: Sequence[np.ndarray],
    loss_weights: LossWeights = LossWeights(),
) -> tuple[list[float], list[float], float, float]:
    contents_l = [content_loss(Y_hat, Y) * loss_weights.content for Y_hat, Y in zip(contents_Y_hat, contents_Y)]
    styles_l = [style_loss(Y_hat, Y) * loss_weights.style for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)]
    tv_l = tv_loss(X) * loss_weights.tv
    return contents_l, styles_l, tv_l, sum(styles_l + contents_l + [tv_l])


# Adam's decay rates: every framework's default, and the paper's.
ADAM_BETAS = (0.9, 0.999)


def adam_step(X, grad, m, v, t: int, lr: float, eps: float, betas=ADAM_BETAS):
    """One step of the reference Adam (``config.adam == "reference"``): PyTorch's and optax's formula.

    ``t`` counts from 1. Each backend writes these same lines in its framework,
    in the image's dtype: the moments, both bias corrections, then eps added
    *after* sqrt(v_hat) (Keras' stock Adam adds it before the bias correction).
    Returns the new (X, m, v).
    """
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return X - lr * (m_hat / (np.sqrt(v_hat) + eps)), m, v


# --- the TF1 tutorial's formulas (recipe "tf1-tutorial"), on 0..255 RGB images ---------------
#
# Its Gram is not normalized, each kind of loss is the mean over its layers of a
# mean squared error, and the denoise term has no 0.5. Each loss is then divided
# by its own current value (taken as a constant), so the step sees only the
# loss's direction, and the update divides the gradient by its standard deviation.

# Added to a loss before dividing by it (the recipe's), and to the gradient's std before dividing by that.
NORMALIZED_STEP_EPS = 1e-8


def gram_unnormalized(X: np.ndarray) -> np.ndarray:
    """Fᵀ F over all positions of a 1xCxHxW feature map: C x C, not divided by anything."""
    X = np.asarray(X, dtype=np.float64)
    F = X.reshape(X.shape[1], -1)
    return F @ F.T


def mean_layer_mse(Ys_hat: Sequence[np.ndarray], Ys: Sequence[np.ndarray]) -> float:
    """The mean over layers of each layer's mean squared error (content and style losses alike)."""
    return float(np.mean([np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                          for a, b in zip(Ys_hat, Ys)]))


def denoise_loss(X: np.ndarray) -> float:
    """mean |Δy| + mean |Δx|: d2l's TV without its 0.5.

    The tutorial's listing sums (``tf.reduce_sum``) where issue 15 says mean; divided by its own
    value (``adaptive_factors``) the two give the same gradient up to the 1e-10, so images agree.
    """
    return 2 * tv_loss(X)


def adaptive_factors(losses: Sequence[float]) -> list[float]:
    """1 / (loss + 1e-10) for each loss; a constant in the gradient, recomputed every iteration."""
    return [1.0 / (float(l) + ADAPTIVE_EPS) for l in losses]


def normalized_step(X: np.ndarray, grad: np.ndarray, step_size: float, low: float = 0.0, high: float = 255.0):
    """X - grad * step_size / (std(grad) + 1e-8), clipped to [low, high]."""
    grad = np.asarray(grad, dtype=np.float64)
    return np.clip(np.asarray(X, np.float64) - grad * (step_size / (np.std(grad) + NORMALIZED_STEP_EPS)), low, high)
