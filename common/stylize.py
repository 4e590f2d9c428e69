"""d2l's top-level script, for any backend: targets from the two images, then train."""

from __future__ import annotations

from common import images
from common.config import StyleTransferConfig
from common.errors import UserError
from common.interface import Backend, Callback


def targets(backend: Backend, content_img, style_img, config: StyleTransferConfig):
    """d2l's ``get_contents`` and ``get_styles``: the images and their target features."""
    content_X = backend.preprocess(content_img, config.image_shape)
    style_X = backend.preprocess(style_img, config.image_shape)
    contents_Y, _ = backend.extract_features(content_X, config.content_layers, config.style_layers, config.taps)
    _, styles_Y = backend.extract_features(style_X, config.content_layers, config.style_layers, config.taps)
    return content_X, contents_Y, styles_Y


def stylize(backend: Backend, content_img, style_img, config: StyleTransferConfig, callback: Callback | None = None,
            report_every: int = 1):
    """Returns the stylized PIL image and the per-step loss history.

    Raises ``UserError`` for a bad config (the same checks as the command line) and
    ``DivergedError`` (a ``UserError``) when the losses stop being finite.
    """
    X, history = stylize_array(backend, content_img, style_img, config, callback, report_every)
    return images.postprocess_array(X), history


def stylize_array(backend: Backend, content_img, style_img, config: StyleTransferConfig,
                  callback: Callback | None = None, report_every: int = 1):
    """``stylize``, returning the synthesized image as NumPy (1x3xHxW, normalized, the backend's dtype)."""
    if not isinstance(config, StyleTransferConfig):
        raise UserError(f"config must be a StyleTransferConfig, got {type(config).__name__}")
    config.validate()
    content_X, contents_Y, styles_Y = targets(backend, content_img, style_img, config)
    # The synthesized image starts as the content image, as in d2l.
    X, history = backend.train(content_X, contents_Y, styles_Y, config, callback, report_every)
    return backend.to_numpy(X), history
