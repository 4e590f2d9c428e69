"""d2l's top-level script, for any backend: targets from the two images, then train."""

from __future__ import annotations

import numpy as np

from common import images
from common.config import StyleTransferConfig
from common.errors import UserError
from common.interface import Backend, Callback
from common.recipes import Noise


def targets(backend: Backend, content_img, style_img, config: StyleTransferConfig):
    """d2l's ``get_contents`` and ``get_styles``: the images (in the recipe's space) and their target features."""
    space = config.recipe_data.space
    content_X = backend.preprocess(content_img, config.image_shape, space)
    style_X = backend.preprocess(style_img, config.image_shape, space)
    layers = (config.content_layers, config.style_layers, config.feature_taps, space)
    contents_Y, _ = backend.extract_features(content_X, *layers)
    _, styles_Y = backend.extract_features(style_X, *layers)
    return content_X, contents_Y, styles_Y


def noise_image(noise: Noise, image_shape: tuple[int, int], dtype=np.float32) -> np.ndarray:
    """A recipe's seeded white-noise start, 1x3xHxW, the same array for every backend."""
    rng = np.random.default_rng(noise.seed)
    shape = (1, 3, *image_shape)
    if noise.kind == "uniform":
        return rng.uniform(noise.low, noise.high, size=shape).astype(dtype)
    return rng.normal(noise.low, noise.high, size=shape).astype(dtype)


def start_image(backend: Backend, content_X, config: StyleTransferConfig):
    """Where the synthesized image starts: the content image (d2l), or the recipe's noise (``init="noise"``)."""
    if config.init == "noise":
        return backend.from_numpy(noise_image(config.recipe_data.noise, config.image_shape))
    return content_X


def stylize(backend: Backend, content_img, style_img, config: StyleTransferConfig, callback: Callback | None = None,
            report_every: int = 1):
    """Returns the stylized PIL image and the per-step loss history.

    Raises ``UserError`` for a bad config (the same checks as the command line) and
    ``DivergedError`` (a ``UserError``) when the losses stop being finite.
    """
    X, history = stylize_array(backend, content_img, style_img, config, callback, report_every)
    return images.postprocess_array(X, config.recipe_data.space), history


def stylize_array(backend: Backend, content_img, style_img, config: StyleTransferConfig,
                  callback: Callback | None = None, report_every: int = 1):
    """``stylize``, returning the synthesized image as NumPy (1x3xHxW in the recipe's space, the backend's dtype)."""
    if not isinstance(config, StyleTransferConfig):
        raise UserError(f"config must be a StyleTransferConfig, got {type(config).__name__}")
    config.validate()
    content_X, contents_Y, styles_Y = targets(backend, content_img, style_img, config)
    X, history = backend.train(start_image(backend, content_X, config), contents_Y, styles_Y, config, callback,
                               report_every)
    return backend.to_numpy(X), history
