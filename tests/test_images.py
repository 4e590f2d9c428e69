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


# --- issue 18: what PIL does silently is said; sizes are checked before decoding; bad path types ---


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand: PIL cannot write 16-bit RGB, and a header alone makes a huge image cheaply."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


def test_exif_orientation_is_applied_and_said(tmp_path):
    # A phone's portrait photo: stored 60 wide and 40 high, Orientation=6 (rotate 90 degrees clockwise to view).
    stored = Image.new("RGB", (60, 40), (200, 30, 30))
    stored.paste((30, 30, 200), (0, 0, 30, 40))  # left half blue: after the rotation, the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    notes: list[str] = []
    img = images.load_image(path, "content image", notes)
    assert img.size == (40, 60)
    pixels = np.asarray(img).astype(int)
    assert pixels[5, 20, 2] > 150 and pixels[-5, 20, 0] > 150  # blue on top, red below
    assert notes == ["content image phone.jpg: EXIF orientation 6 applied"]


def test_sixteen_bit_rgb_is_reduced_to_8_bits_and_said(tmp_path):
    width, height = 40, 36
    row = b"\x00" + np.full((width, 3), 40000, ">u2").tobytes()
    path = tmp_path / "deep.png"
    path.write_bytes(png_bytes(width, height, 16, 2, row * height))
    notes: list[str] = []
    img = images.load_image(path, "style image", notes)
    assert img.mode == "RGB" and np.asarray(img)[0, 0, 0] == 40000 >> 8
    assert notes == ["style image deep.png: 16 bits per channel, reduced to 8"]


@pytest.mark.parametrize("kind", ["gif", "tiff"])
def test_only_the_first_frame_of_an_animation_or_multipage_file_is_used_and_said(tmp_path, kind):
    frames = [Image.new("RGB", (40, 48), colour) for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    path = tmp_path / f"frames.{kind}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    notes: list[str] = []
    img = images.load_image(path, "style image", notes)
    assert np.asarray(img)[0, 0].argmax() == 0  # red: the first frame
    assert any("of 3 frames; the first frame is used" in note for note in notes), notes


def test_too_many_pixels_is_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    # 8000x9000 = 72 megapixels: under PIL's own bomb limit (89 MP), over ours (64 MP). Only the header
    # exists, and decoding is made to fail loudly, so the size must be checked before any decoding.
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(8000, 9000, 8, 2, rows=None))

    def no_decoding(self):
        raise AssertionError("decoded before the size was checked")

    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UserError, match="8000x9000, more than 64,000,000 pixels") as exc:
        images.load_image(path, "content image")
    one_line(exc)


@pytest.mark.parametrize("path", [None, b"assets/chelsea.png", 3, 2.5], ids=repr)
def test_a_path_that_is_not_a_path_is_a_user_error(path):
    with pytest.raises(UserError, match="expected a file path") as exc:
        images.load_image(path, "content image")
    one_line(exc)
