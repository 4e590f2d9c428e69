"""Reading, validating, resizing and normalizing images: once, for every backend.

Each library resizes differently (PIL, torchvision, tf.image and jax.image
disagree by several grey levels at edges), so resizing happens here, in PIL,
and every backend receives the same float32 array. The backends' ``preprocess``
and ``postprocess`` only move that array to and from their own tensors.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from common.config import MIN_SIDE, check_image_shape
from common.errors import DivergedError, UserError
from common.image_space import BYTE_RGB, D2L_NORMALIZED, IMAGE_SPACES, UNIT_RGB, ImageSpace  # noqa: F401
from common.weights import RGB_MEAN, RGB_STD

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# scikit-image's "chelsea" (CC0, photographer Stefan van der Walt), 300x451 like d2l's pair.
DEFAULT_CONTENT = ASSETS / "chelsea.png"
# Drawn by this project (assets/make_style.py), same license as the code.
DEFAULT_STYLE = ASSETS / "swirls.png"

# PIL's own guard against decompression bombs, as an error instead of a warning.
MAX_PIXELS = 64_000_000


def load_image(path: str | os.PathLike, role: str = "image", notes: list[str] | None = None) -> Image.Image:
    """Open an image file as an RGB PIL image, or raise a one-line ``UserError``.

    Its size is checked from the header, before anything is decoded. EXIF
    orientation is applied; grayscale, palette, RGBA and 16-bit images are
    converted; of an animation or a multi-page file the first frame is used.
    Each of these is appended to ``notes`` so the caller can say so.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise UserError(f"{role}: expected a file path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise UserError(f"{role} file {str(path)!r} does not exist")
    if not path.is_file():
        raise UserError(f"{role} {str(path)!r} is not a file")
    what = f"{role} {path.name}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                check_size(img, what)
                said = _header_notes(img, what)
                img.load()  # decode now: truncated files fail here, not later
                return to_rgb(_upright(img, what, said), what, notes, said)
    except UnidentifiedImageError:
        raise UserError(f"{role} file {str(path)!r} is not an image PIL can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{role} file {str(path)!r} is too large to decode safely") from None
    except OSError as exc:
        # PIL reports truncated and corrupt data as OSError.
        raise UserError(f"{role} file {str(path)!r} could not be decoded ({exc})") from None


def check_size(img: Image.Image, what: str) -> None:
    """Too small for VGG or too many pixels: a ``UserError`` (for a file, from its header, before decoding)."""
    if img.width < MIN_SIDE or img.height < MIN_SIDE:
        raise UserError(f"{what} is {img.width}x{img.height}; VGG19's poolings need at least {MIN_SIDE}x{MIN_SIDE}")
    if img.width * img.height > MAX_PIXELS:
        raise UserError(f"{what} is {img.width}x{img.height}, more than {MAX_PIXELS:,} pixels")


def _header_notes(img: Image.Image, what: str) -> list[str]:
    """What the header says PIL will do silently: keep only the first frame, drop 16-bit RGB to 8 bits."""
    said = []
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        kind = "an animation" if getattr(img, "is_animated", False) and img.format != "TIFF" else "a multi-page file"
        said.append(f"{what}: {kind} of {frames} frames; the first frame is used")
    rawmodes = [tile.args if isinstance(tile.args, str) else (tile.args or ("",))[0] for tile in img.tile]
    if img.mode in ("RGB", "RGBA") and any(";16" in str(raw) for raw in rawmodes):
        said.append(f"{what}: 16 bits per channel, reduced to 8")
    return said


def _upright(img: Image.Image, what: str, said: list[str]) -> Image.Image:
    """Apply the EXIF orientation, as a photo viewer does (a phone's portrait photo is stored sideways)."""
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in (None, 1):
        return img
    said.append(f"{what}: EXIF orientation {orientation} applied")
    return ImageOps.exif_transpose(img)


def to_rgb(img: Image.Image | np.ndarray, what: str = "image", notes: list[str] | None = None,
           said: list[str] | None = None) -> Image.Image:
    """Convert a PIL image or an HxWx3 uint8 array to an 8-bit RGB PIL image.

    ``said``: notes already made about this image (by ``load_image``), passed on to ``notes``.
    """
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise UserError(f"{what}: expected an HxWx3 uint8 RGB array, got {img.dtype} of shape {img.shape}")
        img = Image.fromarray(img, "RGB")
    if not isinstance(img, Image.Image):
        raise UserError(f"{what}: expected a PIL image or an HxWx3 uint8 array, got {type(img).__name__}")
    check_size(img, what)
    said = list(said or [])
    mode = img.mode
    converted = img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit) grayscale: PIL's convert would clip, so rescale to 8 bits.
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
        converted = Image.fromarray(np.stack([array] * 3, axis=-1), "RGB")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite transparency onto white, as a viewer would show it.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        converted = Image.alpha_composite(background, rgba).convert("RGB")
        mode += " with transparency (composited on white)"
    elif mode != "RGB":
        converted = img.convert("RGB")
    if mode != "RGB":
        said.append(f"{what}: converted from mode {mode} to 8-bit RGB")
    if notes is not None:
        notes.extend(said)
    return converted


def resize(img: Image.Image, image_shape: tuple[int, int]) -> Image.Image:
    """Resize to (height, width) with PIL's bilinear filter, like torchvision's Resize."""
    height, width = check_image_shape(image_shape)
    return img.resize((width, height), Image.Resampling.BILINEAR)


def preprocess_array(img: Image.Image | np.ndarray, image_shape: tuple[int, int],
                     space: ImageSpace = D2L_NORMALIZED) -> np.ndarray:
    """d2l's ``preprocess`` in NumPy: resize, scale to [0, 1], normalize (or another ``space``); 1x3xHxW float32."""
    rgb = np.asarray(resize(to_rgb(img), image_shape), dtype=np.float32)
    return np.ascontiguousarray(space.from_pixels(rgb).transpose(2, 0, 1)[None], dtype=np.float32)


def postprocess_array(X: np.ndarray, space: ImageSpace = D2L_NORMALIZED) -> Image.Image:
    """d2l's ``postprocess``: undo the normalization, clip to [0, 1], to an RGB PIL image."""
    X = np.asarray(X, dtype=np.float32)
    if not np.isfinite(X).all():  # NaN would become black pixels, silently
        raise DivergedError(None, "the image")
    return Image.fromarray(np.round(postprocess_float(X, space)).astype(np.uint8), "RGB")


def postprocess_float(X: np.ndarray, space: ImageSpace = D2L_NORMALIZED) -> np.ndarray:
    """``postprocess_array`` before rounding to 8 bits: HxWx3 in [0, 255], in X's dtype.

    Two images closer than half a grey level round to the same PNG, so
    agreement beyond ~50 dB PSNR is measured on these.
    """
    X = np.asarray(X)
    if X.ndim == 4:
        X = X[0]
    return np.clip(space.to_unit(X.transpose(1, 2, 0)), 0.0, 1.0) * 255.0
