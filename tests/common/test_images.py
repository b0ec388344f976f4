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


def scene(size: tuple[int, int]) -> Image.Image:
    """A photo-like picture at any size: a smooth gradient with discs drawn on it."""
    from PIL import ImageDraw

    w, h = size
    image = gradient(w, h)
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate([(200, 30, 40), (240, 210, 40), (60, 140, 50)]):
        x, y = (i + 1) * w // 4, h // 2 + (i - 1) * h // 6
        r = min(w, h) // 6
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return image


@pytest.mark.parametrize("fmt, params, mean_error", [
    ("HEIF", {"quality": 95}, 3.5),   # the iPhone's format, through the pillow-heif plugin
    ("WEBP", {"quality": 95}, 3.5),
    ("AVIF", {"quality": 95}, 3.5),
    ("TIFF", {}, 0),
    ("BMP", {}, 0),
])
def test_phone_and_other_formats_decode_by_content(fmt: str, params: dict,
                                                   mean_error: float) -> None:
    original = scene((400, 300))
    expected = np.asarray(original.resize([224, 224]), dtype=np.int16)
    result = decode_for_model(encoded(original, fmt, **params), LIMITS)
    assert (result.width, result.height) == (400, 300)
    got = pixels_to_array(result.pixels).astype(np.int16)
    # Lossy formats: the error of their compression (the noisy gradient costs them a few
    # levels), far below that of another picture (the same one mirrored).
    assert np.abs(got - expected).mean() <= mean_error
    assert np.abs(got - expected[:, ::-1]).mean() > 10 * max(mean_error, 1)
    if mean_error == 0:
        np.testing.assert_array_equal(got, expected)


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    pixels = decoded_pixels(buffer.getvalue())
    assert tuple(pixels[100, 100]) == (255, 0, 0)


def test_a_big_jpeg_decoded_at_reduced_size_matches_the_full_decode() -> None:
    content = jpeg_bytes(scene((4000, 3000)))
    limits = DecodeLimits(max_pixels=20_000_000, min_side=32)
    reduced = decode_for_model(content, limits)
    full = decode_for_model(content, limits, reduce=False)
    assert (reduced.width, reduced.height) == (full.width, full.height) == (4000, 3000)
    difference = np.abs(pixels_to_array(reduced.pixels).astype(np.int16)
                        - pixels_to_array(full.pixels).astype(np.int16))
    assert difference.max() <= 3 and difference.mean() <= 0.5
    # ... and it was reduced: Pillow's draft really shrinks this file's decode.
    image = Image.open(io.BytesIO(content))
    image.draft("RGB", (images.DRAFT_SIDE, images.DRAFT_SIDE))
    assert image.size == (1000, 750)


def test_a_200_megapixel_photo_passes_the_default_limit_and_a_bigger_claim_does_not() -> None:
    from common.config import load_config

    silver = load_config("local").silver
    limits = DecodeLimits(silver.max_pixels, silver.min_side)
    # 16384 x 12288 = 201 megapixels of grey with a white square in the middle.
    big = Image.new("L", (16384, 12288), 100)
    big.paste(255, (6192, 4144, 10192, 8144))
    result = decode_for_model(encoded(big, "JPEG", quality=90), limits)
    del big
    pixels = pixels_to_array(result.pixels)
    assert (result.width, result.height) == (16384, 12288)
    assert abs(int(pixels[112, 112, 0]) - 255) <= 2 and abs(int(pixels[5, 5, 0]) - 100) <= 2
    # A small JPEG whose header claims 20000 x 20000 pixels: a bomb, not decoded.
    small = bytearray(encoded(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG"))
    sof = small.index(b"\xff\xc0")
    small[sof + 5:sof + 9] = (20000).to_bytes(2, "big") * 2
    reason, message = reason_of(bytes(small), limits)
    assert reason == images.DECOMPRESSION_BOMB and "20000x20000" in message


def test_views_are_the_mirrored_and_cropped_model_input() -> None:
    original = scene((400, 300))
    model_input = images.decode_for_model(encoded(original, "PNG"), LIMITS).pixels
    picture = Image.frombytes("RGB", (224, 224), model_input)
    crop70, mirror = images.model_views(model_input, ("crop70", "mirror"))
    np.testing.assert_array_equal(
        mirror, np.asarray(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    np.testing.assert_array_equal(crop70, np.asarray(picture.crop((34, 34, 190, 190))
                                                     .resize([224, 224])))
    # the same from the pixels as an array
    np.testing.assert_array_equal(
        images.model_views(images.pixels_to_array(model_input), ("crop70",))[0], crop70)
