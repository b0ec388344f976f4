"""Decoding for the model: conversions checked by pixel values, rejects by reason code."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from common import images
from common.images import DecodeLimits, ImageRejected, decode_for_model, pixels_to_array
from tests.imagegen import gradient, jpeg_bytes, png_bytes

LIMITS = DecodeLimits(max_pixels=10_000_000, min_side=32)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def decoded_pixels(content: bytes) -> np.ndarray:
    return pixels_to_array(decode_for_model(content, LIMITS).pixels)


def test_rgb_jpeg_is_exactly_the_notebooks_resize() -> None:
    content = jpeg_bytes(gradient(100, 100))
    notebook = np.asarray(Image.open(io.BytesIO(content)).resize([224, 224]))
    result = decode_for_model(content, LIMITS)
    assert (result.width, result.height, result.mode) == (100, 100, "RGB")
    np.testing.assert_array_equal(pixels_to_array(result.pixels), notebook)


def test_png_round_trip_is_lossless_against_pillows_resize() -> None:
    original = gradient(80, 50, seed=3)
    expected = np.asarray(original.resize((224, 224)))
    np.testing.assert_array_equal(decoded_pixels(png_bytes(original)), expected)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (40, 40), 77), (77, 77, 77)),
        (Image.new("LA", (40, 40), (77, 255)), (77, 77, 77)),
        (Image.new("LA", (40, 40), (77, 0)), (255, 255, 255)),
        (Image.new("RGBA", (40, 40), (10, 200, 30, 255)), (10, 200, 30)),
        (Image.new("RGBA", (40, 40), (10, 200, 30, 0)), (255, 255, 255)),
        (Image.new("RGB", (40, 40), (200, 10, 10)).convert("P", palette=Image.ADAPTIVE), (200, 10, 10)),
        (Image.new("CMYK", (40, 40), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("CMYK", (40, 40), (255, 0, 0, 0)), (0, 255, 255)),
        (Image.new("I;16", (40, 40), 32768), (128, 128, 128)),
        (Image.new("I;16", (40, 40), 65535), (255, 255, 255)),
    ],
    ids=["L", "LA-opaque", "LA-transparent", "RGBA-opaque", "RGBA-transparent", "P",
         "CMYK-white", "CMYK-cyan", "I16-half", "I16-full"],
)
def test_modes_convert_to_rgb_with_the_right_values(image: Image.Image, expected: tuple) -> None:
    fmt = "TIFF" if image.mode in ("CMYK", "I;16") else "PNG"
    result = decode_for_model(encoded(image, fmt), LIMITS)
    pixels = pixels_to_array(result.pixels)
    assert result.mode == image.mode
    assert pixels.shape == (224, 224, 3)
    assert np.all(pixels == np.array(expected, dtype=np.uint8)), pixels[0, 0]


def test_half_transparent_rgba_is_composited_on_white() -> None:
    image = Image.new("RGBA", (40, 40), (10, 200, 30, 128))
    pixel = decoded_pixels(encoded(image, "PNG"))[100, 100].astype(int)
    expected = [round(c * 128 / 255 + 255 * 127 / 255) for c in (10, 200, 30)]
    assert np.all(np.abs(pixel - expected) <= 1), (pixel, expected)


def test_palette_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    content = encoded(image, "PNG", transparency=0)
    assert np.all(decoded_pixels(content) == 255)


def test_exif_rotated_photo_stands_as_the_camera_saw_it() -> None:
    # Stored 60 wide x 40 high: left half red, right half blue. Orientation 6 means
    # "rotate 90 degrees clockwise to display": then the red half is on top.
    array = np.zeros((40, 60, 3), dtype=np.uint8)
    array[:, :30] = (255, 0, 0)
    array[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    content = encoded(Image.fromarray(array), "JPEG", exif=exif.tobytes(), quality=95)
    result = decode_for_model(content, LIMITS)
    pixels = pixels_to_array(result.pixels).astype(int)
    assert (result.width, result.height) == (60, 40)
    top, bottom = pixels[20, 112], pixels[200, 112]
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def reason_of(content: bytes, limits: DecodeLimits = LIMITS) -> tuple[str, str]:
    with pytest.raises(ImageRejected) as info:
        decode_for_model(content, limits)
    return info.value.reason, str(info.value)


def test_rejects_carry_a_reason_code_and_a_message() -> None:
    photo = jpeg_bytes(gradient(100, 100))
    assert reason_of(b"")[0] == images.EMPTY
    reason, message = reason_of(photo[: len(photo) // 2])
    assert reason == images.TRUNCATED and "truncated" in message
    assert reason_of(b"<!DOCTYPE html><html><body>Not found</body></html>")[0] == (
        images.NOT_AN_IMAGE
    )
    assert reason_of(bytes(range(256)) * 8)[0] == images.UNKNOWN_FORMAT
    reason, message = reason_of(png_bytes(gradient(200, 200)), DecodeLimits(10_000, 32))
    assert reason == images.DECOMPRESSION_BOMB and "40000 pixels" in message
    reason, message = reason_of(png_bytes(gradient(20, 100)))
    assert reason == images.TOO_SMALL and "20x100" in message


def test_a_real_decompression_bomb_is_rejected_before_decoding() -> None:
    # 30000 x 30000 one-bit PNG: a few hundred KB on disk, 900 megapixels decoded.
    content = encoded(Image.new("1", (30000, 30000), 0), "PNG")
    assert len(content) < 2_000_000
    reason, _ = reason_of(content, DecodeLimits(89_478_485, 32))
    assert reason == images.DECOMPRESSION_BOMB
