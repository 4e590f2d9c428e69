"""Image input: every bad input is a one-line UserError; convertible modes are converted and said so."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common import images
from common.config import MAX_SIDE, MIN_SIDE, check_image_shape
from common.errors import UserError


def save(tmp_path, name, img: Image.Image):
    path = tmp_path / name
    img.save(path)
    return path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist") as exc:
        images.load_image(tmp_path / "nope.jpg", "content image")
    assert "content image" in one_line(exc)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(UserError, match="is not a file"):
        images.load_image(tmp_path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a JPEG")
    with pytest.raises(UserError, match="not an image") as exc:
        images.load_image(path)
    one_line(exc)


def test_truncated_image(tmp_path):
    full = save(tmp_path, "full.jpg", Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    data = full.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="could not be decoded") as exc:
        images.load_image(truncated)
    one_line(exc)


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("L", lambda: Image.new("L", (40, 48), 128)),
        ("RGBA", lambda: Image.new("RGBA", (40, 48), (255, 0, 0, 0))),
        ("P", lambda: Image.new("RGB", (40, 48), (10, 200, 30)).convert("P")),
        ("I;16", lambda: Image.fromarray(np.full((48, 40), 65535, np.uint16))),
        ("LA", lambda: Image.new("LA", (40, 48), (50, 255))),
        ("CMYK", lambda: Image.new("CMYK", (40, 48), (0, 0, 0, 0))),
    ],
)
def test_convertible_modes_become_rgb_and_are_reported(tmp_path, mode, make):
    suffix = "tiff" if mode in ("CMYK",) else "png"
    path = save(tmp_path, f"img.{suffix}", make())
    notes: list[str] = []
    img = images.load_image(path, "style image", notes)
    assert img.mode == "RGB" and img.size == (40, 48)
    assert len(notes) == 1 and "converted from mode" in notes[0]


def test_rgba_transparent_pixels_become_white(tmp_path):
    path = save(tmp_path, "clear.png", Image.new("RGBA", (40, 40), (255, 0, 0, 0)))
    assert np.asarray(images.load_image(path)).min() == 255


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (40, 1))
    img = np.asarray(images.load_image(save(tmp_path, "ramp.png", Image.fromarray(ramp))))
    assert img[0, 0, 0] == 0 and img[0, -1, 0] == 255 and 100 < img[0, 20, 0] < 160


def test_rgb_is_not_reported(tmp_path):
    notes: list[str] = []
    images.load_image(save(tmp_path, "ok.png", Image.new("RGB", (40, 40))), notes=notes)
    assert notes == []


@pytest.mark.parametrize("size", [(MIN_SIDE - 1, 100), (100, 8)])
def test_image_too_small_for_vgg(tmp_path, size):
    path = save(tmp_path, "small.png", Image.new("RGB", size))
    with pytest.raises(UserError, match="poolings need at least") as exc:
        images.load_image(path)
    one_line(exc)


def test_array_input_is_validated():
    with pytest.raises(UserError, match="uint8 RGB array"):
        images.to_rgb(np.zeros((40, 40), np.uint8))
    with pytest.raises(UserError, match="uint8 RGB array"):
        images.to_rgb(np.zeros((40, 40, 3), np.float32))
    assert images.to_rgb(np.zeros((40, 40, 3), np.uint8)).mode == "RGB"


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((16, 300), "too small"),
        ((300, MIN_SIDE - 1), "too small"),
        ((MAX_SIDE + 1, 300), "too large"),
        ((300, 10**6), "too large"),
        ((300.5, 450), "whole numbers"),
        (("a", 450), "whole numbers"),
        ((300,), "whole numbers"),
    ],
)
def test_bad_image_shapes(shape, message):
    with pytest.raises(UserError, match=message):
        check_image_shape(shape)


def test_preprocess_and_postprocess_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)
    X = images.preprocess_array(rgb, (40, 56))
    assert X.shape == (1, 3, 40, 56) and X.dtype == np.float32
    assert np.array_equal(np.asarray(images.postprocess_array(X)), rgb)


def test_preprocess_matches_d2l_normalization():
    rgb = np.full((32, 32, 3), (255, 0, 128), np.uint8)
    X = images.preprocess_array(rgb, (32, 32))
    expected = (np.array([1.0, 0.0, 128 / 255]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert np.allclose(X[0, :, 0, 0], expected, atol=1e-6)


def test_default_images_exist_and_load():
    for path in (images.DEFAULT_CONTENT, images.DEFAULT_STYLE):
        img = images.load_image(path)
        assert img.mode == "RGB" and min(img.size) >= 256
