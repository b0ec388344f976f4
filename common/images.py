"""Image decoding for the model: pure functions on bytes and NumPy, no Spark.

:func:`decode_for_model` turns a file's bytes into the 224x224 RGB ``uint8`` image the
model gets, exactly as the original notebook did for an RGB photo
(``Image.open(io.BytesIO(content)).resize([224, 224])``, Pillow's default filter), after
two steps the notebook lacked: the EXIF orientation is applied (so a phone photo stands
as the camera saw it) and every mode is converted to RGB. A file that cannot be used
raises :class:`ImageRejected` with a short reason code.

Formats are recognised by content, not by name: Pillow's own (JPEG, PNG, WebP, AVIF,
TIFF, BMP, GIF — the first frame of an animation) and HEIC/HEIF through the
``pillow-heif`` plugin, registered here.

Big phone photos: a JPEG at least twice 224 pixels on its short side is decoded at a
reduced size by the JPEG decoder itself (Pillow's ``draft``: DCT scaling by 1/2, 1/4 or
1/8, never below 448 pixels on a side) before the same resize. Decoding memory is then
about 1/64 of the full image's, and a 12-megapixel photo decodes in about a tenth of the
time. The 224x224 result differs from the full decode's by at most 2 levels per channel
(mean 0.16 levels on 20 real photos scaled to 4000x3000; ``tests/common/test_images.py``
holds it to 3). Other formats decode at full size, bounded by ``silver.max_pixels``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from common.tables import IMAGE_SIZE

register_heif_opener()

# A JPEG is decoded at the smallest DCT scale that keeps both sides at least this long.
DRAFT_SIDE = 2 * IMAGE_SIZE

# Reason codes of silver.rejects (bronze statuses too_large and unreadable pass through).
EMPTY = "empty"
NOT_AN_IMAGE = "not_an_image"
UNKNOWN_FORMAT = "unknown_format"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
DECOMPRESSION_BOMB = "decompression_bomb"
TOO_SMALL = "too_small"

# Transparent pixels are laid on white: Fruits-360 photos show fruit on white.
BACKGROUND = (255, 255, 255)


class ImageRejected(ValueError):
    """The bytes cannot be made into a model input; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    min_side: int


@dataclass(frozen=True)
class ModelImage:
    """A decoded image: its original size and mode, and the 224x224x3 uint8 pixels."""

    width: int
    height: int
    mode: str
    pixels: bytes


def decode_for_model(content: bytes | None, limits: DecodeLimits, *,
                     reduce: bool = True) -> ModelImage:
    """Bytes of an image file -> :class:`ModelImage`, or raise :class:`ImageRejected`.

    ``reduce=False`` decodes a big JPEG at full size (for comparisons; see the module doc).
    """
    rgb, width, height, mode = decode_rgb(content, limits, reduce=reduce)
    resized = rgb.resize([IMAGE_SIZE, IMAGE_SIZE])
    return ModelImage(width=width, height=height, mode=mode, pixels=resized.tobytes())


# More views of one photo (the classifier's training adds them for real photos): each
# takes the photo's 224x224 model input (silver's ``image``) and gives a picture of the
# same size, so a view costs one inference and no second decoding of the file.
VIEWS = {
    "mirror": ImageOps.mirror,
    "crop70": lambda image: _centre_crop(image, 0.7),
}


def _centre_crop(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    side = max(1, int(min(w, h) * share))
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def model_views(pixels: bytes | np.ndarray, views: tuple[str, ...]) -> np.ndarray:
    """uint8 (len(views), 224, 224, 3): the named :data:`VIEWS` of one model input
    (silver's 224x224 RGB pixels), each resized back to 224x224 with Pillow's default
    filter (``crop70``: the centre 156x156 pixels, enlarged)."""
    array = pixels_to_array(pixels) if isinstance(pixels, bytes) else pixels
    image = Image.fromarray(np.ascontiguousarray(array), "RGB")
    return np.stack([np.asarray(VIEWS[name](image).resize([IMAGE_SIZE, IMAGE_SIZE]))
                     for name in views])


def decode_rgb(content: bytes | None, limits: DecodeLimits, *, reduce: bool = True
               ) -> tuple[Image.Image, int, int, str]:
    """The checked, oriented RGB picture of :func:`decode_for_model` before its resize,
    with the file's width, height and mode."""
    if not content:
        raise ImageRejected(EMPTY, "the file is empty (0 bytes)")
    # Pillow's own guard (an error above twice this) must not stop a photo under ours.
    Image.MAX_IMAGE_PIXELS = max(limits.max_pixels, Image.MAX_IMAGE_PIXELS or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(content))
        except Image.DecompressionBombError as exc:
            raise ImageRejected(DECOMPRESSION_BOMB, str(exc)) from exc
        except UnidentifiedImageError as exc:
            reason = NOT_AN_IMAGE if _looks_like_text(content) else UNKNOWN_FORMAT
            raise ImageRejected(reason, f"not a recognised image format: {exc}") from exc
        width, height = image.size
        mode = image.mode
        if width * height > limits.max_pixels:
            raise ImageRejected(
                DECOMPRESSION_BOMB,
                f"{width}x{height} = {width * height} pixels is over the limit of "
                f"{limits.max_pixels} (silver.max_pixels)",
            )
        if min(width, height) < limits.min_side:
            raise ImageRejected(
                TOO_SMALL,
                f"{width}x{height} is smaller than {limits.min_side} pixels on a side "
                "(silver.min_side)",
            )
        try:
            if reduce and image.format == "JPEG" and min(width, height) >= 2 * DRAFT_SIDE:
                image.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = to_rgb(image)
        except Image.DecompressionBombError as exc:
            raise ImageRejected(DECOMPRESSION_BOMB, str(exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            reason = TRUNCATED if _is_truncation(message) else CORRUPT
            raise ImageRejected(reason, message) from exc
    return rgb, width, height, mode


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: alpha laid on white, 16/32-bit scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples (I;16*, or I holding 16-bit PNG data): keep the top 8 bits.
        values = np.asarray(image, dtype=np.uint32)
        eight = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(eight, mode="L").convert("RGB")
    if mode == "F":
        values = np.clip(np.asarray(image, dtype=np.float32), 0, 255)
        return Image.fromarray(values.round().astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def pixels_to_array(pixels: bytes) -> np.ndarray:
    """Stored silver pixels -> a (224, 224, 3) uint8 array."""
    return np.frombuffer(pixels, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 3)


def _looks_like_text(content: bytes) -> bool:
    head = content[:512]
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def _is_truncation(message: str) -> bool:
    lowered = message.lower()
    return "truncated" in lowered or "broken data stream" in lowered or "eof" in lowered
